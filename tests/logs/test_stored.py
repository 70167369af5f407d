"""The stored half of a log table: ``source``, ``format`` and ``parse_error`` are ENUMs, the
view shows VARCHAR."""

from __future__ import annotations

from rlm_dsl.runtime.logs import append_new, load_log


def _syslog(start: int, n: int) -> str:
    return "".join(f"Mar  3 10:00:{i:02d} web01 app[7]: event {i}\n" for i in range(start, n))


def _types(store, table: str) -> dict[str, str]:
    return dict(store.con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
        "AND column_name IN ('source', 'format', 'parse_error')", [table]).fetchall())


def test_source_format_and_parse_error_are_stored_as_enums_and_read_as_varchar(
    store, write_log, rows
):
    first = write_log("a.log", _syslog(0, 3))
    load_log(store, "logs", [first])
    stored = _types(store, "logs__stored")
    assert stored["source"] == f"ENUM('{first}')"
    assert stored["format"].startswith("ENUM('") and "'syslog'" in stored["format"]
    assert "'empty line'" in stored["parse_error"]
    assert set(_types(store, "logs").values()) == {"VARCHAR"}
    assert rows("source, format") == [(first, "syslog")] * 3


def test_a_new_file_widens_the_source_enum(store, write_log, rows):
    first, second = write_log("a.log", _syslog(0, 3)), write_log("b.log", "not a log line\n")
    load_log(store, "logs", [first])
    append_new(store, "logs", [first, second])
    assert _types(store, "logs__stored")["source"] == f"ENUM('{first}', '{second}')"
    assert rows("source, format, parse_error") == [(first, "syslog", None)] * 3 + [
        (second, "raw", "no known log format recognised in this file")]
    found = store.con.execute("SELECT count(*) FROM logs WHERE source = ?", [second]).fetchone()
    assert found == (1,)


def test_a_table_with_varchar_columns_takes_new_lines_and_files(store, write_log, rows):
    """A log table made before the ENUM columns (VARCHAR ``source``/``format``) keeps working."""
    first = write_log("a.log", _syslog(0, 1))
    store.con.execute(
        "CREATE TABLE logs__stored (id BIGINT, source VARCHAR, line_no BIGINT, end_line_no BIGINT, "
        "byte_offset BIGINT, ts TIMESTAMP, text VARCHAR, format VARCHAR, parse_error VARCHAR)")
    store.con.execute("INSERT INTO logs__stored VALUES (0, ?, 1, 1, 0, "
                      "TIMESTAMP '2026-03-03 10:00:00', 'Mar  3 10:00:00 web01 app[7]: event 0', "
                      "'syslog', NULL)", [first])
    store.con.execute("CREATE VIEW logs AS SELECT *, NULL AS message FROM logs__stored")
    with open(first, "a", encoding="utf-8") as f:
        f.write(_syslog(1, 3))
    second = write_log("b.log", _syslog(0, 1))
    append_new(store, "logs", [first, second])
    assert set(_types(store, "logs__stored").values()) == {"VARCHAR"}
    assert rows("source, line_no, format, message") == [
        (first, 1, "syslog", "event 0"), (first, 2, "syslog", "event 1"),
        (first, 3, "syslog", "event 2"), (second, 1, "syslog", "event 0")]
