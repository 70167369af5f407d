"""Line numbers, byte offsets, record ids and timestamps when a file is numbered in many slices.

Ingest numbers a file in slices that run side by side (``runtime/logs/numbering.py``); these
tests cut small files into slices of a few lines, so that slice boundaries fall everywhere —
inside multi-line records, on blank lines, between CRLF lines — and compare every row with a
numbering computed here from the file's bytes. A wrong slice base, a lost or doubled line, or a
record split at a slice boundary fails them.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from pathlib import Path

import pytest

from rlm_dsl.runtime.logs import append_new, load_log, numbering


@pytest.fixture(autouse=True)
def tiny_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of 3 lines (about 30 of them per 100-line file)."""
    monkeypatch.setattr(numbering, "MIN_SLICE_ROWS", 3)
    monkeypatch.setattr(numbering, "SLICES_PER_THREAD", 1000)


def _syslog(lines: range) -> bytes:
    """Syslog lines stamped from their index; every 7th line blank, some non-ASCII bytes."""
    out = []
    for i in lines:
        if i % 7 == 3:
            out.append("")
        else:
            word = "héllo wörld" if i % 5 == 0 else "event"
            out.append(f"Mar  3 10:{i // 60 % 60:02d}:{i % 60:02d} web01 app[7]: {word} {i}")
    return "".join(line + "\n" for line in out).encode()


def _log4j(records: range) -> bytes:
    """log4j records; every third one has a stack trace (with a blank line in it)."""
    out = []
    for i in records:
        out.append(f"2026-03-14 09:{i // 60 % 60:02d}:{i % 60:02d},{i % 1000:03d} INFO  [main] "
                   f"app.Job - step {i}")
        if i % 3 == 1:
            out += [f"java.lang.IllegalStateException: step {i}", f"\tat app.Job.run(Job.java:{i})",
                    "", "\tat app.Main.main(Main.java:3)"]
    return "".join(line + "\n" for line in out).encode()


def _lines(data: bytes) -> list[tuple[int, int, str]]:
    """``(line_no, byte_offset, text)`` of every line of ``data``, a CR before LF dropped."""
    raw = data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n")
    out, offset = [], 0
    for number, line in enumerate(raw, 1):
        out.append((number, offset, line.removesuffix(b"\r").decode()))
        offset += len(line) + 1
    return out


def _records(data: bytes, starts: bool) -> list[tuple[int, int, int, str]]:
    """``(line_no, end_line_no, byte_offset, text)`` per record: a line starts one when it
    begins with a date (``starts``), else every line is one."""
    records: list[list] = []
    for number, offset, text in _lines(data):
        if records and starts and not text.startswith("2026-"):
            records[-1][1], records[-1][3] = number, records[-1][3] + "\n" + text
        else:
            records.append([number, number, offset, text])
    return [tuple(r) for r in records]


def _stored(store, source: str) -> list[tuple]:
    return store.con.execute(
        "SELECT line_no, end_line_no, byte_offset, text FROM logs WHERE source = ? "
        "ORDER BY line_no", [source]).fetchall()


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_several_files_blank_lines_gz_and_crlf_are_numbered_exactly(store, tmp_path):
    plain = _syslog(range(100))
    crlf = plain.replace(b"\n", b"\r\n")
    files = {
        _write(tmp_path, "a.log", plain): plain,
        _write(tmp_path, "b.log", _syslog(range(100, 137))): _syslog(range(100, 137)),
        _write(tmp_path, "c.log.gz", gzip.compress(plain)): plain,
        _write(tmp_path, "d.log", crlf): crlf,
    }
    report = load_log(store, "logs", list(files))
    assert [f.rows for f in report.files] == [100, 37, 100, 100]
    for path, data in files.items():
        assert _stored(store, path) == _records(data, starts=False), path
    # ids are dense and follow the files, then the lines
    ids = store.con.execute("SELECT id, source, line_no FROM logs ORDER BY id").fetchall()
    assert [i for i, _, _ in ids] == list(range(337))
    assert [(s, n) for _, s, n in ids] == [(p, n) for p in files
                                            for n in range(1, 1 + len(_lines(files[p])))]


def test_every_line_keeps_its_timestamp(store, tmp_path):
    data = _syslog(range(3600))
    path = _write(tmp_path, "ts.log", data)
    load_log(store, "logs", [path])
    year = dt.datetime.fromtimestamp(os.path.getmtime(path)).year
    expected = [
        (i + 1, None if i % 7 == 3 else dt.datetime(year, 3, 3, 10, i // 60 % 60, i % 60))
        for i in range(3600)
    ]
    assert store.con.execute("SELECT line_no, ts FROM logs ORDER BY line_no").fetchall() == expected


def test_mixed_line_endings_are_numbered_exactly(store, tmp_path):
    lines = _syslog(range(60)).split(b"\n")[:-1]
    data = b"".join(line + (b"\r\n" if i % 4 else b"\n") for i, line in enumerate(lines))
    path = _write(tmp_path, "mixed.log", data)
    report = load_log(store, "logs", [path])
    assert report.files[0].note == "CRLF and LF line endings mixed"
    assert _stored(store, path) == _records(data, starts=False)


def test_multiline_records_across_slice_boundaries(store, tmp_path):
    data = b"  a stray continuation line first\n" + _log4j(range(80))
    path = _write(tmp_path, "app.log", data)
    report = load_log(store, "logs", [path])
    expected = _records(data, starts=True)
    assert report.files[0].format == "log4j"
    assert _stored(store, path) == expected
    ids = store.con.execute("SELECT id, ts FROM logs ORDER BY line_no").fetchall()
    assert [i for i, _ in ids] == list(range(len(expected)))
    assert [ts for _, ts in ids[1:]] == [
        dt.datetime(2026, 3, 14, 9, i // 60 % 60, i % 60, (i % 1000) * 1000) for i in range(80)]


def test_incremental_append_continues_the_open_record_and_numbering(store, tmp_path):
    head = _log4j(range(40))
    grown = head + b"\tat app.Late.frame(Late.java:1)\n\n" + _log4j(range(40, 90))
    path = _write(tmp_path, "grow.log", head)
    load_log(store, "logs", [path])
    Path(path).write_bytes(grown)
    report = append_new(store, "logs", [path])
    assert report.updated_ids == [len(_records(head, starts=True)) - 1]
    assert _stored(store, path) == _records(grown, starts=True)
    ids = store.con.execute("SELECT id FROM logs ORDER BY line_no").fetchall()
    assert [i for (i,) in ids] == list(range(len(_records(grown, starts=True))))
