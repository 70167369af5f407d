"""Runtime follow-ups: sub-recipe call scopes, the plan in the run record, progress and estimates,
LM options on the command line, incremental log runs and the structured test LM."""

from __future__ import annotations

import json

from rlm_dsl.runtime.trace import open_trace

COUNTER = '''
    recipe counter "Count words in one text."
    param word: str = "bad"
    input doc: text
    chunk doc -> parts by lines(2)
    map parts -> n: int """
      COUNT "{{ word }}"
      {{ chunk.text }}
    """
    reduce n -> total: int by tree(fanin=4) """
      SUM
      {{ items | tojson }}
    """
    output total
'''
MAIN = '''
    recipe main "Per ticket."
    input rows: csv
    use "counter.rlm" as counter
    chunk rows -> threads by column("ticket")
    map threads -> counts: int using recipe counter with params={word: "ugly"}
    output counts
'''


def _sub_recipe_run(spec, run_spec, tmp_path):
    spec(COUNTER, "counter.rlm")
    data = tmp_path / "tickets.csv"
    data.write_text("ticket,text\n1,bad\n2,ugly\n1,bad again\n1,fine\n2,ugly ugly\n")
    db = tmp_path / "run.duckdb"
    result = run_spec(spec(MAIN), inputs={"rows": str(data)}, db=str(db))
    return result, db


def test_sub_recipe_calls_carry_the_prefixed_step(spec, run_spec, tmp_path, query):
    result, db = _sub_recipe_run(spec, run_spec, tmp_path)
    assert result.outputs["counts"] == [0, 2]
    steps = {r[0] for r in query(db, "SELECT DISTINCT step FROM lm_calls")}
    assert steps == {"map-counts__0__map-n", "map-counts__1__map-n",
                     "map-counts__0__reduce-total", "map-counts__1__reduce-total"}
    trace = open_trace(str(db))
    top = {node.id: node for node in trace.step_nodes()}
    assert "map-n" not in top and "map-counts__0__map-n" not in top
    rows = top["map-counts"].children
    assert [r.label for r in rows] == ["row 0", "row 1"]
    inner = {n.label: n for n in rows[1].children}
    assert inner["map-n"].stats.calls == 1  # ticket 2: two lines, one chunk of lines(2)
    assert top["map-counts"].stats.calls == result.summary["calls"]


def test_the_run_record_keeps_the_plan_and_the_trace_draws_its_edges(spec, run_spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a ERROR x\nb ok\nc ERROR y\n")
    path = spec('''
        recipe fork "Two maps over the same chunks."
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> shout: str """
          {{ chunk.text }}
        """
        map pieces -> whisper: str """
          {{ chunk.text }}
        """
        output shout, whisper
    ''')
    db = tmp_path / "run.duckdb"
    run_spec(path, inputs={"items": str(data)}, db=str(db))
    trace = open_trace(str(db))
    assert trace.run["summary"]["plan"]["recipe"] == "fork"
    assert sorted(trace.edges) == [("chunk-pieces", "map-shout"), ("chunk-pieces", "map-whisper"),
                                   ("input-items", "chunk-pieces")]
    from rlm_dsl.runtime.report_html import plan_svg

    svg = plan_svg(trace)
    assert svg.count("<line ") == 3  # the fork, not the chain map-shout -> map-whisper


FORK_LINES = "a ERROR x\nb ok\nc ERROR y\n"
SHOUT = '''
    recipe shout "Upper-case every line, then join."
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> loud: str """
      UPPER
      {{ chunk.text }}
    """
    reduce loud -> all: str by concat """
      JOIN
      {{ items | tojson }}
    """
    output all
'''


def test_a_run_off_a_terminal_prints_no_progress(spec, cli, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text(FORK_LINES)
    code, _, err = cli("run", spec(SHOUT), "--input", f"items={data}", "--lm", "test")
    assert code == 0
    assert len(err.splitlines()) == 1  # the summary line only: no bars, no spend line
    assert err.startswith("calls: 4 · cache hits: 0 · tokens: ")


def test_progress_shows_bars_and_spend_against_the_bound_budget(spec, tmp_path):
    import io

    from rich.console import Console

    from rlm_dsl.compile import compile_file
    from rlm_dsl.runtime.executor import RunOptions, execute
    from rlm_dsl.runtime.progress import RunProgress

    data = tmp_path / "d.txt"
    data.write_text(FORK_LINES)
    screen = io.StringIO()
    progress = RunProgress(Console(file=screen, force_terminal=True, width=120), transient=False)
    with progress:
        execute(compile_file(spec(SHOUT)), RunOptions(
            inputs={"items": str(data)}, lm="test", max_calls=50, progress=progress))
    assert progress.budget is not None and progress.budget.calls == 4
    text = screen.getvalue()
    assert "map-loud" in text and "3/3" in text
    assert "spend: 4 of 50 calls" in text


def test_estimate_prints_the_versus_line_with_the_actual_numbers(spec, cli, tmp_path):
    import json

    data = tmp_path / "d.txt"
    data.write_text(FORK_LINES)
    code, out, err = cli("run", spec(SHOUT), "--input", f"items={data}", "--lm", "test",
                         "--estimate", "--json", "--quiet")
    assert code == 0
    summary = json.loads(out)["summary"]
    versus = err.splitlines()[-1]
    assert versus.startswith("estimate vs actual: calls 4 estimated, 4 actual (+0%) · tokens ")
    assert f"estimated, {summary['tokens']:,} actual" in versus
    assert summary["calls"] == 4


def test_api_base_and_key_env_reach_the_lm_server(spec, cli, tmp_path, loopback, monkeypatch):
    server = loopback(lambda messages: "[[ ## loud ## ]]\nSHOUTED\n\n[[ ## completed ## ]]")
    monkeypatch.setenv("LOOPBACK_KEY", "sk-loop-123")
    data = tmp_path / "d.txt"
    data.write_text("a\nb\n")
    path = spec('''
        recipe shout "Upper-case every line."
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> loud: str """
          UPPER
          {{ chunk.text }}
        """
        output loud
    ''')
    code, out, err = cli("run", path, "--input", f"items={data}", "--lm", "openai/loopback",
                         "--api-base", server.url, "--api-key-env", "LOOPBACK_KEY", "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"]["loud"] == ["SHOUTED", "SHOUTED"]
    assert [r["model"] for r in server.requests] == ["loopback", "loopback"]
    assert [h["Authorization"] for h in server.headers] == ["Bearer sk-loop-123"] * 2
    assert "a" in server.requests[0]["messages"][-1]["content"]


def test_lm_options_need_lm_and_pull_needs_the_local_model(spec, cli, tmp_path):
    path = spec(SHOUT)
    code, _, err = cli("run", path, "--api-base", "http://127.0.0.1:9/v1")
    assert (code, err.strip()) == (1, "--api-base sets an option of the --lm model: "
                                      "pass --lm too")
    code, _, err = cli("run", path, "--lm", "test", "--pull")
    assert (code, err.strip()) == (1, "--pull fetches the local model; --lm test is not "
                                      "'local'")


def test_pull_fetches_the_local_model_before_the_run(spec, cli, monkeypatch):
    from rlm_dsl.errors import LMError

    asked = []

    def ensure(pull: bool = False) -> None:
        asked.append(pull)
        raise LMError("no network here")

    monkeypatch.setattr("rlm_dsl.runtime.lm.models.ensure_local_model", ensure)
    code, _, err = cli("run", spec(SHOUT), "--lm", "local", "--pull")
    assert (code, err.strip(), asked) == (4, "no network here", [True])


LOG_RECIPE = '''
    recipe errors "Note every log record, then list the notes."
    input logs: log
    chunk logs -> recs by record()
    map recs -> note: str """
      {{ chunk.text }}
      Note this record.
    """
    reduce note -> all: str by concat """
      {{ items | tojson }}
      List the notes.
    """
    output all, note
'''


def _log_lines(first: int, count: int) -> str:
    return "".join(f"2024-05-01T10:00:{i % 60:02d}Z ERROR worker-{i} failed job {i}\n"
                   for i in range(first, first + count))


def test_incremental_run_sends_only_the_new_log_records_to_the_lm(spec, cli, tmp_path, query):
    log, db = tmp_path / "app.log", tmp_path / "run.duckdb"
    log.write_text(_log_lines(0, 20))
    path = spec(LOG_RECIPE)
    args = ("run", path, "--input", f"logs={log}", "--lm", "test", "--db", db, "--json")
    code, out, err = cli(*args)
    assert code == 0, err
    assert len(json.loads(out)["outputs"]["note"]) == 20
    with log.open("a") as handle:
        handle.write(_log_lines(20, 10))
    code, out, err = cli(*args, "--incremental")
    assert code == 0, err
    result = json.loads(out)
    notes = result["outputs"]["note"]
    assert len(notes) == 30 and "worker-29" in notes[-1] and "worker-0" in notes[0]
    assert "worker-29" in result["outputs"]["all"]
    second = query(db, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")[0][0]
    sent = query(db, "SELECT step, chunk_id FROM lm_calls WHERE NOT cached AND run_id = "
                     f"'{second}' ORDER BY step, chunk_id")
    assert sent == [("map-note", i) for i in range(20, 30)] + [("reduce-all", 0)]
    assert result["summary"]["calls"] == 11 and result["summary"]["cache_hits"] == 20
    assert query(db, "SELECT count(*) FROM logs")[0][0] == 30


def test_without_incremental_a_grown_log_is_read_again_in_full(spec, cli, tmp_path):
    log, db = tmp_path / "app.log", tmp_path / "run.duckdb"
    log.write_text(_log_lines(0, 5))
    args = ("run", spec(LOG_RECIPE), "--input", f"logs={log}", "--lm", "test", "--db", db,
            "--json")
    assert cli(*args)[0] == 0
    with log.open("a") as handle:
        handle.write(_log_lines(5, 3))
    code, out, _ = cli(*args)  # never the stale answer; the 5 old lines come from the cache
    result = json.loads(out)
    assert (code, len(result["outputs"]["note"])) == (0, 8)
    assert result["summary"]["cache_hits"] == 5


def test_the_test_lm_answers_structured_outputs_validly(spec, run_spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("disk ERROR high on db-1 label=high\nall fine label=low\n")
    path = spec('''
        recipe shapes "Records, lists of records and enums from the test LM."
        type Sev = low | high
        type Item { what: str, tags: list[str], sev: Sev, due: str?, n: int }
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> found: list[Item] """
          FIND "ERROR"
          {{ chunk.text }}
        """
        map pieces -> info: Item """
          {{ chunk.text }}
        """
        map pieces -> sev: Sev """
          {{ chunk.text }}
        """
        map pieces -> labels: list[Sev] """
          LABELS
          {{ chunk.text }}
        """
        output found, info, sev, labels
    ''')
    result = run_spec(path, inputs={"items": str(data)})
    line = "disk ERROR high on db-1 label=high"
    item = {"what": line, "tags": [line], "sev": "high", "due": line, "n": 6}
    assert result.outputs["found"] == [[item], []]
    assert result.outputs["info"][0] == item
    assert result.outputs["info"][1]["sev"] == "low"
    assert result.outputs["sev"] == ["high", "low"]
    assert result.outputs["labels"] == [["high"], ["low"]]
    assert (result.summary["failures"], result.summary["calls"]) == (0, 8)
