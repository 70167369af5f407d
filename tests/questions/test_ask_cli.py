"""``rlm ask`` end to end through the CLI and the Python API with the deterministic test LM:
the answer, its evidence, the JSON shape, the saved spec that ``rlm run`` reproduces, the
plan-only mode that spends nothing, the budget stop (exit 3) and bad input (exit 1 / 2)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

import rlm_dsl
from questions.inputs import write_essay, write_log
from rlm_dsl.cli.main import main

FACT = "The vault code for project kestrel-onyx is 4417."
QUESTION = "What is the vault code for project kestrel-onyx?"


def test_lookup_answers_from_the_planted_line_with_its_evidence(tmp_path: Path) -> None:
    essay = write_essay(tmp_path / "essay.txt", FACT)
    result = rlm_dsl.ask(QUESTION, [str(essay)], lm="test")
    assert result.strategy == "lookup"
    assert result.answer == FACT  # the test LM answers with the line it was shown
    assert result.evidence == [{"source": str(essay), "line": 151, "text": FACT}]
    assert result.summary["calls"] == 1  # only the planted line was read


def test_lookup_with_no_grounded_finding_answers_not_found(tmp_path: Path) -> None:
    # The planted line names the project but the test LM's answer (NONE: the FIND term is in no
    # line) is not in it: the grounded map re-asks once, nulls it, and the vote sees nothing.
    essay = write_essay(tmp_path / "essay.txt",
                        'The vault of project kestrel-onyx. FIND "absent-xyzzy"')
    result = rlm_dsl.ask(QUESTION, [str(essay)], lm="test")
    assert result.strategy == "lookup"
    assert result.answer == "not found" and result.evidence == []
    assert result.summary["calls"] == 2  # the answer and its one grounded re-ask


def test_lookup_reads_every_passage_when_no_row_holds_a_term(tmp_path: Path) -> None:
    essay = write_essay(tmp_path / "essay.txt", "nothing to see", lines=2_000)
    db = tmp_path / "run.duckdb"
    result = rlm_dsl.ask("Who wrote zyzzyva?", [str(essay)], lm="test:window=2048", db=db)
    per_passage = int(re.search(r"GROUP BY source, id // (\d+)", result.spec).group(1))
    assert result.summary["calls"] == -(-2_001 // per_passage) > 1
    con = duckdb.connect(str(db), read_only=True)
    lines = con.execute("SELECT sum(last_line - first_line + 1) FROM candidates").fetchone()[0]
    con.close()
    assert lines == 2_001  # every line read once


def test_count_is_exact_sql_over_the_matching_records(tmp_path: Path, capsys) -> None:
    log = write_log(tmp_path / "app.log", lines=60)
    code = main(["ask", "How many ERROR lines did com.acme.shop.OrderService log?", str(log),
                 "--lm", "test", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == 20 and out["strategy"] == "count"
    assert set(out) == {"answer", "evidence", "strategy", "spec", "summary"}
    assert out["evidence"][0] == {"source": str(log), "line": 1,
                                  "text": out["evidence"][0]["text"]}
    assert "ERROR" in out["evidence"][0]["text"] and len(out["evidence"]) == 20
    assert out["summary"]["calls"] == 0


def test_extract_all_finds_candidates_by_pattern_and_lists_the_accepted(tmp_path: Path) -> None:
    log = write_log(tmp_path / "app.log", lines=12)
    result = rlm_dsl.ask("List every IP address in the log.", [str(log)], lm="test")
    assert result.strategy == "extract_all"
    assert result.answer == [f"10.0.{i % 7}.{i}" for i in range(12)]
    assert result.summary["calls"] == 12  # one judgement per distinct candidate


def test_saved_spec_reproduces_the_run(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_essay(tmp_path / "essay.txt", FACT)
    assert main(["ask", QUESTION, "essay.txt", "--lm", "test", "--save", "q.rlm"]) == 0
    asked = capsys.readouterr().out.splitlines()[0]
    assert main(["run", "q.rlm", "--lm", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["answer"] == asked == FACT


def test_a_spec_saved_elsewhere_reads_every_input_path(tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_essay(tmp_path / "other.txt", "nothing to see here")
    write_essay(tmp_path / "essay.txt", FACT)
    assert main(["ask", QUESTION, "other.txt", "essay.txt", "--lm", "test",
                 "--save", "specs/q.rlm"]) == 0
    asked = capsys.readouterr().out.splitlines()[0]
    spec = (tmp_path / "specs" / "q.rlm").read_text()
    assert 'path=["../other.txt", "../essay.txt"]' in spec  # beside the spec, both of them
    assert main(["run", "specs/q.rlm", "--lm", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["answer"] == asked == FACT


def test_plan_only_prints_spec_and_estimate_and_spends_nothing(tmp_path: Path, capsys) -> None:
    essay = write_essay(tmp_path / "essay.txt", FACT)
    db = tmp_path / "run.duckdb"
    assert main(["ask", QUESTION, str(essay), "--lm", "test", "--plan-only",
                 "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "recipe ask_lookup" in out and "estimate: ask_lookup" in out
    assert not db.exists()


def test_a_plan_over_the_budget_stops_with_exit_3_off_a_terminal(tmp_path: Path,
                                                                  capsys) -> None:
    log = write_log(tmp_path / "app.log", lines=12)
    db = tmp_path / "run.duckdb"
    code = main(["ask", "List every IP address in the log.", str(log), "--lm", "test",
                 "--max-calls", "5", "--db", str(db)])
    assert code == 3
    assert "needs about 12 LM calls; the budget is 5" in capsys.readouterr().err
    assert not db.exists()


def test_strategy_option_skips_the_planner(tmp_path: Path) -> None:
    essay = write_essay(tmp_path / "essay.txt", FACT, lines=20)
    result = rlm_dsl.ask(QUESTION, [str(essay)], lm="test", strategy="summarize")
    assert result.strategy == "summarize" and result.summary["planned_by"] == "forced"
    assert result.summary["planner_calls"] == 0


@pytest.mark.parametrize(("strategy", "make"), [
    ("summarize", lambda path: write_essay(path, FACT, lines=600)),
    ("timeline", lambda path: write_log(path, lines=60)),
])
def test_lm_reduce_answers_cite_the_runtime_evidence_at_real_lines(tmp_path: Path, strategy: str,
                                                                   make) -> None:
    source = make(tmp_path / "input.txt")
    lines = source.read_text(encoding="utf-8").splitlines()
    result = rlm_dsl.ask("What happened?", [str(source)], lm="test:window=2048",
                         strategy=strategy)
    assert result.evidence and result.answer
    for row in result.evidence:  # each cited line is the input's line of that number
        assert row["source"] == str(source) and row["text"] == lines[row["line"] - 1]


@pytest.mark.parametrize(("argv", "code", "message"), [
    (["ask", "Q?", "missing.txt", "--lm", "test"], 2, "no such file or directory: 'missing.txt'"),
    (["ask", "Q?", "{essay}", "--lm", "test", "--strategy", "guess"], 1, "unknown strategy"),
    (["ask", " ", "{essay}", "--lm", "test"], 2, "the question is empty"),
])
def test_bad_input_is_one_message_and_an_exit_code(tmp_path: Path, capsys, argv: list[str],
                                                   code: int, message: str) -> None:
    essay = write_essay(tmp_path / "essay.txt", FACT, lines=5)
    argv = [a.replace("{essay}", str(essay)) for a in argv]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_free_form_plan_on_a_weak_sandbox_needs_the_flag(tmp_path: Path, capsys,
                                                          monkeypatch) -> None:
    from rlm_dsl.runtime.repl import isolation, sandbox

    weak = isolation.Isolation("none", warnings=(isolation.WEAK.format(
        why="bubblewrap (`bwrap`) is not installed"),))
    monkeypatch.delenv("RLM_ALLOW_WEAK_SANDBOX", raising=False)
    monkeypatch.setattr(isolation, "isolation", lambda: weak)
    monkeypatch.setattr(sandbox, "isolation", lambda: weak)
    essay = write_essay(tmp_path / "essay.txt", FACT, lines=20)
    argv = ["ask", QUESTION, str(essay), "--lm", "test", "--strategy", "free_form"]
    assert main(argv) == 1
    assert "REPL sandbox is weak" in capsys.readouterr().err
    assert main([*argv, "--allow-weak-sandbox"]) == 0
    assert "REPL sandbox is weak" in capsys.readouterr().err  # run, and said so


def test_the_planners_calls_are_budgeted_recorded_and_cached_in_the_store(tmp_path: Path,
                                                                         capsys) -> None:
    notes = write_essay(tmp_path / "notes.txt", FACT)
    db = tmp_path / "run.duckdb"
    argv = ["ask", "What do the notes say about gardens?", str(notes), "--lm", "test",
            "--db", str(db)]  # no cue word: the planner asks the LM
    assert main([*argv, "--max-calls", "1"]) == 3
    assert "after planning spent 1; the budget is 1" in capsys.readouterr().err
    assert main([*argv, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["summary"]
    assert summary["planned_by"] == "lm"
    assert (summary["planner_calls"], summary["planner_cache_hits"]) == (0, 1)  # from the store
    con = duckdb.connect(str(db), read_only=True)
    planner = con.execute(
        "SELECT l.cached, r.run_id IS NOT NULL FROM lm_calls l LEFT JOIN runs r USING (run_id) "
        "WHERE l.step = 'planner' ORDER BY l.started_at").fetchall()
    con.close()
    # the refused ask's call is kept (it was paid for); the second is filed under its run
    assert planner == [(False, False), (True, True)]


def test_lookup_weighs_a_rare_term_over_a_word_on_every_line(tmp_path: Path) -> None:
    lines = [f"2026-12-07 01:27:{i % 60:02d} status installed pkg{i}:amd64 1.{i}"
             for i in range(200)]
    lines.insert(150, "2026-12-07 01:27:20 install bubblewrap:amd64 <none> 0.8.0-2+deb12u1")
    log = tmp_path / "dpkg.log"
    log.write_text("\n".join(lines) + "\n")
    result = rlm_dsl.ask("Which version of bubblewrap was installed?", [str(log)], lm="test",
                         strategy="lookup")
    assert result.answer == lines[150]  # the test LM answers with the line it was shown
    assert result.summary["calls"] == 1  # the one line naming the rare term, not 8 'installed'
    assert result.evidence[0]["line"] == 151


def test_lookup_reads_the_best_row_of_every_name_the_question_compares(tmp_path: Path) -> None:
    docs = [{"title": "Rothmannia", "text": "Rothmannia is a genus of flowering plants in the "
             "Rubiaceae family, named for Rothman; Rothmannia species grow in Africa."},
            {"title": "Ipomoea", "text": "Morning glory is the common name of the Ipomoea genus "
             "in the Convolvulaceae family."}]
    docs += [{"title": f"Ipomoea {i}", "text": f"Ipomoea {i} is the saltmarsh morning glory."}
             for i in range(6)]  # the common name is in most rows: it weighs little
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    db = tmp_path / "run.duckdb"
    rlm_dsl.ask("Which plant genus is part of a family with a longer name, Morning glory or "
                "Rothmannia?", [str(path)], lm="test", db=db, strategy="lookup")
    con = duckdb.connect(str(db), read_only=True)
    read = con.execute("SELECT first_line FROM candidates ORDER BY first_line").fetchall()
    con.close()
    assert read == [(1,), (2,)]  # the best row of each named thing, though one scores far higher
