"""Inputs that used to hang a run or pass silently: pipes, devices, bad JSONL lines, ragged CSV.

Each is one clear input error (exit 2) naming the file, and the line where there is one.
"""

from __future__ import annotations

import os
import time

import pytest

SPEC = '''
    recipe peek "Read one input."
    input data: {kind}
    output data
'''


def _run(cli, spec, kind: str, path) -> tuple[int, str]:
    recipe = spec(SPEC.format(kind=kind))
    started = time.monotonic()
    code, _, err = cli("run", recipe, "--lm", "test", "-q", "-i", f"data={path}")
    assert time.monotonic() - started < 30
    return code, err.strip()


@pytest.mark.parametrize("kind", ["lines", "text", "jsonl", "csv", "log", "files"])
def test_a_named_pipe_without_a_writer_is_refused_not_waited_on(cli, spec, tmp_path, kind):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert _run(cli, spec, kind, fifo) == (
        2, f"{fifo}: a named pipe, not a regular file (pipe data in with an input of kind stdin)")


def test_a_character_device_is_refused(cli, spec):
    code, err = _run(cli, spec, "lines", "/dev/zero")
    assert (code, err) == (2, "/dev/zero: a character device, not a regular file (pipe data in "
                              "with an input of kind stdin)")


def test_malformed_jsonl_names_the_line_itself(cli, spec, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"a": 1}\n{"a": 2}\n{"a": 3,\n{"a": 4}\n')
    code, err = _run(cli, spec, "jsonl", data)
    assert code == 2
    assert err.startswith(f"{data}:3: not one JSON value per line: Expecting property name")


def test_a_ragged_csv_is_an_input_error_with_the_line(cli, spec, tmp_path):
    data = tmp_path / "rows.csv"
    data.write_text("a,b,c\n1,2,3\n4,5\n6,7,8\n")
    assert _run(cli, spec, "csv", data) == (
        2, f"{data}:3: 2 field(s) where line 1 has 3 (a ragged CSV: fix the row, or quote a "
           "',' inside a field)")


@pytest.mark.parametrize("good_rows", [10_000, 30_000])  # in DuckDB's sniff sample, beyond it
@pytest.mark.parametrize(("bad", "width"), [("1,2,3", 3), ("7", 1)])
def test_a_ragged_row_past_the_first_64_kib_is_named_too(cli, spec, tmp_path, good_rows, bad,
                                                         width):
    data = tmp_path / "rows.csv"
    rows = ["a,b", *(f"{i},xxxxxxxxxxxxxxxx" for i in range(good_rows)), bad, "5,y"]
    data.write_text("\n".join(rows) + "\n")
    assert data.stat().st_size > 1 << 16
    assert _run(cli, spec, "csv", data) == (
        2, f"{data}:{good_rows + 2}: {width} field(s) where line 1 has 2 (a ragged CSV: fix the "
           "row, or quote a ',' inside a field)")


def test_quoted_delimiters_and_newlines_are_not_ragged(run_spec, spec, tmp_path):
    data = tmp_path / "rows.csv"
    data.write_text('a,b\n1,"x, y"\n2,"two\nlines"\n')
    result = run_spec(spec(SPEC.format(kind="csv")), inputs={"data": str(data)})
    assert [row["b"] for row in result.outputs["data"]] == ["x, y", "two\nlines"]


def test_a_log_that_is_not_utf8_is_read_with_a_warning(cli, spec, tmp_path):
    log = tmp_path / "app.log"
    log.write_bytes("2024-01-01 10:00:00 INFO caf\u00e9 opened\n".encode("latin-1"))
    recipe = spec(SPEC.format(kind="log"))
    code, _, err = cli("run", recipe, "--lm", "test", "-q", "-i", f"data={log}")
    assert code == 0
    assert f"warning: {log}: not UTF-8 (line 1); read as Latin-1 (pass --encoding latin-1" in err


@pytest.mark.parametrize("kind", ["log", "text"])
def test_encoding_chooses_how_an_input_is_decoded(cli, spec, tmp_path, kind):
    path = tmp_path / "app.log"
    path.write_bytes("2024-01-01 10:00:00 INFO caf\u00e9 opened\n".encode("latin-1"))
    recipe = spec(SPEC.format(kind=kind))
    code, out, err = cli("run", recipe, "--lm", "test", "-q", "-i", f"data={path}",
                         "--encoding", "latin-1")
    assert code == 0
    assert "warning" not in err
    assert "caf\u00e9 opened" in out
