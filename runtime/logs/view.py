"""The log table as a view: a few columns stored at ingest, the parsed rest derived on demand.

This is the *storage* stage of log ingest. Parsing every column at load and writing it was most
of ingest's cost (docs/benchmarks.md, Log ingest), so a log input ``logs`` is stored as the table
``logs__stored`` with only what needs the file or the whole run to compute — ``id, source,
line_no, end_line_no, byte_offset, ts, text, format, parse_error`` (``ts`` also because windows,
filters and sorting read it all the time; ``source``, ``format`` and ``parse_error`` as ENUMs)
— and ``logs`` is a view that derives the other columns of the log schema (``level, host,
process, pid, component, message``, the HTTP columns, ``fields``) from each row's ``text`` with
the SQL of the format that parsed it (its ``format`` column). A query pays only for the derived
columns it reads: chunking and ``text``/``ts`` reads touch none, and a point lookup derives one
row. One layer per format present in the table computes that format's STRUCT ``m`` for its own
rows only; rows that failed to parse derive nothing (``message`` is their ``text``).
"""

from __future__ import annotations

from typing import Any

from rlm_dsl.runtime.logs.formats import FORMATS, GENERIC, RAW, generic_header_sql
from rlm_dsl.runtime.logs.logformat import LogFormat
from rlm_dsl.runtime.logs.sql import sql_str
from rlm_dsl.runtime.store.store import STORED

# The log schema (docs/architecture.md), in the view's column order.
LOG_COLUMNS = (
    ("id", "BIGINT"),
    ("source", "VARCHAR"),
    ("line_no", "BIGINT"),
    ("end_line_no", "BIGINT"),
    ("byte_offset", "BIGINT"),
    ("ts", "TIMESTAMP"),
    ("level", "VARCHAR"),
    ("host", "VARCHAR"),
    ("process", "VARCHAR"),
    ("pid", "BIGINT"),
    ("component", "VARCHAR"),
    ("message", "VARCHAR"),
    ("text", "VARCHAR"),
    ("format", "VARCHAR"),
    ("parse_error", "VARCHAR"),
    ("client", "VARCHAR"),
    ("method", "VARCHAR"),
    ("path", "VARCHAR"),
    ("status", "INTEGER"),
    ("bytes", "BIGINT"),
    ("referrer", "VARCHAR"),
    ("user_agent", "VARCHAR"),
    ("fields", "MAP(VARCHAR, VARCHAR)"),
)
STORED_NAMES = ("id", "source", "line_no", "end_line_no", "byte_offset", "ts", "text", "format",
                "parse_error")
STORED_COLUMNS = tuple((name, kind) for name, kind in LOG_COLUMNS if name in STORED_NAMES)
DERIVED_TYPES = {name: kind for name, kind in LOG_COLUMNS if name not in STORED_NAMES}
# Stored as ENUMs: ``source`` (the files loaded), ``format`` (every format name) and
# ``parse_error`` (its few messages). Written as VARCHAR, these mostly constant columns cost
# ingest about a CPU-second per GB (docs/benchmarks.md, Log ingest); the view presents them as
# VARCHAR. Tables made before keep VARCHAR columns, which take the same inserts.
FORMAT_NAMES = (*FORMATS, RAW.name)
EMPTY_LINE = "empty line"
NO_FORMAT = "no known log format recognised in this file"  # every line of a RAW file


def mismatch(format_name: str) -> str:
    """The ``parse_error`` of a line that the format of its file does not parse."""
    return f"line does not match the {format_name} format"


PARSE_ERRORS = (EMPTY_LINE, NO_FORMAT, *(mismatch(name) for name in FORMATS))
ENUM_COLUMNS = ("source", "format", "parse_error")
# The first line of a (possibly folded, multi-line) record: what a format's SQL calls ``line``.
_FIRST_LINE = "CASE WHEN contains(text, chr(10)) THEN split_part(text, chr(10), 1) ELSE text END"


def stored_name(table: str) -> str:
    """The table that holds the stored columns of log view ``table``."""
    return f"{table}{STORED}"


def create_stored(con: Any, table: str, sources: list[str], text_type: str = "VARCHAR") -> None:
    """Create ``table``'s stored table if it is missing (``text`` as ``text_type``, ZSTD-compressed
    where the database has it), and let its ENUM columns hold ``sources`` and every format name:
    an ENUM that lacks one is widened (``ALTER``: its column is rewritten)."""
    stored = stored_name(table)
    # an ENUM needs a value: a load of no files gives its source column the empty name
    values = {"source": list(dict.fromkeys(sources)) or [""], "format": list(FORMAT_NAMES),
              "parse_error": list(PARSE_ERRORS)}
    types = {"text": text_type, **{column: _enum(names) for column, names in values.items()}}
    cols = ", ".join(f"{name} {types.get(name, kind)}" for name, kind in STORED_COLUMNS)
    con.execute(f'CREATE TABLE IF NOT EXISTS "{stored}" ({cols})')
    kinds = dict(con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
        "current_database() AND schema_name = 'main' AND table_name = ?", [stored]).fetchall())
    for column, names in values.items():
        if not kinds[column].startswith("ENUM("):
            continue  # a VARCHAR column of a table made before
        held = con.execute(f"SELECT enum_range(NULL::{kinds[column]})").fetchone()[0]
        known = set(held)
        missing = [name for name in names if name not in known]
        if missing:
            con.execute(f'ALTER TABLE "{stored}" ALTER {column} SET DATA TYPE '
                        f"{_enum([*held, *missing])}")


def _enum(names: list[str]) -> str:
    return "ENUM(" + ", ".join(sql_str(name) for name in names) + ")"


def view_sql(table: str, formats: list[str]) -> str:
    """``CREATE OR REPLACE VIEW table`` over its stored table, with the columns of
    :data:`LOG_COLUMNS`, derived for rows of the named ``formats``."""
    packed = "STRUCT(" + ", ".join(f"{c} {t}" for c, t in DERIVED_TYPES.items()) + ")"
    rows = (f"SELECT *, {_FIRST_LINE} AS line, CAST(NULL AS {packed}) AS c "
            f'FROM "{stored_name(table)}"')
    for name in formats:
        fmt = FORMATS.get(name)
        if fmt is not None and name != "raw":
            rows = _layer(rows, fmt)
    derived = {c: f"c.{c}" for c in DERIVED_TYPES}
    derived["message"] = "coalesce(c.message, text)"
    derived.update({column: f"CAST({column} AS VARCHAR)" for column in ENUM_COLUMNS})
    select = ", ".join(derived.get(c, c) + f" AS {c}" for c, _ in LOG_COLUMNS)
    return f'CREATE OR REPLACE VIEW "{table}" AS SELECT {select} FROM ({rows})'


def _layer(rows: str, fmt: LogFormat) -> str:
    """``rows`` with ``c`` filled for the rows ``fmt`` parsed (``m``, and ``h`` for generic)."""
    mine = f"format = {sql_str(fmt.name)} AND parse_error IS NULL"
    with_m = f"SELECT *, CASE WHEN {mine} THEN {fmt.struct_sql()} END AS m FROM ({rows})"
    hidden = "m"
    if fmt is GENERIC:
        with_m = f"SELECT *, {generic_header_sql('m')} AS h FROM ({with_m})"
        hidden = "m, h"
    fields = ", ".join(f"{c} := CAST({_column(fmt, c)} AS {t})" for c, t in DERIVED_TYPES.items())
    return (f"SELECT * EXCLUDE ({hidden}) REPLACE (CASE WHEN {mine} THEN struct_pack({fields}) "
            f"ELSE c END AS c) FROM ({with_m})")


def _column(fmt: LogFormat, column: str) -> str:
    """``fmt``'s SQL for a derived column of one record (over ``m``, ``line``, ``text``)."""
    if column in fmt.record_columns:
        return fmt.record_columns[column]
    if column != "message":
        return fmt.columns.get(column, "NULL")
    first = fmt.columns.get("message", "line")
    # a folded record's message goes on with its continuation lines, as its text does
    return f"({first} || CASE WHEN line <> text THEN substr(text, length(line) + 1) ELSE '' END)"

