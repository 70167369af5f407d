"""Bad log input: exact messages, and nothing readable is lost."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from rlm_dsl.errors import InputError
from rlm_dsl.runtime.logs import LogIngestError, load_log
from rlm_dsl.runtime.logs.parse import SAMPLE_BUFFER

SYSLOG = "".join(f"Mar  3 10:00:{i:02d} web01 app[7]: event {i}\n" for i in range(40))
JSONL = '{"ts": "2026-03-14T09:00:00Z", "level": "info", "msg": "ready"}\n'


def test_unknown_format_name_lists_the_known_ones(store, write_log):
    path = write_log("x.log", SYSLOG)
    with pytest.raises(InputError) as info:
        load_log(store, "logs", [path], format="syslogg")
    assert str(info.value) == (
        "unknown log format 'syslogg'; known formats: apache_combined, apache_common, "
        "apache_error, generic, journal_export, jsonl, log4j, logfmt, nginx_error, python, "
        "syslog, syslog5424 (or auto)"
    )
    assert info.value.exit_code == 2


def test_missing_path(store, tmp_path: Path):
    with pytest.raises(InputError, match=r"^log input: no such file or directory: '.*nope\.log'$"):
        load_log(store, "logs", [str(tmp_path / "nope.log")])


def test_mixed_directory_is_detected_per_file(store, write_log, tmp_path: Path):
    write_log("mixed/a_syslog.log", SYSLOG)
    write_log("mixed/b_service.jsonl", JSONL)
    report = load_log(store, "logs", [str(tmp_path / "mixed")])
    assert [(Path(f.source).name, f.format, f.rows) for f in report.files] == [
        ("a_syslog.log", "syslog", 40),
        ("b_service.jsonl", "jsonl", 1),
    ]
    assert store.con.execute("SELECT DISTINCT format FROM logs ORDER BY 1").fetchall() == [
        ("jsonl",),
        ("syslog",),
    ]


def test_mixed_directory_with_a_forced_format(store, write_log, tmp_path: Path):
    write_log("mixed/a_syslog.log", SYSLOG)
    jsonl = write_log("mixed/b_service.jsonl", JSONL)
    with pytest.raises(LogIngestError) as info:
        load_log(store, "logs", [str(tmp_path / "mixed")], format="syslog")
    assert str(info.value) == (
        "log input 'logs': 1 of 2 file(s) had errors (40 rows from the readable files were "
        f"ingested):\n  {jsonl}: does not look like syslog (0 of 1 sampled lines match; it looks "
        "like jsonl); not ingested — leave the format unset to detect it per file"
    )
    assert store.count("logs") == 40


def test_truncated_gzip_keeps_what_was_readable(store, write_log, tmp_path: Path):
    good = write_log("a.log", SYSLOG)
    data = gzip.compress(
        (
            "".join(f"2026-03-14T09:00:00Z INFO line {i} " + "x" * 60 + "\n" for i in range(5000))
        ).encode()
    )
    broken = tmp_path / "b.log.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogIngestError) as info:
        load_log(store, "logs", [good, str(broken)])
    report = info.value.report
    readable = report.files[1].rows
    assert 0 < readable < 5000
    assert str(info.value) == (
        f"log input 'logs': 1 of 2 file(s) had errors ({40 + readable} rows from the readable "
        f"files were ingested):\n  {broken}: truncated gzip stream; ingested the {readable} "
        "readable record(s)"
    )
    first, last = store.con.execute(
        "SELECT min(line_no), max(line_no) FROM logs WHERE source = ?", [str(broken)]
    ).fetchone()
    assert (first, last, store.count("logs")) == (1, readable, 40 + readable)


def test_binary_file_is_reported_not_fatal(store, write_log, tmp_path: Path):
    good = write_log("a.log", SYSLOG)
    blob = tmp_path / "core.bin"
    blob.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(LogIngestError) as info:
        load_log(store, "logs", [good, str(blob)])
    assert info.value.report.files[1].error.startswith("cannot read: ")
    assert store.count("logs") == 40


def test_table_that_is_not_a_log_table(store, write_log):
    store.con.execute("CREATE TABLE logs (id BIGINT, text VARCHAR)")
    with pytest.raises(InputError, match=r"^table 'logs' exists and is not a log table$"):
        load_log(store, "logs", [write_log("a.log", SYSLOG)])


def test_overlong_line_is_named(store, write_log):
    path = write_log("long.log", "2026-03-14T09:00:00Z INFO " + "x" * (17 << 20) + "\n")
    with pytest.raises(LogIngestError) as info:
        load_log(store, "logs", [path])
    assert info.value.report.files[0].error == (
        f"cannot read: line 1 is longer than the 16 MiB limit ({26 + (17 << 20)} bytes)"
    )


@pytest.mark.parametrize("forced", [None, "syslog"])
def test_a_line_longer_than_the_sample_buffer_is_still_detected_and_kept(
    store, write_log, rows, forced
):
    # the format sample is read with a 1 MiB buffer; a longer line (under the 16 MiB limit)
    # makes that read fail, and the sample is read again with the full-sized buffer
    long = "x" * (SAMPLE_BUFFER + 10)
    first, second = SYSLOG.splitlines()[:2]
    path = write_log("wide.log", f"{first}\n{long}\n{second}\n")
    report = load_log(store, "logs", [path], format=forced)
    assert (report.files[0].format, report.rows, report.parse_errors) == ("syslog", 3, 1)
    assert rows("line_no, length(text), parse_error IS NULL") == [
        (1, len(first), True), (2, len(long), False), (3, len(second), True)]


def test_lone_carriage_returns_split_lines_instead_of_failing_the_file(store, tmp_path, rows):
    # apt's term.log draws progress bars with bare CRs; DuckDB's reader rejected the whole file
    data = b"Jun  7 04:11:02 h apt[1]: progress 10%\rprogress 20%\nJun  7 04:11:03 h apt[1]: done\n"
    path = tmp_path / "term.log"
    path.write_bytes(data)
    report = load_log(store, "logs", [str(path)])
    assert report.files[0].note == "lone carriage returns (CR) read as line breaks"
    assert rows("line_no, byte_offset, text") == [
        (1, 0, "Jun  7 04:11:02 h apt[1]: progress 10%"),
        (2, data.index(b"progress 20%"), "progress 20%"),
        (3, data.index(b"Jun  7 04:11:03"), "Jun  7 04:11:03 h apt[1]: done"),
    ]


def test_mixed_crlf_and_lf_endings_keep_every_line_without_stray_carriage_returns(
    store, tmp_path, rows
):
    # a log edited on Windows and appended to on Linux: DuckDB's reader rejected the whole file
    data = (b"Jun  7 04:11:02 h sshd[1]: one\r\nJun  7 04:11:03 h sshd[1]: two\n"
            b"\r\nJun  7 04:11:04 h sshd[1]: three\r\nJun  7 04:11:05 h sshd[1]: four\n")
    path = tmp_path / "mixed.log"
    path.write_bytes(data)
    report = load_log(store, "logs", [str(path)])
    assert not report.failed
    lines = data.split(b"\n")[:-1]
    starts = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    expected = [(i + 1, starts[i], line.rstrip(b"\r").decode()) for i, line in enumerate(lines)]
    assert rows("line_no, byte_offset, text") == expected
    assert rows("ts IS NOT NULL, contains(message, chr(13))") == [(True, False), (True, False),
                                                                  (False, False), (True, False),
                                                                  (True, False)]
