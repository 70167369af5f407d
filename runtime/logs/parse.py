"""Log parsing in SQL: read a file's lines, detect its format, and insert parsed records.

This is the *parse* stage of log ingest, and all of it runs inside DuckDB (DESIGN §3): lines are
read by ``read_csv`` as one VARCHAR column; numbered, byte-offset and grouped into records in
slices that run side by side (:mod:`~rlm_dsl.runtime.logs.numbering`); and parsed by the file's
format (one ``regexp_extract``: a STRUCT of groups) far enough for the stored columns — ``ts``,
``format``, ``parse_error`` — of the log table's stored half (:mod:`~rlm_dsl.runtime.logs.view`
derives the rest on demand). For multi-line formats a record is a running sum of "this line
starts a record" flags; continuation lines are inserted with ``end_line_no`` NULL and folded
into their parent record by one ``string_agg`` update in the same transaction, so the hot path
stays a streaming insert and only multi-line records pay for aggregation.
"""

from __future__ import annotations

import gzip
import os
import tempfile
from typing import Any

import duckdb

from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.logs.formats import (
    FORMATS,
    GENERIC,
    RAW,
    LogFormat,
    generic_columns,
    generic_ok_sql,
)
from rlm_dsl.runtime.logs.sql import sql_str
from rlm_dsl.runtime.logs.timestamps import find_ts_sql
from rlm_dsl.runtime.logs.view import EMPTY_LINE, NO_FORMAT, mismatch, stored_name, view_sql

# A 4-byte separator that does not occur in text logs, so each line is one column.
_SEP = "\x01\x02\x03\x04"
SAMPLE_LINES = 200
SAMPLE_BUFFER = 1 << 20  # bytes read at a time for the sample (and its longest line)
MAX_LINE_BYTES = 1 << 24  # one longer line fails the file with a clear message



def newline_width(path: str) -> int:
    """2 when the file's first line ends with CRLF (DuckDB strips the CR), else 1."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(1 << 16)
    except (OSError, EOFError):
        return 1
    end = head.find(b"\n")
    return 2 if end > 0 and head[end - 1 : end] == b"\r" else 1


ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "utf-16": "utf-16", "utf16": "utf-16",
             "latin-1": "latin-1", "latin1": "latin-1", "iso-8859-1": "latin-1"}


def duckdb_encoding(name: str) -> str:
    """``name`` (``--encoding``) as DuckDB's ``read_csv`` spells it; an unknown one is a
    usage error (exit 1)."""
    try:
        return ENCODINGS[name.strip().lower()]
    except KeyError:
        raise SpecError(f"unknown encoding '{name}' (DuckDB's readers take utf-8, utf-16 or "
                        "latin-1)") from None


# What the CR of a CRLF ending becomes in the copy of a file that mixes line endings (DuckDB's
# reader rejects such files); the read strips it again and counts a 2-byte newline.
CRLF_MARK = b"\x1f"


def marked_copy(path: str) -> tuple[str, bool, bool]:
    """A temporary copy of ``path`` that DuckDB's line reader takes; ``(copy, lone CRs seen,
    CRLF seen)``. Bare CRs (progress bars) become LFs, the CR of each CRLF becomes
    :data:`CRLF_MARK` (read back with ``crlf_marked``): same bytes, so offsets stay exact."""
    fd, copy = tempfile.mkstemp(suffix=".log", prefix="rlm-cr-")
    lone = crlf = False
    with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
        for line in src:  # split at LF only; a CR before the LF is a CRLF ending
            body, end = (line[:-2], CRLF_MARK + b"\n") if line.endswith(b"\r\n") else (line, b"")
            lone = lone or b"\r" in body
            crlf = crlf or bool(end)
            dst.write(body.replace(b"\r", b"\n") + end)
    return copy, lone, crlf


def read_lines_sql(
    path: str,
    *,
    skip: int = 0,
    encoding: str = "utf-8",
    crlf_marked: bool = False,
    buffer: int | None = None,
) -> str:
    """``read_csv`` of ``path`` (``.gz`` too) as one VARCHAR column ``line``; with
    ``crlf_marked`` (a copy whose CRLF endings are :data:`CRLF_MARK` + LF) a subquery whose
    lines lose the mark and whose ``nl`` column is each line's newline width (1 or 2). A
    ``buffer`` size (bytes; DuckDB's default is tens of MB) also bounds the length of a line."""
    size = f"max_line_size={MAX_LINE_BYTES}"
    if buffer is not None:
        size = f"max_line_size={buffer}, buffer_size={buffer}"
    read = (
        f"read_csv({sql_str(path)}, columns={{'line': 'VARCHAR'}}, sep='{_SEP}', quote='', "
        f"escape='', header=false, auto_detect=false, skip={skip}, {size}, "
        f"encoding={sql_str(encoding)})"
    )
    if not crlf_marked:
        return read
    marked = f"ends_with(line, chr({CRLF_MARK[0]}))"
    return (f"(SELECT CASE WHEN {marked} THEN line[:-2] ELSE line END AS line, "
            f"CASE WHEN {marked} THEN 2 ELSE 1 END AS nl FROM {read})")


def create_log_view(con: Any, table: str) -> None:
    """(Re)create log view ``table`` over its stored table, for the formats it holds now."""
    formats = [row[0] for row in con.execute(
        f'SELECT DISTINCT format FROM "{stored_name(table)}" ORDER BY 1').fetchall()]
    con.execute(view_sql(table, formats))


def detect_format(
    con: Any, path: str, encoding: str = "utf-8", crlf_marked: bool = False
) -> tuple[LogFormat, int, int]:
    """Score every format on the first lines of ``path``; best match, its hits, lines sampled.

    A format scores the number of sampled non-empty lines its ``detect`` pattern matches; ties
    go to the earlier (more specific) format in :data:`FORMATS`. No hit at all → :data:`RAW`.
    """
    formats = list(FORMATS.values())
    hits = ", ".join(f"count_if(regexp_matches(line, {sql_str(f.detect)}))" for f in formats)
    row = _of_sample(con, f"SELECT count(*), {hits} FROM ({{sample}}) WHERE line <> ''", path,
                     encoding, crlf_marked)
    total, scores = row[0], [hits or 0 for hits in row[1:]]  # no lines: NULL counts
    best = max(range(len(formats)), key=lambda i: (scores[i], -i))
    if scores[best] == 0:
        return RAW, 0, total
    return formats[best], scores[best], total


def format_hits(
    con: Any, path: str, fmt: LogFormat, encoding: str = "utf-8", crlf_marked: bool = False
) -> int:
    """How many of the first sampled lines of ``path`` look like ``fmt``."""
    query = f"SELECT count_if(regexp_matches(line, {sql_str(fmt.detect)})) FROM ({{sample}})"
    return _of_sample(con, query, path, encoding, crlf_marked)[0]


def _of_sample(con: Any, query: str, path: str, encoding: str, crlf_marked: bool) -> tuple:
    """The row of ``query`` over ``{sample}``, the first :data:`SAMPLE_LINES` lines of ``path``.

    They are read with a small buffer (a default-sized one took 0.2 s of a 1 GB file's ingest);
    when that read fails — a line longer than the buffer, or bad input — the full-sized read
    runs instead, and raises whatever error is real.
    """
    def run(buffer: int | None) -> tuple:
        read = read_lines_sql(path, encoding=encoding, crlf_marked=crlf_marked, buffer=buffer)
        sample = f"SELECT line FROM {read} LIMIT {SAMPLE_LINES}"
        return con.execute(query.replace("{sample}", sample)).fetchone()

    try:
        return run(SAMPLE_BUFFER)
    except duckdb.Error:
        return run(None)


def insert_sql(
    fmt: LogFormat,
    table: str,
    source: str,
    lines: str,
    *,
    base_id: int,
    file_time: str = "current_localtimestamp()",
    first_line: int = 1,
    parent_id: int | None = None,
) -> str:
    """One parallel ``INSERT … SELECT`` parsing every line of ``lines`` (the numbered staged
    lines, :func:`~rlm_dsl.runtime.logs.numbering.numbered_lines_sql`) into ``table``.

    Lines ``fmt`` does not parse fall back to the per-line :data:`GENERIC` parse; the STRUCTs
    that parse needs (``g``, ``gh``) are built only for those lines. ``file_time`` is a SQL
    TIMESTAMP: the year of timestamps written without one.
    """
    is_start, rec = "is_start", "rec"
    if not fmt.multiline:  # every line is a record
        is_start, rec = "true", f"line_no - {first_line - 1}"
    fallback = {} if fmt is GENERIC else {"ts": generic_columns("g", "gh")["ts"]}
    record_id = f"{base_id} + {rec} - 1"
    if parent_id is not None:
        record_id = f"CASE WHEN {rec} = 0 THEN {parent_id} ELSE {record_id} END"
    reason = NO_FORMAT if fmt is RAW else mismatch(fmt.name)
    error = (
        f"CASE WHEN _ok OR _gok THEN NULL WHEN line = '' THEN {sql_str(EMPTY_LINE)} "
        f"ELSE {sql_str(reason)} END"
    )
    fmt_name = f"CASE WHEN _gok THEN 'generic' ELSE {sql_str(fmt.name)} END"
    columns = "id, source, line_no, end_line_no, byte_offset, text, format, parse_error, ts"
    return (
        f'INSERT INTO "{stored_name(table)}" ({columns}) SELECT {record_id} AS id, '
        f"{sql_str(source)} AS source, "
        f"line_no, CASE WHEN {is_start} THEN line_no END AS end_line_no, byte_offset, "
        f"line AS text, {fmt_name} AS format, {error} AS parse_error,\n  "
        f"{_column_sql(fmt, 'ts', fallback)} AS ts\n"
        f"FROM ({_parsed_lines_sql(fmt, lines, file_time)})"
    )


def _column_sql(fmt: LogFormat, column: str, fallback: dict[str, str]) -> str:
    primary = fmt.columns.get(column, "NULL")
    return f"CASE WHEN _ok THEN {primary} WHEN _gok THEN {fallback.get(column, 'NULL')} END"


def _parsed_lines_sql(fmt: LogFormat, lines: str, file_time: str) -> str:
    """The numbered ``lines`` with ``m`` (the format's STRUCT), ``_ok``, and for the lines it does
    not parse the generic fallback's timestamp STRUCT ``g`` and ``_gok``."""
    lines = f"SELECT *, {fmt.ingest_struct_sql()} AS m, {file_time} AS file_time FROM ({lines})"
    checked = f"SELECT *, coalesce({fmt.ok_sql()}, false) AS _ok FROM ({lines})"
    if fmt is GENERIC:
        return f"SELECT *, false AS _gok FROM ({checked})"
    found = f"SELECT *, CASE WHEN NOT _ok THEN {find_ts_sql('line')} END AS g FROM ({checked})"
    return (
        f"SELECT *, CASE WHEN _ok THEN false ELSE coalesce({generic_ok_sql('g')}, false) END "
        f"AS _gok FROM ({found})"
    )


def update_record_columns(con: Any, fmt: LogFormat, table: str, ids: str) -> None:
    """Recompute a stored ``ts`` that ``fmt`` reads from each new record's (folded) ``text``
    (the view derives its other record columns)."""
    if "ts" in fmt.record_columns:
        con.execute(f'UPDATE "{stored_name(table)}" SET ts = {fmt.record_columns["ts"]} '
                    f"WHERE ({ids}) AND format = {sql_str(fmt.name)}")


def fold_continuations(con: Any, table: str, ids: str) -> int:
    """Fold continuation lines (``end_line_no`` NULL) into their parent record; lines folded.

    ``ids`` is a SQL predicate on ``id`` limiting the work to the rows just inserted.
    """
    stored = stored_name(table)
    scope = f'FROM "{stored}" WHERE ({ids}) AND end_line_no IS NULL'
    n = con.execute(f"SELECT count(*) {scope}").fetchone()[0]
    if n == 0:
        return 0
    con.execute(
        f'UPDATE "{stored}" AS t SET text = t.text || chr(10) || c.extra, end_line_no = c.last '
        "FROM (SELECT id, string_agg(text, chr(10) ORDER BY line_no) AS extra, "
        f"max(line_no) AS last {scope} GROUP BY id) AS c "
        "WHERE t.id = c.id AND t.end_line_no IS NOT NULL"
    )
    con.execute(f'DELETE FROM "{stored}" WHERE ({ids}) AND end_line_no IS NULL')
    return n
