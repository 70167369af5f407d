"""Log ingest: load log files into a parsed DuckDB table, in full or only their new lines.

This is the *driver* stage of log ingest, called by ``runtime/ingest/inputs.py`` for ``input x:
log``
and by ``rlm ingest``. It expands paths (files, directories, globs), picks a format per file
(auto-detected or the ``format=`` override), runs one streaming parse per file inside DuckDB
(:mod:`rlm_dsl.runtime.logs.parse`), folds multi-line records, and optionally collapses
repeated templates (:mod:`rlm_dsl.runtime.logs.templates`). A file that cannot be read does not
stop the others: everything readable is ingested, then one :class:`LogIngestError` names the
files that failed (a truncated ``.gz`` keeps its readable prefix).
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import os
import re
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import duckdb

from rlm_dsl.runtime.logs.formats import FORMATS, LogFormat
from rlm_dsl.runtime.logs.numbering import (
    STAGE,
    concurrent_slices,
    numbered_lines_sql,
    stage_sql,
)
from rlm_dsl.runtime.logs.parse import (
    MAX_LINE_BYTES,
    create_log_view,
    detect_format,
    duckdb_encoding,
    fold_continuations,
    format_hits,
    insert_sql,
    marked_copy,
    newline_width,
    read_lines_sql,
    update_record_columns,
)
from rlm_dsl.runtime.logs.templates import dedup_table
from rlm_dsl.runtime.logs.view import create_stored, stored_name

if TYPE_CHECKING:
    from rlm_dsl.runtime.store.store import Store

from rlm_dsl.errors import InputError


@dataclass(slots=True)
class FileResult:
    """What happened to one file: its format, rows added, parse errors, and any problem."""

    source: str
    format: str = ""
    rows: int = 0
    parse_errors: int = 0
    note: str = ""
    error: str = ""


@dataclass(slots=True)
class LoadReport:
    """The outcome of :func:`load_log` / :func:`append_new`."""

    table: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    first_new_id: int = 0  # rows with id >= this were added by this call
    updated_ids: list[int] = field(default_factory=list)  # older records that grew

    @property
    def rows(self) -> int:
        return sum(f.rows for f in self.files)

    @property
    def parse_errors(self) -> int:
        return sum(f.parse_errors for f in self.files)

    @property
    def failed(self) -> list[FileResult]:
        return [f for f in self.files if f.error]


@dataclass(frozen=True, slots=True)
class _Tail:
    """Where an incremental read of one source resumes: after its last record ``parent``."""

    parent: int
    next_line: int
    next_byte: int
    format: str


class LogIngestError(InputError):
    """Some files could not be (fully) read; the rest were ingested. Carries the report."""

    def __init__(self, report: LoadReport) -> None:
        failed = report.failed
        lines = [f"  {f.source}: {f.error}" for f in failed]
        super().__init__(
            f"log input '{report.table}': {len(failed)} of {len(report.files)} file(s) had "
            f"errors ({report.rows} rows from the readable files were ingested):\n"
            + "\n".join(lines)
        )
        self.report = report


def expand_paths(paths: list[str]) -> list[str]:
    """Files named by ``paths`` (files, directories walked in name order, globs), deduplicated."""
    found: list[str] = []
    for path in paths:
        if glob.has_magic(path):
            matches = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
            if not matches:
                raise InputError(f"log input: no files match '{path}'")
            found.extend(matches)
        elif os.path.isdir(path):
            matches = _walk(path)
            if not matches:
                raise InputError(f"log input: directory '{path}' contains no files")
            found.extend(matches)
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise InputError(f"log input: no such file or directory: '{path}'")
    return list(dict.fromkeys(found))


def _walk(root: str) -> list[str]:
    out = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(here, f) for f in sorted(files) if not f.startswith("."))
    return out


def resolve_format(name: str | None) -> LogFormat | None:
    """The :class:`LogFormat` called ``name`` (None → auto-detect); unknown → InputError."""
    if name is None or name == "auto":
        return None
    if name not in FORMATS:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"unknown log format '{name}'; known formats: {known} (or auto)")
    return FORMATS[name]


def load_log(
    store: Store,
    table: str,
    paths: list[str],
    format: str | None = None,
    dedup: bool = False,
    incremental: bool = False,
    encoding: str | None = None,
) -> LoadReport:
    """Parse the log files ``paths`` into ``table`` of ``store`` (created if missing).

    Each file is read and parsed by DuckDB; ``format`` forces one format for all files (else each
    file is detected); ``dedup`` collapses repeated templates into one row with a ``count``;
    ``incremental`` reads only the lines each source has beyond what ``table`` holds;
    ``encoding`` (utf-8, utf-16, latin-1) decodes every file with it, where by default a file
    that is not UTF-8 is read as Latin-1 with a note naming its first bad line. Raises
    :class:`LogIngestError` (an ``InputError``) after ingesting the readable files when some fail.
    """
    started = time.perf_counter()
    forced = resolve_format(format)
    chosen = duckdb_encoding(encoding) if encoding is not None else None
    files = expand_paths(paths)
    with store.write() as con:  # the store's write lock: no other writer interleaves
        _check_table(con, table, dedup, incremental)
        create_stored(con, table, files, store.text_type)
        report = LoadReport(table=table, first_new_id=_next_id(con, table))
        for path in files:
            result = FileResult(source=path)
            report.files.append(result)
            _load_file(con, table, path, forced, incremental, result, report, chosen)
        create_log_view(con, table)
        if dedup:
            dedup_table(con, table)
    report.seconds = time.perf_counter() - started
    if report.failed:
        raise LogIngestError(report)
    return report


def append_new(store: Store, table: str, paths: list[str], format: str | None = None,
               encoding: str | None = None) -> LoadReport:
    """Ingest only the lines of ``paths`` beyond what ``table`` already holds per source.

    New records get ids from ``report.first_new_id`` on; a multi-line record that grew (a stack
    trace still being written at the last ingest) keeps its id and is listed in
    ``report.updated_ids``. Files not in the table yet are ingested in full.
    """
    return load_log(store, table, paths, format=format, incremental=True, encoding=encoding)


def _check_table(con: Any, table: str, dedup: bool, incremental: bool) -> None:
    found = con.execute(
        "SELECT table_type, list(column_name) FROM information_schema.tables JOIN "
        "information_schema.columns USING (table_catalog, table_schema, table_name) "
        "WHERE table_name = ? AND table_schema = 'main' GROUP BY table_type", [table]
    ).fetchall()
    kind, cols = found[0] if found else ("", [])
    if "template" in cols:
        raise InputError(f"table '{table}' holds deduplicated logs; ingest into a new table")
    if cols and ("parse_error" not in cols or kind != "VIEW"):
        raise InputError(f"table '{table}' exists and is not a log table")
    if dedup and incremental:
        raise InputError("incremental log ingest cannot be combined with dedup")


def _next_id(con: Any, table: str) -> int:
    return con.execute(
        f'SELECT coalesce(max(id) + 1, 0) FROM "{stored_name(table)}"').fetchone()[0]


def _load_file(
    con: Any,
    table: str,
    path: str,
    forced: LogFormat | None,
    incremental: bool,
    result: FileResult,
    report: LoadReport,
    encoding: str | None,
) -> None:
    tail = _tail(con, table, path) if incremental else None
    if tail is not None and not path.endswith(".gz") and os.path.getsize(path) < tail.next_byte:
        result.error = (
            f"is shorter ({os.path.getsize(path)} bytes) than what '{table}' already holds "
            f"({tail.next_byte} bytes): rotated or truncated? Not ingested — use a new table"
        )
        return
    try:
        _parse_file(con, table, path, path, forced, tail, result, report, encoding or "utf-8")
    except duckdb.Error as exc:
        _recover(con, table, path, forced, tail, result, report, str(exc), encoding)


def _recover(
    con: Any,
    table: str,
    path: str,
    forced: LogFormat | None,
    tail: _Tail | None,
    result: FileResult,
    report: LoadReport,
    message: str,
    encoding: str | None,
) -> None:
    """Retry what is recoverable: non-UTF-8 text as Latin-1 (unless ``encoding`` was chosen), a
    truncated gzip's prefix, bare carriage returns (progress bars) that DuckDB's line reader
    rejects."""
    _rollback(con)

    def reread(copy: str, crlf_marked: bool = False) -> None:
        """Parse a temporary copy of ``path`` (its records keep ``path`` as source); remove it."""
        try:
            _parse_file(con, table, copy, path, forced, tail, result, report,
                        encoding or "utf-8", crlf_marked=crlf_marked)
        finally:
            os.unlink(copy)

    bad_line = re.search(r"Line: (\d+)", message)
    line = f"line {bad_line.group(1)}" if bad_line else "somewhere"
    try:
        if "Invalid unicode" in message or "is not utf-16 encoded" in message:
            if encoding is not None:
                result.error = f"{line}: not {encoding} text (choose its encoding with --encoding)"
                return
            result.note = (f"not UTF-8 ({line}); read as Latin-1 (pass --encoding latin-1 to say "
                           "so, or the file's encoding)")
            _parse_file(con, table, path, path, forced, tail, result, report, "latin-1")
        elif "GZIP" in message.upper() and path.endswith(".gz"):
            reread(_gzip_prefix(path))
            result.error = f"truncated gzip stream; ingested the {result.rows} readable record(s)"
        elif "state machine reached an invalid state" in message and not path.endswith(".gz"):
            # marked_copy: bare CRs read as line breaks, and a file mixing CRLF and LF endings
            # keeps every line, exact offsets and no stray CR
            copy, lone, crlf = marked_copy(path)
            result.note = "; ".join(
                (["lone carriage returns (CR) read as line breaks"] if lone else [])
                + (["CRLF and LF line endings mixed"] if crlf else []))
            reread(copy, crlf_marked=True)
        else:
            result.error = f"cannot read: {_first_line(message)}"
    except duckdb.Error as exc:
        _rollback(con)
        result.error = f"cannot read: {_first_line(str(exc))}"


def _first_line(message: str) -> str:
    """The useful line of a DuckDB error (the reason, not the CSV-dialect dump)."""
    long_line = re.search(r"CSV Error on Line: (\d+).*?Actual Size:\s*(\d+)", message, re.S)
    if long_line:
        line, size = long_line.groups()
        return f"line {line} is longer than the {MAX_LINE_BYTES >> 20} MiB limit ({size} bytes)"
    lines = message.strip().splitlines()
    return lines[0] if lines else message


def _rollback(con: Any) -> None:
    with contextlib.suppress(duckdb.Error):  # no transaction was open
        con.rollback()


def _gzip_prefix(path: str) -> str:
    """Decompress the readable prefix of a damaged ``.gz`` into a temporary file; its path."""
    fd, out = tempfile.mkstemp(suffix=".log", prefix="rlm-gz-")
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)
    with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
        while block := src.read(1 << 20):
            try:
                dst.write(inflater.decompress(block))
            except zlib.error:
                break
    return out


def _tail(con: Any, table: str, source: str) -> _Tail | None:
    """Where ``source``'s lines beyond its last record in ``table`` start, or None."""
    row = con.execute(
        f"SELECT id, end_line_no, byte_offset + strlen(text), format, end_line_no - line_no + 1 "
        f'FROM "{stored_name(table)}" WHERE source = ? ORDER BY line_no DESC LIMIT 1',
        [source],
    ).fetchone()
    if row is None:
        return None
    newline = newline_width(source)  # text joins its lines with \n; the file may use \r\n
    return _Tail(row[0], row[1] + 1, row[2] + 1 + (newline - 1) * row[4], row[3])


def _parse_file(
    con: Any,
    table: str,
    read_path: str,
    source: str,
    forced: LogFormat | None,
    tail: _Tail | None,
    result: FileResult,
    report: LoadReport,
    encoding: str,
    crlf_marked: bool = False,
) -> None:
    fmt = _file_format(con, read_path, source, forced, tail, result, encoding, crlf_marked)
    if fmt is None:
        return
    first_line, first_byte = (1, 0) if tail is None else (tail.next_line, tail.next_byte)
    parent = None if tail is None else tail.parent
    base = _next_id(con, table)
    nl = "nl" if crlf_marked else newline_width(read_path)
    # a read buffer as small as a line may be: the stage takes about a third less time than
    # with DuckDB's default (docs/benchmarks.md, Log ingest); a read into a stored table is
    # slower with it, so only the stage uses it
    read = read_lines_sql(read_path, skip=first_line - 1, encoding=encoding,
                          crlf_marked=crlf_marked, buffer=MAX_LINE_BYTES)
    ids = f"id >= {base}" if parent is None else f"id >= {base} OR id = {parent}"
    con.begin()
    con.execute(stage_sql(fmt, read, newline=nl))
    lines = numbered_lines_sql(con, fmt, first_line=first_line, first_byte=first_byte,
                               parent_id=parent)
    if lines is not None:
        insert = insert_sql(fmt, table, source, lines, base_id=base,
                            file_time=_file_time_sql(source), first_line=first_line,
                            parent_id=parent)
        with concurrent_slices(con):
            con.execute(insert)
    con.execute(f"DROP TABLE {STAGE}")
    if fmt.multiline:
        fold_continuations(con, table, ids)
    update_record_columns(con, fmt, table, ids)
    rows, errors, grew = con.execute(
        f"SELECT count(*) FILTER (id >= {base}), count(parse_error) FILTER (id >= {base}), "
        f"count(*) FILTER (id < {base} AND end_line_no >= {first_line}) "
        f'FROM "{stored_name(table)}" '
        f"WHERE {ids}"
    ).fetchone()
    con.commit()
    result.format, result.rows, result.parse_errors = fmt.name, rows, errors
    if grew:
        report.updated_ids.append(parent)


def _file_time_sql(path: str) -> str:
    """The file's mtime as a SQL TIMESTAMP (local time, like the logs it dates)."""
    try:
        stamp = datetime.datetime.fromtimestamp(os.path.getmtime(path))
    except OSError:
        stamp = datetime.datetime.now()
    return f"TIMESTAMP '{stamp.isoformat(sep=' ')}'"


def _file_format(
    con: Any,
    read_path: str,
    source: str,
    forced: LogFormat | None,
    tail: _Tail | None,
    result: FileResult,
    encoding: str,
    crlf_marked: bool,
) -> LogFormat | None:
    """The format to parse ``source`` with, or None (and ``result.error``) when it must not be."""
    if tail is not None and forced is None:
        return FORMATS.get(tail.format) or detect_format(con, read_path, encoding, crlf_marked)[0]
    if forced is None:
        return detect_format(con, read_path, encoding, crlf_marked)[0]
    if format_hits(con, read_path, forced, encoding, crlf_marked) > 0:
        return forced
    detected, _, total = detect_format(con, read_path, encoding, crlf_marked)
    if total == 0:
        return forced
    result.error = (
        f"does not look like {forced.name} (0 of {total} sampled lines match; it looks like "
        f"{detected.name}); not ingested — leave the format unset to detect it per file"
    )
    return None
