"""Per-format parsing: exact columns, line numbers, byte offsets, malformed, multi-line."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import pytest

from rlm_dsl.errors import InputError
from rlm_dsl.runtime.logs import load_log

YEAR = dt.date.today().year
COLS = (
    "source, line_no, end_line_no, ts, level, host, process, pid, component, message, parse_error"
)


def test_syslog_rfc3164(store, write_log, rows):
    path = write_log(
        "auth.log",
        "Mar  3 10:00:01 web01 sshd[1234]: Failed password for root from 10.0.0.7 port 22 ssh2\n"
        "<34>Mar 13 10:00:02 web01 su: 'su root' failed for lonvick on /dev/pts/8\n"
        "this line is not syslog\n"
        "2026-03-13T10:00:03.250+01:00 web02 CRON[99]: (root) CMD (run-parts /etc/cron.hourly)\n",
    )
    report = load_log(store, "logs", [path])
    assert (report.rows, report.parse_errors, report.files[0].format) == (4, 1, "syslog")
    assert rows(COLS) == [
        (
            path,
            1,
            1,
            dt.datetime(YEAR, 3, 3, 10, 0, 1),
            None,
            "web01",
            "sshd",
            1234,
            None,
            "Failed password for root from 10.0.0.7 port 22 ssh2",
            None,
        ),
        (
            path,
            2,
            2,
            dt.datetime(YEAR, 3, 13, 10, 0, 2),
            "FATAL",
            "web01",
            "su",
            None,
            None,
            "'su root' failed for lonvick on /dev/pts/8",
            None,
        ),
        (
            path,
            3,
            3,
            None,
            None,
            None,
            None,
            None,
            None,
            "this line is not syslog",
            "line does not match the syslog format",
        ),
        (
            path,
            4,
            4,
            dt.datetime(2026, 3, 13, 10, 0, 3, 250000),
            None,
            "web02",
            "CRON",
            99,
            None,
            "(root) CMD (run-parts /etc/cron.hourly)",
            None,
        ),
    ]


def test_syslog_rfc5424(store, write_log, rows):
    path = write_log(
        "rfc5424.log",
        "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        '[exampleSDID@32473 iut="3" eventSource="Application"] An application event\n'
        "<11>1 2003-10-11T22:14:16Z host2 app 4242 - - disk failure on /dev/sda\n",
    )
    load_log(store, "logs", [path])
    assert rows("line_no, ts, level, host, process, pid, component, message, format") == [
        (
            1,
            dt.datetime(2003, 10, 11, 22, 14, 15, 3000),
            "INFO",
            "mymachine.example.com",
            "evntslog",
            None,
            "ID47",
            "An application event",
            "syslog5424",
        ),
        (
            2,
            dt.datetime(2003, 10, 11, 22, 14, 16),
            "ERROR",
            "host2",
            "app",
            4242,
            None,
            "disk failure on /dev/sda",
            "syslog5424",
        ),
    ]


def test_apache_combined_and_common(store, write_log, rows):
    combined = write_log(
        "access.log",
        '203.0.113.9 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
        '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"\n'
        '198.51.100.4 - - [10/Oct/2000:13:56:01 -0700] "POST /api/orders HTTP/1.1" 503 - "-" '
        '"curl/8.5.0"\n'
        "not an access log line\n",
    )
    common = write_log(
        "common.log", '192.0.2.1 - - [11/Oct/2000:08:00:00 +0000] "GET /missing HTTP/1.1" 404 12\n'
    )
    report = load_log(store, "logs", [combined, common])
    assert [f.format for f in report.files] == ["apache_combined", "apache_common"]
    assert rows("line_no, ts, level, host, component, message, parse_error") == [
        (
            1,
            dt.datetime(2000, 10, 10, 13, 55, 36),
            "INFO",
            "203.0.113.9",
            "frank",
            '"GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" '
            '"Mozilla/4.08 [en] (Win98; I ;Nav)"',
            None,
        ),
        (
            2,
            dt.datetime(2000, 10, 10, 13, 56, 1),
            "ERROR",
            "198.51.100.4",
            None,
            '"POST /api/orders HTTP/1.1" 503 - "-" "curl/8.5.0"',
            None,
        ),
        (
            3,
            None,
            None,
            None,
            None,
            "not an access log line",
            "line does not match the apache_combined format",
        ),
        (
            1,
            dt.datetime(2000, 10, 11, 8, 0),
            "WARN",
            "192.0.2.1",
            None,
            '"GET /missing HTTP/1.1" 404 12',
            None,
        ),
    ]


def test_json_lines(store, write_log, rows):
    path = write_log(
        "svc.jsonl",
        '{"timestamp": "2026-03-14T09:00:01.5Z", "level": "warning", "logger": "db", '
        '"message": "slow query", "host": "db01", "pid": 77}\n'
        '{"ts": 1773478800, "severity": "ERROR", "msg": "pool exhausted", "service": "api"}\n'
        '{"level": "info", "msg": "truncated\n'
        "\n",
    )
    report = load_log(store, "logs", [path])
    assert report.files[0].format == "jsonl"
    assert rows("line_no, ts, level, host, process, pid, component, message, parse_error") == [
        (
            1,
            dt.datetime(2026, 3, 14, 9, 0, 1, 500000),
            "WARN",
            "db01",
            None,
            77,
            "db",
            "slow query",
            None,
        ),
        (
            2,
            dt.datetime(2026, 3, 14, 9, 0),
            "ERROR",
            None,
            "api",
            None,
            None,
            "pool exhausted",
            None,
        ),
        (
            3,
            None,
            None,
            None,
            None,
            None,
            None,
            '{"level": "info", "msg": "truncated',
            "line does not match the jsonl format",
        ),
        (4, None, None, None, None, None, None, "", "empty line"),
    ]


def test_logfmt(store, write_log, rows):
    path = write_log(
        "svc.logfmt",
        'ts=2026-03-14T09:00:00Z level=error component=db msg="connection refused" pid=12\n'
        "time=2026-03-14T09:00:05Z lvl=info msg=ready host=api01\n",
    )
    report = load_log(store, "logs", [path])
    assert report.files[0].format == "logfmt"
    assert rows("line_no, ts, level, host, pid, component, message") == [
        (1, dt.datetime(2026, 3, 14, 9, 0), "ERROR", None, 12, "db", "connection refused"),
        (2, dt.datetime(2026, 3, 14, 9, 0, 5), "INFO", "api01", None, None, "ready"),
    ]


LOG4J = """\
  stray continuation before any record
2026-03-14 09:12:03,412 INFO  [main] com.example.App - Started in 4.8 s
2026-03-14 09:12:04,001 ERROR [http-nio-8080-exec-3] com.example.db.Pool - No connection
java.sql.SQLTransientConnectionException: HikariPool-1 - Connection is not available
\tat com.zaxxer.hikari.pool.HikariPool.createTimeoutException(HikariPool.java:696)

\tat com.example.App.main(App.java:10)
2026-03-14 09:12:05.100  WARN 4242 --- [nio-8080-exec-1] c.e.shop.web.OrderController : slow
"""


def test_log4j_multiline_records(store, write_log, rows):
    path = write_log("app.log", LOG4J)
    report = load_log(store, "logs", [path])
    assert (report.rows, report.parse_errors, report.files[0].format) == (4, 1, "log4j")
    trace = LOG4J.splitlines()[2:7]
    assert rows("id, line_no, end_line_no, byte_offset, level, process, pid, component, text") == [
        (0, 1, 1, 0, None, None, None, None, "  stray continuation before any record"),
        (1, 2, 2, 39, "INFO", "main", None, "com.example.App", LOG4J.splitlines()[1]),
        (
            2,
            3,
            7,
            111,
            "ERROR",
            "http-nio-8080-exec-3",
            None,
            "com.example.db.Pool",
            "\n".join(trace),
        ),
        (
            3,
            8,
            8,
            LOG4J.index("2026-03-14 09:12:05"),
            "WARN",
            "nio-8080-exec-1",
            4242,
            "c.e.shop.web.OrderController",
            LOG4J.splitlines()[7],
        ),
    ]
    message = rows("message")[2][0]
    assert message.startswith("No connection\njava.sql.SQLTransient")
    assert message.endswith("(App.java:10)")


def test_python_logging_traceback(store, write_log, rows):
    path = write_log(
        "worker.log",
        "2026-03-14 09:00:00,001 - worker.jobs - INFO - job 7 started\n"
        "2026-03-14 09:00:01,002 - worker.jobs - ERROR - job 7 failed\n"
        "Traceback (most recent call last):\n"
        '  File "jobs.py", line 3, in run\n'
        "ZeroDivisionError: division by zero\n"
        "WARNING:worker.retry:retrying job 7\n",
    )
    report = load_log(store, "logs", [path])
    assert report.files[0].format == "python"
    assert rows("line_no, end_line_no, ts, level, component, message") == [
        (1, 1, dt.datetime(2026, 3, 14, 9, 0, 0, 1000), "INFO", "worker.jobs", "job 7 started"),
        (
            2,
            5,
            dt.datetime(2026, 3, 14, 9, 0, 1, 2000),
            "ERROR",
            "worker.jobs",
            'job 7 failed\nTraceback (most recent call last):\n  File "jobs.py", line 3, in run\n'
            "ZeroDivisionError: division by zero",
        ),
        (6, 6, None, "WARN", "worker.retry", "retrying job 7"),
    ]


def test_generic_timestamp_level_message(store, write_log, rows):
    path = write_log(
        "generic.log",
        "2026-03-14T09:00:00Z [ERROR] disk full on /var\n"
        "2026/03/14 09:00:01 warn: retrying\n"
        "    details: 3 retries left\n",
    )
    report = load_log(store, "logs", [path])
    assert report.files[0].format == "generic"
    assert rows("line_no, end_line_no, ts, level, message") == [
        (1, 1, dt.datetime(2026, 3, 14, 9, 0), "ERROR", "disk full on /var"),
        (2, 3, dt.datetime(2026, 3, 14, 9, 0, 1), "WARN", "retrying\n    details: 3 retries left"),
    ]


def test_byte_offsets_and_ids_across_files(store, write_log, rows):
    text = "Mar  3 10:00:01 a b: x\n\nMar  3 10:00:02 a b: héllo\nMar  3 10:00:03 a b: y\n"
    first = write_log("a.log", text)
    second = write_log("b.log", text)
    load_log(store, "logs", [first, second])
    data = text.encode()
    starts = [
        0,
        data.index(b"\n") + 1,
        data.index(b"Mar  3 10:00:02"),
        data.index(b"Mar  3 10:00:03"),
    ]
    assert rows("id, source, line_no, byte_offset") == [
        (i + 4 * k, src, i + 1, starts[i])
        for k, src in enumerate([first, second])
        for i in range(4)
    ]


def test_gzip_is_read_transparently(store, tmp_path: Path, rows):
    path = tmp_path / "app.log.gz"
    with gzip.open(path, "wt") as f:
        f.write(LOG4J)
    report = load_log(store, "logs", [str(path)])
    assert (report.files[0].format, report.rows) == ("log4j", 4)
    assert rows("end_line_no") == [(1,), (2,), (7,), (8,)]


def test_latin1_file_is_read_not_lost(store, tmp_path: Path, rows):
    path = tmp_path / "old.log"
    path.write_bytes(b"Mar  3 10:00:00 web01 app[1]: up\n"
                     b"Mar  3 10:00:01 web01 app[1]: caf\xe9 ready\n")
    report = load_log(store, "logs", [str(path)])
    assert report.files[0].note == ("not UTF-8 (line 2); read as Latin-1 "
                                    "(pass --encoding latin-1 to say so, or the file's encoding)")
    assert rows("message") == [("up",), ("café ready",)]


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("latin-1", "Mar  3 10:00:01 web01 app[1]: caf\u00e9 ready\n".encode("latin-1")),
        ("utf-16", "Mar  3 10:00:01 web01 app[1]: caf\u00e9 ready\n".encode("utf-16")),
    ],
)
def test_a_chosen_encoding_decodes_the_file_without_a_note(
    store, tmp_path: Path, rows, encoding: str, data: bytes
):
    path = tmp_path / "old.log"
    path.write_bytes(data)
    report = load_log(store, "logs", [str(path)], encoding=encoding)
    assert (report.files[0].note, report.files[0].error) == ("", "")
    assert rows("message") == [("café ready",)]


def test_text_not_in_the_chosen_encoding_is_an_error_naming_the_line(store, tmp_path: Path):
    path = tmp_path / "old.log"
    path.write_bytes(b"Mar  3 10:00:00 web01 app[1]: up\nMar  3 10:00:01 web01 app[1]: caf\xe9\n")
    with pytest.raises(InputError) as caught:
        load_log(store, "logs", [str(path)], encoding="utf-8")
    assert f"{path}: line 2: not utf-8 text" in str(caught.value)


def test_unrecognised_file_keeps_every_line(store, write_log, rows):
    path = write_log("notes.txt", "hello\nworld\n")
    report = load_log(store, "logs", [path])
    assert (report.files[0].format, report.parse_errors) == ("raw", 2)
    assert rows("line_no, message, parse_error") == [
        (1, "hello", "no known log format recognised in this file"),
        (2, "world", "no known log format recognised in this file"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("app.log", "log4j"), ("auth.log", "syslog"), ("access.log", "apache_combined")],
)
def test_sample_logs_are_detected(store, name, expected):
    sample = Path(__file__).parents[2] / "recipes" / "data" / "logs" / name
    report = load_log(store, "logs", [str(sample)])
    assert (report.files[0].format, report.parse_errors) == (expected, 0)


def test_forced_format_overrides_detection(store, write_log, rows):
    path = write_log("x.log", "2026-03-14T09:00:00Z ERROR boom\n")
    report = load_log(store, "logs", [path], format="generic")
    assert report.files[0].format == "generic"
    assert rows("level, message") == [("ERROR", "boom")]


def test_crlf_line_endings_keep_byte_offsets_exact(store, tmp_path: Path, rows):
    path = tmp_path / "win.log"
    data = b"2026-03-14T09:00:00Z INFO a\r\n2026-03-14T09:00:01Z ERROR b\r\n  at x\r\n"
    path.write_bytes(data)
    load_log(store, "logs", [str(path)])
    assert rows("line_no, end_line_no, byte_offset, text") == [
        (1, 1, 0, "2026-03-14T09:00:00Z INFO a"),
        (2, 3, data.index(b"2026-03-14T09:00:01Z"), "2026-03-14T09:00:01Z ERROR b\n  at x"),
    ]


def test_empty_and_blank_files(store, write_log, rows):
    empty = write_log("empty.log", "")
    blank = write_log("blank.log", "\n\n")
    report = load_log(store, "logs", [empty, blank])
    assert [(f.format, f.rows) for f in report.files] == [("raw", 0), ("raw", 2)]
    assert rows("source, line_no, byte_offset, text, parse_error") == [
        (blank, 1, 0, "", "empty line"),
        (blank, 2, 1, "", "empty line"),
    ]
