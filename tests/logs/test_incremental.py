"""Incremental ingest: only lines added since the last ingest become new rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_dsl.runtime.logs import LogIngestError, append_new, load_log


def _syslog(start: int, n: int) -> str:
    return "".join(
        f"Mar  3 10:{i // 60:02d}:{i % 60:02d} web01 app[7]: event {i}\n" for i in range(start, n)
    )


def test_append_of_ten_lines_ingests_only_those(store, write_log, rows):
    path = write_log("grow.log", _syslog(0, 50))
    other = write_log("other.log", _syslog(0, 5))
    load_log(store, "logs", [path, other])
    with open(path, "a", encoding="utf-8") as f:
        f.write(_syslog(50, 60))
    report = append_new(store, "logs", [path, other])
    assert (report.rows, report.first_new_id, report.updated_ids) == (10, 55, [])
    assert [(f.source, f.rows) for f in report.files] == [(path, 10), (other, 0)]
    new = rows("id, source, line_no, byte_offset, message")[55:]
    size = len(_syslog(0, 50).encode())
    assert new[0] == (55, path, 51, size, "event 50")
    assert [r[2] for r in new] == list(range(51, 61))
    assert store.count("logs") == 65


def test_unchanged_files_add_nothing(store, write_log):
    path = write_log("same.log", _syslog(0, 20))
    load_log(store, "logs", [path])
    report = append_new(store, "logs", [path])
    assert (report.rows, report.first_new_id, store.count("logs")) == (0, 20, 20)


def test_new_file_is_ingested_in_full(store, write_log):
    first = write_log("a.log", _syslog(0, 3))
    load_log(store, "logs", [first])
    second = write_log("b.log", _syslog(0, 4))
    report = append_new(store, "logs", [first, second])
    assert [(f.source, f.rows) for f in report.files] == [(first, 0), (second, 4)]


def test_growing_stack_trace_updates_its_record(store, tmp_path: Path, rows):
    path = tmp_path / "app.log"
    path.write_text(
        "2026-03-14 09:00:00,000 INFO  [main] app.Main - started\n"
        "2026-03-14 09:00:01,000 ERROR [main] app.Db - query failed\n"
        "java.sql.SQLException: timeout\n"
    )
    load_log(store, "logs", [str(path)])
    with path.open("a") as f:
        f.write("\tat app.Db.query(Db.java:10)\n")
        f.write("2026-03-14 09:00:02,000 INFO  [main] app.Main - ok\n")
    report = append_new(store, "logs", [str(path)])
    assert (report.rows, report.first_new_id, report.updated_ids) == (1, 2, [1])
    assert rows("id, line_no, end_line_no, text") == [
        (0, 1, 1, "2026-03-14 09:00:00,000 INFO  [main] app.Main - started"),
        (
            1,
            2,
            4,
            "2026-03-14 09:00:01,000 ERROR [main] app.Db - query failed\n"
            "java.sql.SQLException: timeout\n\tat app.Db.query(Db.java:10)",
        ),
        (2, 5, 5, "2026-03-14 09:00:02,000 INFO  [main] app.Main - ok"),
    ]


def test_a_truncated_file_is_reported_not_misread(store, write_log):
    path = write_log("rotated.log", _syslog(0, 20))
    load_log(store, "logs", [path])
    Path(path).write_text(_syslog(0, 2))
    with pytest.raises(LogIngestError) as info:
        append_new(store, "logs", [path])
    now, before = len(_syslog(0, 2)), len(_syslog(0, 20))
    assert info.value.report.files[0].error == (
        f"is shorter ({now} bytes) than what 'logs' already holds ({before} bytes): rotated or "
        "truncated? Not ingested — use a new table"
    )
    assert store.count("logs") == 20
