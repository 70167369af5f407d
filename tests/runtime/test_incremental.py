"""``rlm run --incremental``: only new log records reach the LM; without it a finished run is not
read again."""

from __future__ import annotations

import json

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
