"""Log templates and dedup: mask the variable parts of messages, collapse repeats, in SQL.

This is the *dedup* stage of log ingest. :func:`template_sql` turns a message expression into
its template by masking timestamps, UUIDs, IP addresses, quoted strings, paths, hex ids and
numbers with ``regexp_replace`` (so ``took 12 ms for 10.0.0.7`` and ``took 9 ms for 10.0.0.8``
share ``took <num> ms for <ip>``). :func:`dedup_table` rewrites a log table so each
(source, template, level, component) is one row with a ``count`` — 100,000 repeats cost one
LM read — keeping the first occurrence's fields and line, the last line and last timestamp.
"""

from __future__ import annotations

from typing import Any

from rlm_dsl.runtime.logs.formats import sql_str
from rlm_dsl.runtime.logs.parse import LOG_COLUMNS

# Order matters: whole timestamps and UUIDs before the numbers inside them.
MASKS: tuple[tuple[str, str], ...] = (
    (r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?", "<ts>"),
    (r"\b\d\d:\d\d:\d\d(?:[.,]\d+)?\b", "<time>"),
    (r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b", "<uuid>"),
    (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", "<ip>"),
    (r"\"(?:[^\"\\]|\\.)*\"|'[^']*'", "<str>"),
    (r"(?:[A-Za-z]:)?(?:/[\w.\-~%]+){2,}/?", "<path>"),
    (r"\b(?:0x[0-9a-fA-F]+|[0-9a-fA-F]{8,})\b", "<hex>"),
    (r"\d+(?:\.\d+)?", "<num>"),
)


def template_sql(expr: str) -> str:
    """SQL turning the message expression ``expr`` into its template.

    >>> import duckdb
    >>> sql = template_sql("'GET /api/v1/items/42 from 10.0.0.7 took 12 ms'")
    >>> duckdb.execute(f"SELECT {sql}").fetchone()[0]
    'GET <path> from <ip> took <num> ms'
    """
    out = expr
    for pattern, mask in MASKS:
        out = f"regexp_replace({out}, {sql_str(pattern)}, {sql_str(mask)}, 'g')"
    return out


def dedup_sql(table: str) -> str:
    """A SELECT over log ``table`` with one row per (source, template, level, component)."""
    keys = ("source", "level", "component")
    firsts = ", ".join(
        f"arg_min({name}, id) AS {name}"
        for name, _ in LOG_COLUMNS
        if name not in (*keys, "id", "line_no", "end_line_no", "ts", "text")
    )
    return (
        f'WITH t AS (SELECT *, {template_sql("message")} AS template FROM "{table}") '
        "SELECT row_number() OVER (ORDER BY min(id)) - 1 AS id, source, min(line_no) AS line_no, "
        "max(end_line_no) AS end_line_no, min(ts) AS ts, level, component, "
        f"{firsts}, CASE WHEN count(*) > 1 THEN arg_min(text, id) || ' (repeated ' || "
        "count(*) || ' times)' ELSE arg_min(text, id) END AS text, template, "
        "count(*) AS count, max(ts) AS last_ts "
        "FROM t GROUP BY source, template, level, component"
    )


def dedup_table(con: Any, table: str) -> None:
    """Replace log ``table`` by its deduplicated form (columns of a log table + template,
    count, last_ts), rows ordered by first occurrence."""
    columns = ", ".join(name for name, _ in LOG_COLUMNS)
    con.execute(
        f'CREATE OR REPLACE TABLE "{table}" AS SELECT {columns}, template, count, last_ts '
        f"FROM ({dedup_sql(table)}) ORDER BY id"
    )
