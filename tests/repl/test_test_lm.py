"""``--lm test`` runs a free-form ``rlm`` step for real: the test LM writes REPL code that reads
``context``, asks ``llm_query`` (where its conventions compute the answer) and SUBMITs it typed."""

from __future__ import annotations

import json

import duckdb

from rlm_dsl.cli.main import main


def _free_run(tmp_path, capsys, declare: str) -> tuple[int, str, str, object]:
    """``rlm run --lm test --json`` of an rlm step ``declare``d (``n: int``) COUNTing "bad" over
    40 items, 10 of them bad: (exit code, stdout, stderr, db)."""
    data = tmp_path / "items.txt"
    data.write_text("".join(f"item {i} {'bad' if i % 4 == 0 else 'ok'}\n" for i in range(40)))
    name = declare.split(":")[0]
    spec = tmp_path / "free.rlm"
    spec.write_text('recipe free "Count with the REPL."\ninput items: lines\n'
                    "type Hit { text: str, n: int, many: bool, notes: list[str], level: low | "
                    "high, extra: str? }\n"
                    f'rlm items -> {declare} with max_iterations=3 """\n  COUNT "bad"\n"""\n'
                    f"output {name}\n")
    db = tmp_path / "run.duckdb"
    code = main(["run", str(spec), "-i", f"items={data}", "--lm", "test", "--db", str(db),
                 "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err, db


def test_the_test_lm_answers_an_rlm_step_through_the_repl(tmp_path, capsys):
    code, out, err, db = _free_run(tmp_path, capsys, "n: int")
    assert code == 0, err
    assert json.loads(out)["outputs"] == {"n": 10}
    with duckdb.connect(str(db), read_only=True) as con:
        calls = con.execute("SELECT depth, response FROM lm_calls ORDER BY call_id").fetchall()
        actions = con.execute("SELECT code, output FROM rlm_iterations WHERE depth = 0 AND "
                              "code LIKE 'import json%'").fetchall()
    assert [(depth, response) for depth, response in calls if depth == 1] == [(1, "10")]
    assert len(actions) == 1 and "llm_query(task" in actions[0][0]
    assert actions[0][1].strip() == "FINAL: {'n': 10}"  # the typed SUBMIT
    assert "variables_info" not in out


def test_the_test_lm_submits_a_record_answer_in_one_turn(tmp_path, capsys):
    code, out, err, _ = _free_run(tmp_path, capsys, "hit: Hit")
    assert code == 0, err
    result = json.loads(out)
    assert result["outputs"] == {"hit": {"text": "10", "n": 10, "many": False, "notes": ["10"],
                                         "level": "low", "extra": "10"}}
    assert result["summary"]["calls"] == 2  # one action, one llm_query: no turn wasted
