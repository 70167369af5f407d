"""Inputs: every kind, exact provenance (line numbers, byte offsets, sources), bad inputs."""

from __future__ import annotations

import gzip
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import duckdb
import pytest

from rlm_dsl.compile import compile_file
from rlm_dsl.errors import InputError, SpecError
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.ingest.inputs import duckdb_errors, load_input
from rlm_dsl.runtime.logs import LogIngestError
from rlm_dsl.runtime.store.store import Store
from tests.ingest.conftest import input_step

Write = Callable[[str, str | bytes], str]


def provenance(store: Store, table: str = "x") -> list[tuple]:
    return [
        (r["id"], Path(r["source"]).name, r["line_no"], r["byte_offset"], r["text"])
        for r in store.rows(table)
    ]


def test_text_glob_of_several_files(store: Store, write: Write, tmp_path: Path) -> None:
    write("logs/a.log", 'first, "quoted"\n\tsecond\n\nlast no newline')
    write("logs/b.log", "é1\nx\n")
    write("logs/skip.txt", "not matched\n")
    assert load_input(store, input_step("text"), str(tmp_path / "logs" / "*.log")) == "x"
    assert provenance(store) == [
        (0, "a.log", 1, 0, 'first, "quoted"'),
        (1, "a.log", 2, 16, "\tsecond"),
        (2, "a.log", 3, 24, ""),
        (3, "a.log", 4, 25, "last no newline"),
        (4, "b.log", 1, 0, "é1"),
        (5, "b.log", 2, 4, "x"),
    ]
    assert [name for name, _ in store.columns("x")] == [
        "id",
        "source",
        "line_no",
        "byte_offset",
        "text",
    ]


def test_lines_kind_keeps_file_order_and_crlf_offsets(store: Store, write: Write) -> None:
    second = write("2.txt", "c\r\nd\r\n")
    first = write("1.txt", "a\nb\n")
    load_input(store, input_step("lines"), [second, first])
    assert provenance(store) == [
        (0, "2.txt", 1, 0, "c"),
        (1, "2.txt", 2, 3, "d"),
        (2, "1.txt", 1, 0, "a"),
        (3, "1.txt", 2, 2, "b"),
    ]


def test_text_file_mixing_crlf_and_lf_keeps_every_line_without_carriage_returns(
    store: Store, write: Write
) -> None:
    # DuckDB's line reader rejected the whole file ("state machine reached an invalid state")
    path = write("mixed.txt", b"a one\r\nb two\n\r\nc three\r\nd\n")
    load_input(store, input_step("text"), path)
    assert provenance(store) == [
        (0, "mixed.txt", 1, 0, "a one"),
        (1, "mixed.txt", 2, 7, "b two"),
        (2, "mixed.txt", 3, 13, ""),
        (3, "mixed.txt", 4, 15, "c three"),
        (4, "mixed.txt", 5, 24, "d"),
    ]


def test_byte_offsets_point_at_the_line_in_the_file(store: Store, write: Write) -> None:
    lines = [f"{'ü' * (i % 7)} line {i}" for i in range(500)]
    path = write("u.txt", "\n".join(lines) + "\n")
    load_input(store, input_step("text"), path)
    data = Path(path).read_bytes()
    for row in store.rows("x")[::37]:
        start = row["byte_offset"]
        assert data[start : start + len(row["text"].encode())].decode() == row["text"]


def test_stdin_is_spooled_and_read_by_duckdb(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"one\ntwo\n")))
    load_input(store, input_step("stdin"), None)
    assert provenance(store) == [(0, "<stdin>", 1, 0, "one"), (1, "<stdin>", 2, 4, "two")]


def test_bad_stdin_is_named_stdin(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"fine\n" * 20_000 + b"caf\xe9\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("stdin"), None)
    assert str(caught.value) == "<stdin>:20001: not UTF-8 text"


def test_empty_stdin(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    with pytest.raises(InputError, match=r"^<stdin>: empty input \(no bytes to read\)$"):
        load_input(store, input_step("stdin"), None)


def test_jsonl_union_of_files_with_renamed_collisions(store: Store, write: Write) -> None:
    a = write("a.jsonl", '{"id": 7, "q": "why"}\n{"id": 8, "q": "how"}\n')
    b = write("b.jsonl", '{"q": "what", "n": 2}\n')
    load_input(store, input_step("jsonl"), [a, b])
    rows = store.rows("x")
    got = [(r["id"], Path(r["source"]).name, r["line_no"], r["file_id"], r["q"]) for r in rows]
    assert got == [
        (0, "a.jsonl", 1, 7, "why"),
        (1, "a.jsonl", 2, 8, "how"),
        (2, "b.jsonl", 1, None, "what"),
    ]
    assert json.loads(rows[2]["text"]) == {"id": None, "q": "what", "n": 2}


def test_jsonl_text_column_is_kept(store: Store, write: Write) -> None:
    load_input(store, input_step("jsonl"), write("t.jsonl", '{"text": "hello", "label": 1}\n'))
    assert [(r["text"], r["label"]) for r in store.rows("x")] == [("hello", 1)]


def test_csv_with_options(store: Store, write: Write) -> None:
    path = write("d.csv", "name;score\nann;3\nbob;5\n")
    load_input(store, input_step("csv", delimiter=";", header=True), path)
    rows = store.rows("x")
    assert [(r["line_no"], r["name"], r["score"]) for r in rows] == [(1, "ann", 3), (2, "bob", 5)]
    assert json.loads(rows[1]["text"]) == {"name": "bob", "score": 5}


def test_parquet_glob(store: Store, tmp_path: Path) -> None:
    for part in (1, 2):
        target = tmp_path / f"p{part}.parquet"
        store.con.execute(
            f"COPY (SELECT range * {part} AS v FROM range(3)) TO '{target}' (FORMAT parquet)"
        )
    load_input(store, input_step("parquet"), str(tmp_path / "p*.parquet"))
    rows = [(r["id"], Path(r["source"]).name, r["line_no"], r["v"]) for r in store.rows("x")]
    assert rows == [
        (0, "p1.parquet", 1, 0),
        (1, "p1.parquet", 2, 1),
        (2, "p1.parquet", 3, 2),
        (3, "p2.parquet", 1, 0),
        (4, "p2.parquet", 2, 2),
        (5, "p2.parquet", 3, 4),
    ]


def test_files_kind_reads_a_directory(store: Store, write: Write, tmp_path: Path) -> None:
    write("docs/b.md", "bee\n")
    write("docs/a.md", "ay\nsecond\n")
    write("docs/sub/c.md", "see")
    load_input(store, input_step("files"), str(tmp_path / "docs"))
    rows = [(r["id"], Path(r["source"]).name, r["size"], r["text"]) for r in store.rows("x")]
    assert rows == [(0, "a.md", 10, "ay\nsecond\n"), (1, "b.md", 4, "bee\n"), (2, "c.md", 3, "see")]


def test_log_inputs_are_parsed_by_the_log_stage(store: Store, write: Write) -> None:
    path = write(
        "app.log",
        "2026-01-01T00:00:00Z web01 app[7]: started\n2026-01-01T00:00:05Z web01 app[7]: ready\n",
    )
    load_input(store, input_step("log"), path)
    rows = store.rows("x")
    assert [(r["id"], r["line_no"], r["byte_offset"], r["host"]) for r in rows] == [
        (0, 1, 0, "web01"),
        (1, 2, 43, "web01"),
    ]
    assert rows[1]["text"] == "2026-01-01T00:00:05Z web01 app[7]: ready"
    assert str(rows[1]["ts"]) == "2026-01-01 00:00:05"


def test_default_path_comes_from_the_step(store: Store, write: Write) -> None:
    path = write("d.txt", "only\n")
    load_input(store, input_step("text", path=path), None)
    assert store.count("x") == 1


def test_empty_file_among_several_is_skipped(store: Store, write: Write, tmp_path: Path) -> None:
    write("g/a.txt", "")
    write("g/b.txt", "b\n")
    load_input(store, input_step("text"), str(tmp_path / "g" / "*.txt"))
    assert provenance(store) == [(0, "b.txt", 1, 0, "b")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bin.dat",
            b"PK\x03\x04\x00rest",
            "{path}:1: binary file (NUL byte at offset 4), not text",
        ),
        ("latin.txt", b"ok\ncaf\xe9\n", "{path}:2: not UTF-8 text"),
        ("empty.txt", b"", "{path}: empty input (no bytes to read)"),
    ],
)
def test_bad_files(store: Store, write: Write, name: str, content: bytes, message: str) -> None:
    path = write(name, content)
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("text"), path)
    assert str(caught.value) == message.format(path=path)


def test_bad_utf8_beyond_the_peek_names_the_line(store: Store, write: Write) -> None:
    path = write("late.txt", b"fine line\n" * 10_000 + b"caf\xe9\n")
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("text"), path)
    assert str(caught.value) == f"{path}:10001: not UTF-8 text"


def test_missing_paths(store: Store, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.log")
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("text"), missing)
    assert str(caught.value) == f"{missing}: no such file"
    pattern = str(tmp_path / "*.nothing")
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("text"), pattern)
    assert str(caught.value) == f"{pattern}: no files match"
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("text"), str(tmp_path))
    assert str(caught.value) == f"{tmp_path}: is a directory (use a glob such as {tmp_path}/*.log)"
    with pytest.raises(InputError) as caught:
        load_input(store, input_step("text", name="logs"), None)
    assert str(caught.value) == (
        "input 'logs': no path given (pass --input logs=PATH or set path=)"
    )


LOG_LINES = [f"2026-01-01T00:00:0{i}Z web0{i % 2} app[7]: event {i}\n" for i in range(5)]


def test_log_input_reads_gzip(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "app.log.gz"
    path.write_bytes(gzip.compress("".join(LOG_LINES).encode()))
    load_input(store, input_step("log"), str(path))
    rows = [(r["id"], r["source"], r["line_no"], r["host"]) for r in store.rows("x")]
    assert rows == [(i, str(path), i + 1, f"web0{i % 2}") for i in range(5)]


def test_log_input_reads_a_directory(store: Store, write: Write, tmp_path: Path) -> None:
    plain = write("logs/a.log", "".join(LOG_LINES[:2]))
    packed = write("logs/old/b.log.1.gz", gzip.compress("".join(LOG_LINES[2:]).encode()))
    write("logs/.hidden.log", "2026-01-01T00:00:09Z web09 app[7]: not ingested\n")
    load_input(store, input_step("log"), str(tmp_path / "logs"))
    rows = [(r["id"], r["source"], r["line_no"]) for r in store.rows("x")]
    assert rows == [(0, plain, 1), (1, plain, 2), (2, packed, 1), (3, packed, 2), (4, packed, 3)]


def test_log_input_with_dedup_over_gzip_in_a_recipe(tmp_path: Path) -> None:
    lines = [f"2026-01-01T00:00:{i:02d}Z web01 app[7]: job {i} took {i} ms\n" for i in range(40)]
    path = tmp_path / "jobs.log.gz"
    path.write_bytes(gzip.compress("".join(lines).encode()))
    recipe = tmp_path / "r.rlm"
    recipe.write_text(
        'recipe r "Count job templates."\ninput logs: log with dedup=true\n'
        'reduce logs -> census by sql "SELECT count, source FROM {{ input }}"\noutput census\n'
    )
    result = execute(compile_file(recipe), RunOptions(lm="test", inputs={"logs": str(path)}))
    assert [(r["count"], r["source"]) for r in result.outputs["census"]] == [(40, str(path))]


def test_truncated_gzip_log_input_gets_the_log_stage_message(store: Store, tmp_path: Path) -> None:
    data = gzip.compress("".join(LOG_LINES * 2000).encode())
    broken = tmp_path / "cut.log.gz"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(LogIngestError) as caught:
        load_input(store, input_step("log"), str(broken))
    readable = store.count("x")
    assert 0 < readable < 10_000
    assert str(caught.value) == (
        f"log input 'x': 1 of 1 file(s) had errors ({readable} rows from the readable files were "
        f"ingested):\n  {broken}: truncated gzip stream; ingested the {readable} readable record(s)"
    )


@pytest.mark.parametrize("kind", ["text", "lines"])
@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_chosen_encoding_decodes_line_inputs(
    store: Store, write: Write, kind: str, encoding: str
) -> None:
    path = write("old.txt", "ok\ncaf\u00e9\n".encode(encoding))
    load_input(store, input_step(kind), path, encoding=encoding)
    assert [row[4] for row in provenance(store)] == ["ok", "caf\u00e9"]


def test_an_unknown_encoding_is_a_usage_error(store: Store, write: Write) -> None:
    path = write("a.txt", b"ok\n")
    with pytest.raises(SpecError) as caught:
        load_input(store, input_step("text"), path, encoding="klingon")
    assert str(caught.value) == ("unknown encoding 'klingon' (DuckDB's readers take utf-8, "
                                 "utf-16 or latin-1)")


def test_a_failed_csv_sniff_is_not_called_an_encoding_error() -> None:
    """DuckDB's sniffer failure lists ``Encoding: utf-8`` among what it tried."""
    sniff = duckdb.InvalidInputException(
        'Error when sniffing file "a.csv".\nIt was not possible to automatically detect the CSV '
        "parsing dialect\nEncoding: utf-8")
    with pytest.raises(InputError) as caught, duckdb_errors("a.csv"):
        raise sniff
    assert str(caught.value) == 'a.csv: cannot read: Error when sniffing file "a.csv".'


def test_a_spec_path_may_list_several_files_beside_the_spec(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.txt").write_text("two\nthree\n")
    spec = tmp_path / "both.rlm"
    spec.write_text(
        'recipe both "Every line of two files."\n'
        'input docs: text with path=["a.txt", "more/b.txt"]\n'
        'reduce docs -> lines: list[str] by sql "SELECT text FROM {{ input }} ORDER BY id"\n'
        "output lines\n"
    )
    result = execute(compile_file(str(spec)), RunOptions(db=str(tmp_path / "r.duckdb"), lm="test"))
    assert result.outputs["lines"] == ["one", "two", "three"]


def test_a_path_list_must_hold_only_strings(tmp_path: Path) -> None:
    spec = tmp_path / "bad.rlm"
    spec.write_text('recipe bad "x"\ninput docs: text with path=["a.txt", 3]\noutput docs\n')
    with pytest.raises(SpecError, match=r"bad.rlm:2:28.*path must be a string or a list of "):
        compile_file(str(spec))
