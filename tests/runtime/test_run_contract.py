"""The run contract: exit codes that tell the truth, one JSON object on every outcome, failure rows
superseded by retries, resume hints that reproduce the command, interrupted runs marked."""

from __future__ import annotations

import json
import shlex

import pytest
from test_resume import ITEMS_SPEC  # the 100-item count recipe

from rlm_dsl.cli.envelope import KEYS
from tests.conftest import failure


def _one_object(out: str) -> dict:
    """stdout holds exactly one JSON object with the documented keys."""
    obj = json.loads(out)
    assert tuple(obj) == KEYS
    return obj


def test_a_run_whose_every_lm_call_fails_exits_4_and_lists_every_row(tmp_path, spec, items, cli,
                                                                      query):
    path, db = spec(ITEMS_SPEC), tmp_path / "run.duckdb"
    code, out, err = cli("run", path, "-i", f"items={items}", "--lm", "test:fail=1.0",
                         "--db", db)
    assert code == 4
    assert json.loads(out) == [{"total": None, "rows": 0}]  # the outputs still print
    assert "run incomplete: 100 row(s) failed after their retries; the outputs miss them" in err
    assert f"step 'map-n' ({path}:4:1): 100 row(s): chunk 0, 1, 2" in err
    assert (f"retry the failed rows with: rlm run {path} --input items={items} --lm "
            f"test:fail=1.0 --db {db} --retry-failed") in err
    assert query(db, "SELECT count(DISTINCT chunk_id) FROM failures WHERE NOT resolved") == [
        (100,)]
    assert query(db, "SELECT status FROM runs") == [("partial",)]


def test_json_on_success_carries_status_run_id_and_db(tmp_path, spec, items, cli, query):
    db = tmp_path / "run.duckdb"
    code, out, _ = cli("run", spec(ITEMS_SPEC), "-i", f"items={items}", "--lm", "test",
                       "--db", db, "--json")
    obj = _one_object(out)
    assert code == 0 and obj["status"] == "done" and obj["exit_code"] == 0
    assert obj["error"] is None and obj["db"] == str(db)
    assert [(obj["run_id"], "done")] == query(db, "SELECT run_id, status FROM runs")
    assert obj["outputs"] == {"total": [{"total": 25, "rows": 100}]}
    assert obj["summary"]["calls"] == 100


def test_json_is_one_object_on_every_failure(tmp_path, spec, items, cli):
    path, db = spec(ITEMS_SPEC), tmp_path / "run.duckdb"
    usage = cli("run", path, "--max-calls", "lots", "--json")
    spec_error = cli("run", spec("recipe broken\n", "bad.rlm"), "--json")
    input_error = cli("run", path, "-i", f"items={tmp_path / 'nope.txt'}", "--lm", "test",
                      "--json")
    budget = cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", db,
                 "--max-calls", "10", "--json")
    failed = cli("run", path, "-i", f"items={items}", "--lm", "test:fail=1.0", "--json")
    seen = {}
    for name, (code, out, _) in {"usage": usage, "spec": spec_error, "input": input_error,
                                 "budget": budget, "rows": failed}.items():
        obj = _one_object(out)
        assert obj["exit_code"] == code and obj["error"]["exit_code"] == code
        seen[name] = (code, obj["status"], obj["error"]["type"])
    assert seen == {"usage": (1, "failed", "BadParameter"),
                    "spec": (1, "failed", "CompileError"),
                    "input": (2, "failed", "InputError"),
                    "budget": (3, "budget", "BudgetExhausted"),
                    "rows": (4, "partial", "RowsFailed")}
    obj = json.loads(budget[1])
    assert obj["run_id"] and obj["db"] == str(db) and obj["summary"]["calls"] == 10
    assert obj["outputs"] == {"total": None}
    assert "resume with: rlm run" in obj["error"]["message"]


def test_retries_supersede_failure_rows(tmp_path, spec, items, cli, query):
    path, db = spec(ITEMS_SPEC), tmp_path / "run.duckdb"
    args = ("run", path, "-i", f"items={items}", "--lm", "test:fail=1.0", "--db", db)
    assert cli(*args)[0] == 4
    code, _, err = cli(*args, "--retry-failed")
    assert code == 4 and "failures: 100 " in err
    assert query(db, "SELECT count(*), min(attempts) FROM failures WHERE NOT resolved") == [
        (100, 4)]  # one open row per missing row, counting both runs' attempts
    code, out, err = cli("run", path, "-i", f"items={items}", "--lm", "test:fail=1.0",
                         "--db", db, "--retry-failed", "--lm", "test", "--json")
    assert code == 0 and "failures: 0" in err
    assert json.loads(out)["outputs"]["total"] == [{"total": 25, "rows": 100}]


def test_the_resume_hint_reproduces_every_flag_and_covers_the_missing_tokens(tmp_path, spec,
                                                                             items, cli):
    path, db = spec(ITEMS_SPEC), tmp_path / "run.duckdb"
    code, _, err = cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", db,
                       "--no-opt", "-q", "--concurrency", "3", "--max-tokens", "3000")
    assert code == 3
    hint = next(line for line in err.splitlines() if line.startswith("resume with: "))
    argv = shlex.split(hint.removeprefix("resume with: "))
    assert argv[:3] == ["rlm", "run", str(path)]
    for flag in ("--no-opt", "--quiet", "--concurrency", "--lm", "--db", "--input"):
        assert flag in argv
    code, _, err = cli(*argv[1:])
    assert code == 0, err


def test_debug_is_accepted_after_the_command(spec, items, cli):
    code, out, err = cli("run", spec(ITEMS_SPEC), "--debug", "-i", f"items={items}",
                         "--lm", "test")
    assert code == 0, err
    assert '"total": 25' in out


def test_a_db_in_a_missing_directory_is_created(tmp_path, spec, items, cli):
    db = tmp_path / "runs" / "today" / "run.duckdb"
    code, _, err = cli("run", spec(ITEMS_SPEC), "-i", f"items={items}", "--lm", "test",
                       "--db", db)
    assert code == 0, err
    assert db.exists()


def test_a_run_left_running_is_marked_interrupted_when_the_db_is_opened(tmp_path, spec, items,
                                                                         cli, query):
    import duckdb

    path, db = spec(ITEMS_SPEC), tmp_path / "run.duckdb"
    args = ("run", path, "-i", f"items={items}", "--lm", "test", "--db", db)
    assert cli(*args)[0] == 0
    with duckdb.connect(str(db)) as con:  # what a SIGKILL leaves behind
        con.execute("UPDATE runs SET status = 'running', finished_at = NULL")
    assert cli(*args)[0] == 0
    assert query(db, "SELECT status FROM runs ORDER BY started_at") == [("interrupted",),
                                                                        ("done",)]


BOUND = '''
    recipe bound "One step bound to an LM, one on the default."
    lm judge = "test:seed=3"
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> n: int """
      COUNT "bad"
      {{ chunk.text }}
    """
    map pieces -> m: int using judge """
      COUNT "ok"
      {{ chunk.text }}
    """
    output n, m
'''


def test_lm_is_the_default_lm_and_lm_all_replaces_the_bindings(tmp_path, spec, write_items,
                                                                cli, query):
    path, items = spec(BOUND), write_items(4)
    models = "SELECT step, min(model), max(model) FROM lm_calls GROUP BY 1 ORDER BY 1"
    assert cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", tmp_path / "a")[0] == 0
    assert query(tmp_path / "a", models) == [("map-m", "test:seed=3", "test:seed=3"),
                                             ("map-n", "test", "test")]
    code, _, err = cli("run", path, "-i", f"items={items}", "--lm-all", "test:seed=5",
                       "--db", tmp_path / "b")
    assert code == 0, err
    assert query(tmp_path / "b", models) == [("map-m", "test:seed=5", "test:seed=5"),
                                             ("map-n", "test:seed=5", "test:seed=5")]
    code, _, err = cli("run", path, "-i", f"items={items}", "--lm", "test", "--lm-all", "test")
    assert code == 1 and "pass one" in err


def test_a_path_in_a_spec_is_relative_to_the_spec_from_any_working_directory(
        tmp_path, cli, monkeypatch):
    folder = tmp_path / "job"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "items.txt").write_text("item 0 bad\nitem 1 ok\n")
    (folder / "count.rlm").write_text(
        'recipe count "Count."\ninput items: lines with path="data/items.txt"\n'
        'chunk items -> pieces by lines(1)\nmap pieces -> n: int """\n  COUNT "bad"\n'
        '  {{ chunk.text }}\n"""\noutput n\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = cli("run", folder / "count.rlm", "--lm", "test")
    assert code == 0, err
    assert json.loads(out) == [1, 0]


def test_trace_shows_a_concurrent_steps_wall_time_beside_its_summed_latency(tmp_path, spec,
                                                                             items, cli):
    db = tmp_path / "run.duckdb"
    assert cli("run", spec(ITEMS_SPEC), "-i", f"items={items}", "--lm", "test:delay=0.02",
               "--concurrency", "8", "--db", db)[0] == 0
    code, out, _ = cli("trace", db)
    assert code == 0
    line = next(x for x in out.splitlines() if "map-n" in x)
    def seconds(text: str) -> float:
        value, unit = text.split()[:2]
        return float(value) / (1000 if unit == "ms" else 1)

    wall, summed = seconds(line.split("wall ")[1]), seconds(line.split("LM ")[1])
    assert summed >= 2.0 and wall < summed / 2  # 100 calls of 20 ms on 8 threads


def test_trace_shows_the_exact_split_tree_of_a_row_with_wall_time_and_status(tmp_path, spec,
                                                                           items, cli):
    db = tmp_path / "run.duckdb"
    path = spec('recipe s "Split."\ninput doc: text\nchunk doc -> parts by lines(40)\n'
                'map parts -> n: int """\n  COUNT "bad"\n  {{ chunk.text }}\n"""\noutput n\n')
    code, out, err = cli("run", path, "-i", f"doc={items}", "--lm", "test:window=230,delay=0.01",
                         "--db", db)
    assert code == 0 and json.loads(out) == [10, 10, 5], err  # the halves add up
    code, out, _ = cli("trace", db, "--json")
    tree = json.loads(out)["tree"]
    chunks = next(n for n in tree["children"] if n["id"] == "map-n")["children"]

    def shape(node):
        pieces = [c for c in node["children"] if c["kind"] == "piece"]
        calls = [c for c in node["children"] if c["kind"] == "call"]
        return (node["label"], node["detail"].get("status"), len(calls),
                [shape(p) for p in pieces])

    # chunks 0 and 1 (40 lines) were cut twice, chunk 2 (20 lines) once; a piece that did not
    # fit made no call and is "split", each leaf made one call and is "ok"
    leaf = [("piece 0.0", "ok", 1, []), ("piece 0.1", "ok", 1, []),
            ("piece 1.0", "ok", 1, []), ("piece 1.1", "ok", 1, [])]
    twice = ("chunk", "ok", 0, [("piece 0", "split", 0, leaf[:2]),
                                ("piece 1", "split", 0, leaf[2:])])
    once = ("chunk 2", "ok", 0, [("piece 0", "ok", 1, []), ("piece 1", "ok", 1, [])])
    assert [shape(c) for c in chunks] == [("chunk 0", *twice[1:]), ("chunk 1", *twice[1:]),
                                          once]
    for node in _walk(chunks[0]):  # every piece has its own wall time, its calls' span
        if node["kind"] == "piece":
            assert node["detail"]["elapsed_s"] >= 0.01 * len(list(_calls(node)))
    code, out, _ = cli("trace", db)
    assert "piece 0.1  ok · 1 call" in out and "piece 0  split · 2 calls" in out
    assert "wall " in next(x for x in out.splitlines() if "piece 0.1" in x)


def _walk(node):
    yield node
    for child in node["children"]:
        yield from _walk(child)


def _calls(node):
    return (n for n in _walk(node) if n["kind"] == "call")




# LiteLLM's first real call imports its provider modules, one of which warns (a UserWarning
# that filterwarnings=error would turn into the call's error, whichever test comes first)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_model_with_no_api_key_stops_at_the_first_call_not_after_every_row(
        tmp_path, spec, items, cli, query, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    db = tmp_path / "run.duckdb"
    code, _, err = cli("run", spec(ITEMS_SPEC), "-i", f"items={items}", "--lm",
                       "openai/gpt-4o-mini", "--db", db, "--concurrency", "2")
    assert code == 4
    assert "step 'map-n' (" in err and "no usable API key for 'openai/gpt-4o-mini'" in err, (
        query(db, "SELECT DISTINCT error FROM failures"))
    assert "Missing credentials" in err  # the provider's own words, kept
    (sent,) = query(db, "SELECT count(*) FROM lm_calls")[0]
    assert sent <= 2  # the rows in flight, not 100 rows x 2 attempts


def test_a_rejected_api_key_stops_the_run_too(tmp_path, spec, items, cli, serve, monkeypatch):
    monkeypatch.setenv("RLM_WRONG_KEY", "sk-wrong")
    server = serve(lambda body, n: failure(401, "invalid_api_key"))
    path = spec(ITEMS_SPEC.replace("input items", f'lm remote = "openai/m" with api_base='
                                   f'"{server.url}", api_key_env="RLM_WRONG_KEY"\n'
                                   "    input items")
                .replace("with retries=1", "using remote with retries=1"))
    code, _, err = cli("run", path, "-i", f"items={items}", "--db", tmp_path / "run.duckdb",
                       "--concurrency", "1")
    assert code == 4 and "no usable API key for 'openai/m'" in err
    assert len(server.bodies) == 1
