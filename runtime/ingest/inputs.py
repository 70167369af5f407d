"""Input stage: read one ``input`` step's files into its store table with DuckDB's own readers.

:func:`load_input` resolves the paths (globs via DuckDB's ``glob()``), checks each file (missing,
directory, empty, binary, not UTF-8 → :class:`InputError` naming the file and line) and streams it
into ``step.table`` without ever holding a whole input as one Python string. Line inputs (``text``,
``lines``, ``stdin``) are read by ``read_csv`` as a single VARCHAR column (a delimiter that cannot
occur, no quoting) ``WITH ORDINALITY`` one file at a time, so ``line_no`` is the ordinality and
``byte_offset`` a streaming running sum of ``strlen(text) + newline width`` — all in SQL (the
``text`` column is ZSTD-compressed: :attr:`Store.text_type`). ``jsonl`` / ``csv`` / ``parquet`` use
``read_json`` / ``read_csv`` / ``read_parquet``; ``files`` uses ``read_text``; ``log`` delegates to
:func:`rlm_dsl.runtime.logs.load_log` (directories and ``.gz`` files allowed; the log stage checks
their content); ``stdin`` is spooled to a temporary file in 1 MiB blocks and then read like a file.
Table columns follow the store contract (``docs/architecture.md``); a file column that collides
with ``id``, ``source`` or ``line_no`` is renamed ``file_<name>``.

API::

    load_input(store, step, paths) -> str   # paths: list | str | None (None: step's path=)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from rlm_dsl.compiler.plan import Step
from rlm_dsl.errors import InputError
from rlm_dsl.runtime.logs import load_log
from rlm_dsl.runtime.logs.parse import (
    duckdb_encoding,
    marked_copy,
    newline_width,
    read_lines_sql,
)
from rlm_dsl.runtime.store.store import Store, quote_ident, quote_literal

PEEK_BYTES = 1 << 16
MAX_LINE_BYTES = 1 << 24  # 16 MiB: one longer line is an input error, not a crash
RESERVED = ("id", "source", "line_no")
# No ``buffer_size``: DuckDB sizes its buffers for ``max_line_size`` itself, and a 32 MiB buffer
# made the insert leave 1 GB of rows for the next checkpoint (2 s more on a 1 GB input).
_LINE_READER = (
    f"read_csv(?, columns={{'text': 'VARCHAR'}}, delim=chr(0), quote='', escape='', header=false, "
    f"auto_detect=false, max_line_size={MAX_LINE_BYTES}, encoding=?)"
)


def load_input(store: Store, step: Step, paths: list[str] | str | None,
               warnings: list[str] | None = None, encoding: str | None = None) -> str:
    """Load ``step``'s input from ``paths`` into ``step.table``; returns the table name.

    What was read but not as declared (a log file that is not UTF-8, read as Latin-1) is added
    to ``warnings``, which the run prints. ``encoding`` (``--encoding``: utf-8, utf-16,
    latin-1) decodes ``text``, ``lines``, ``stdin`` and ``log`` inputs; other kinds ignore it.
    """
    kind = step.strategy or "text"
    chosen = duckdb_encoding(encoding) if encoding is not None else "utf-8"
    if kind == "stdin":
        with _spooled_stdin(chosen) as spooled:
            _load_lines(store, step.table, [spooled], chosen, display={spooled: "<stdin>"})
        return step.table
    patterns = _patterns(step, paths)
    utf8 = kind not in ("parquet", "log") and (kind not in LINE_KINDS or chosen == "utf-8")
    files = resolve_files(store, patterns, directories=kind in ("files", "log"), text=utf8)
    loader = _LOADERS.get(kind)
    if kind == "log":
        store.drop(step.table)  # a fresh table: load_log appends to an existing one
        report = load_log(
            store,
            step.table,
            files,
            format=step.options.get("format"),
            dedup=bool(step.options.get("dedup", False)),
            encoding=encoding,
        )
        if warnings is not None:
            warnings.extend(f"warning: {f.source}: {f.note}" for f in report.files if f.note)
    elif kind in LINE_KINDS:
        _load_lines(store, step.table, files, chosen)
    elif loader is None:
        raise InputError(f"input '{step.name}': unknown input kind '{kind}'")
    else:
        loader(store, step, files)
    return step.table


def _patterns(step: Step, paths: list[str] | str | None) -> list[str]:
    if paths is None:
        paths = step.options.get("path")
    if isinstance(paths, str):
        paths = [paths]
    if not paths:
        raise InputError(
            f"input '{step.name}': no path given (pass --input {step.name}=PATH or set path=)"
        )
    return [os.path.expanduser(os.fspath(p)) for p in paths]


def resolve_files(
    store: Store, patterns: list[str], directories: bool = False, text: bool = True
) -> list[str]:
    """Expand globs (DuckDB's ``glob()``), check every file, drop empty ones among several.

    ``directories`` lets a directory stand for every file below it, hidden ones (``.name``)
    left out (the ``files`` and ``log`` kinds); ``text`` checks that each file looks like UTF-8
    text (not for parquet, nor for logs: the log stage reads ``.gz`` and reports bad files itself).
    """
    files: list[str] = []
    for pattern in patterns:
        files.extend(_expand(store, pattern, directories))
    files = list(dict.fromkeys(files))
    for path in files:
        _check_regular(path)
        if text:
            _check_file(path)
        elif not os.access(path, os.R_OK):
            raise InputError(f"{path}: cannot read (permission denied)")
    non_empty = [path for path in files if os.path.getsize(path) > 0]
    if not non_empty:
        named = files[0] if len(files) == 1 else ", ".join(patterns)
        raise InputError(f"{named}: empty input (no bytes to read)")
    return non_empty


def _expand(store: Store, pattern: str, directories: bool) -> list[str]:
    directory = None
    if os.path.isdir(pattern):
        if not directories:
            raise InputError(f"{pattern}: is a directory (use a glob such as {pattern}/*.log)")
        directory, pattern = pattern, os.path.join(pattern, "**")
    elif not glob_like(pattern):
        if not os.path.exists(pattern):
            raise InputError(f"{pattern}: no such file")
        _check_regular(pattern)
        return [pattern]
    found = [
        row[0]
        for row in store.con.execute("SELECT file FROM glob(?) ORDER BY file", [pattern]).fetchall()
    ]
    found = [path for path in found if os.path.isfile(path)]
    if directory:
        found = [path for path in found if not _hidden(os.path.relpath(path, directory))]
    if not found:
        raise InputError(f"{pattern}: no files match")
    return found


def _hidden(relative: str) -> bool:
    return any(part.startswith(".") for part in relative.split(os.sep))


def glob_like(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def _check_regular(path: str) -> None:
    """Refuse named pipes, devices and sockets: reading one could wait (or run) forever."""
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else None)
    if kind is not None:
        raise InputError(f"{path}: {kind}, not a regular file (pipe data in with an input of "
                         "kind stdin)")


def _check_file(path: str) -> None:
    """Refuse unreadable, binary and not-UTF-8 files, looking only at the first 64 KiB."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory")
    try:
        with open(path, "rb") as handle:
            head = handle.read(PEEK_BYTES)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    nul = head.find(b"\0")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise InputError(f"{path}:{line}: binary file (NUL byte at offset {nul}), not text")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not merely a character cut by the peek
            line = head.count(b"\n", 0, error.start) + 1
            raise InputError(f"{path}:{line}: not UTF-8 text") from None


def _load_lines(
    store: Store, table: str, files: list[str], encoding: str,
    display: dict[str, str] | None = None,
) -> None:
    """One ``read_csv`` per file, appended in order: ids stay dense across files. A file that
    DuckDB's reader rejects for its mixed line endings (CRLF and LF, bare CRs) is read again
    from its :func:`marked_copy`, with the same line numbers and offsets."""
    display = display or {}
    name = quote_ident(table)
    copies: dict[str, str] = {}
    try:
        while True:
            try:
                with store.transaction() as con:
                    con.execute(
                        f"CREATE OR REPLACE TABLE {name} (id BIGINT, source VARCHAR, line_no "
                        f"BIGINT, byte_offset BIGINT, text {store.text_type})"
                    )
                    for path in files:
                        _append_lines(con, name, path, display.get(path, path), encoding,
                                      copies.get(path))
                return
            except _MixedEndings as mixed:  # the transaction is rolled back: start again
                if mixed.path in copies or mixed.path.endswith(".gz"):
                    raise mixed.error from None
                copies[mixed.path] = marked_copy(mixed.path)[0]
    finally:
        for copy in copies.values():
            os.unlink(copy)


class _MixedEndings(Exception):
    """DuckDB's reader rejected ``path``'s line endings (raised as ``error`` if not retried)."""

    def __init__(self, path: str, error: InputError) -> None:
        super().__init__(str(error))
        self.path, self.error = path, error


def _append_lines(
    con: duckdb.DuckDBPyConnection, name: str, path: str, source: str, encoding: str,
    marked: str | None = None,
) -> None:
    """Append ``path``'s lines; ``marked`` is its :func:`marked_copy`, to read instead."""
    base = int(con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0])
    if marked is None:
        width = newline_width(path)
        numbered = f"SELECT ordinality AS line_no, text, {width} AS nl FROM {_LINE_READER} " \
                   "WITH ORDINALITY"
        params = [base, source, path, encoding]
    else:  # each line's own newline width
        read = read_lines_sql(marked, encoding=encoding, crlf_marked=True)
        numbered = f"SELECT row_number() OVER () AS line_no, line AS text, nl FROM {read}"
        params = [base, source]
    sql = f"""
        INSERT INTO {name}
        SELECT line_no - 1 + ? AS id, ? AS source, line_no,
               sum(strlen(coalesce(text, '')) + nl) OVER (ROWS UNBOUNDED PRECEDING)
                 - strlen(coalesce(text, '')) - nl AS byte_offset,
               coalesce(text, '') AS text
        FROM ({numbered})"""
    try:
        with duckdb_errors(source, one_file=True):
            con.execute(sql, params)
    except InputError as error:
        if "state machine reached an invalid state" not in str(error):
            raise
        raise _MixedEndings(path, error) from None


@contextmanager
def duckdb_errors(source: str, one_file: bool = False) -> Iterator[None]:
    """Turn a DuckDB reader error into an :class:`InputError` naming the file (and line).

    With several files the file is the one DuckDB's message names; with ``one_file`` it is
    ``source`` (so a spooled stdin stays ``<stdin>``).
    """
    try:
        yield
    except duckdb.Error as error:
        text = str(error)
        named = None if one_file else re.search(r"file(?: = |\s+')([^'\n]+)", text)
        where = named.group(1) if named else source
        line = re.search(r"Line: (\d+)", text)
        where = f"{where}:{line.group(1)}" if line else where
        low = text.lower()
        if ("unicode" in low or "utf-8" in low) and "error when sniffing" not in low:
            raise InputError(f"{where}: not UTF-8 text") from None
        if "max_line_size" in text or "maximum line size" in text.lower():
            raise InputError(f"{where}: line longer than {MAX_LINE_BYTES} bytes") from None
        detail = text.strip().splitlines()[0]
        raise InputError(f"{where}: cannot read: {detail}") from None


@contextmanager
def _spooled_stdin(encoding: str) -> Iterator[str]:
    """Copy standard input to a temporary file block by block; yields its path."""
    folder = tempfile.mkdtemp(prefix="rlm-stdin-")
    path = os.path.join(folder, "stdin.txt")
    try:
        with open(path, "wb") as out:
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        if os.path.getsize(path) == 0:
            raise InputError("<stdin>: empty input (no bytes to read)")
        if encoding == "utf-8":
            _check_file_as(path, "<stdin>")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _check_file_as(path: str, shown: str) -> None:
    try:
        _check_file(path)
    except InputError as error:
        raise InputError(str(error).replace(path, shown, 1)) from None


def _load_records(store: Store, step: Step, files: list[str]) -> None:
    """``jsonl`` / ``csv`` / ``parquet``: the file's own columns plus id, source, line_no."""
    kind = step.strategy or "jsonl"
    reader = _record_reader(kind, step.options)
    shown = files[0] if len(files) == 1 else ", ".join(files)
    if kind == "csv":
        for path in files:
            _check_csv_shape(path, step.options.get("delimiter"))
    with _record_errors(kind, files, step.options), duckdb_errors(shown):
        described = store.con.execute(f"DESCRIBE SELECT * FROM {reader}", [files]).fetchall()
    own = [row[0] for row in described if row[0] not in ("filename", "file_row_number")]
    select = ", ".join(_own_column(col) for col in own)
    if "text" not in own:
        fields = ", ".join(f"{quote_ident(c)} := {quote_ident(c)}" for c in own)
        select += f", CAST(to_json(struct_pack({fields})) AS VARCHAR) AS text"
    row = "file_row_number" if step.strategy == "parquet" else "ordinality"
    ordinality = "" if step.strategy == "parquet" else " WITH ORDINALITY"
    sql = f"""
        SELECT row_number() OVER (ORDER BY list_position(?, filename), {row}) - 1 AS id,
               filename AS source,
               {row} - min({row}) OVER (PARTITION BY filename) + 1 AS line_no, {select}
        FROM {reader}{ordinality} ORDER BY id"""
    with _record_errors(kind, files, step.options), duckdb_errors(shown), store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS {sql}", [files, files])


@contextmanager
def _record_errors(kind: str, files: list[str], options: dict[str, object]) -> Iterator[None]:
    """A reader error becomes the first bad line: for ``jsonl`` the first that is not one JSON
    value, for ``csv`` the first ragged row anywhere in the file.

    DuckDB names the line where its parser gave up, which is the next line when an object is
    left open, and a ragged row inside its sniffer's sample fails the sniff with no line at all;
    Python's own parsers, run over whole files only after a failure, name the line itself.
    """
    try:
        yield
    except InputError:
        for path in files:
            if kind == "jsonl":
                _first_bad_json_line(path)
            elif kind == "csv":
                _check_csv_shape(path, options.get("delimiter"), whole=True)
        raise


def _first_bad_json_line(path: str) -> None:
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except ValueError as error:
                raise InputError(f"{path}:{number}: not one JSON value per line: {error.msg} "
                                 f"(column {error.colno})") from None


def _check_csv_shape(path: str, delimiter: object, whole: bool = False) -> None:
    """A ragged CSV (rows with more or fewer fields than the first) is an input error.

    DuckDB's sniffer would otherwise guess a one-column or headerless table without a word, so
    the first 64 KiB are looked at before every read; the ``whole`` file, streamed row by row,
    only once DuckDB's reader has failed (a ragged row further on fails it).
    """
    with open(path, encoding="utf-8", errors="replace", newline="") as handle:
        head = handle.read(PEEK_BYTES)
        rows = head.splitlines(keepends=True)
        if len(head) == PEEK_BYTES and rows:
            rows.pop()  # cut by the peek
        if isinstance(delimiter, str):
            dialect_delimiter = delimiter
        else:
            try:
                dialect_delimiter = csv.Sniffer().sniff("".join(rows[:50]), ",;\t|").delimiter
            except csv.Error:
                dialect_delimiter = ","
        if whole:
            handle.seek(0)
        reader = csv.reader(handle if whole else rows, delimiter=dialect_delimiter)
        first: tuple[int, int] | None = None
        with contextlib.suppress(csv.Error):  # e.g. a huge field: DuckDB's own message stands
            for fields in reader:
                if not fields:
                    continue
                if first is None:
                    first = (reader.line_num, len(fields))
                elif len(fields) != first[1]:
                    raise InputError(
                        f"{path}:{reader.line_num}: {len(fields)} field(s) where line {first[0]} "
                        f"has {first[1]} (a ragged CSV: fix the row, or quote a "
                        f"{dialect_delimiter!r} inside a field)")


def _own_column(name: str) -> str:
    renamed = f"file_{name}" if name in RESERVED else name
    return f"{quote_ident(name)} AS {quote_ident(renamed)}"


def _record_reader(kind: str, options: dict[str, object]) -> str:
    if kind == "parquet":
        return "read_parquet(?, filename=true, file_row_number=true, union_by_name=true)"
    if kind == "jsonl":
        return "read_json(?, format='newline_delimited', filename=true, union_by_name=true)"
    extra = ""
    if options.get("delimiter") is not None:
        extra += f", delim={quote_literal(str(options['delimiter']))}"
    if options.get("header") is not None:
        extra += f", header={'true' if options['header'] else 'false'}"
    # strict: a row with more or fewer fields fails the read (then named by _record_errors)
    return f"read_csv(?, filename=true, union_by_name=true, strict_mode=true{extra})"


def _load_files(store: Store, step: Step, files: list[str]) -> None:
    """``files``: one row per file (``id, source, size, text``) in path order."""
    sql = """
        SELECT row_number() OVER (ORDER BY list_position(?, filename)) - 1 AS id,
               filename AS source, size, content AS text
        FROM read_text(?) ORDER BY id"""
    shown = files[0] if len(files) == 1 else ", ".join(files)
    with duckdb_errors(shown), store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS {sql}", [files, files])


LINE_KINDS = ("text", "lines")
_LOADERS = {
    "jsonl": _load_records,
    "csv": _load_records,
    "parquet": _load_records,
    "files": _load_files,
}
