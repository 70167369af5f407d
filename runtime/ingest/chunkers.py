"""Chunk stage: turn a source table into the chunk table of a ``chunk`` step, in SQL.

Each strategy assigns the source rows (in ``id`` order) to chunk groups and one ``GROUP BY``
builds the chunks with ``string_agg(text, '\\n' ORDER BY id)``; nothing loops over lines in
Python. Chunk tables have the contract's columns ``id, source, first_line, last_line,
start_byte, end_byte, n_rows, n_tokens, key, text`` (``end_byte`` exclusive; line and byte
columns NULL when the source has none), ids dense and ordered by each chunk's first row (by
window start for ``window``). Row windows (``lines``, ``records``; :mod:`.rowchunks`) never
cross a ``source`` boundary and run in bounded batches. A ``files`` table is split into its
lines first for the line-based strategies. ``chars`` and ``tokens`` (:mod:`.packing`) pack whole
rows greedily up to the budget: per-row weights are computed in SQL, fetched once as integer
arrays, and each chunk's end is found with one ``numpy.searchsorted`` (a loop per chunk, not
per line); a single row over the budget is cut into pieces with ``substr``.
``n_tokens`` is exact when the counter has a SQL form (the chars/4 estimate) or the table
holds at most :data:`EXACT_TOKEN_BYTES` of text (a DuckDB Python UDF calls the counter); above
that it is ``ceil(chars / r)``, ``r`` being the counter's characters-per-token measured on a
sample of the source (map steps count their own prompts).

API::

    chunk(store, step, source_table, count_tokens, params=None) -> None   # writes step.table
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import duckdb
from duckdb.sqltypes import BIGINT, VARCHAR

from rlm_dsl.compiler.plan import Step
from rlm_dsl.errors import InputError, SpecError
from rlm_dsl.runtime.ingest.packing import by_budget, chunk_sql
from rlm_dsl.runtime.ingest.rowchunks import by_rows
from rlm_dsl.runtime.lm.tokens import TokenCounter
from rlm_dsl.runtime.store.store import Store, quote_ident, quote_literal

EXACT_TOKEN_BYTES = 16 << 20
SAMPLE_ROWS = 2000
CHUNK_COLUMNS = (  # the chunk table's columns, in order (the store contract)
    "id",
    "source",
    "first_line",
    "last_line",
    "start_byte",
    "end_byte",
    "n_rows",
    "n_tokens",
    "key",
    "text",
)
LINE_STRATEGIES = ("lines", "chars", "tokens", "regex", "delimiter")
_UNITS = {"ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}


def chunk(
    store: Store,
    step: Step,
    source_table: str,
    count_tokens: TokenCounter | Callable[[str], int],
    params: dict[str, Any] | None = None,
) -> None:
    """Write ``step.table`` from ``source_table`` with ``step.strategy``."""
    counter = _as_counter(count_tokens)
    strategy = step.strategy or "lines"
    if strategy not in _GROUPERS and strategy not in ("lines", "records", "sql"):
        raise SpecError.for_step(step.id, f"unknown chunk strategy '{strategy}'")
    if not store.table_exists(source_table):
        raise InputError.for_step(step.id, f"no table '{source_table}' to chunk")
    store.drop(step.table)  # a table or a lazy view (rowchunks.py) of an earlier run
    source = Source(store, source_table, step, explode=strategy in LINE_STRATEGIES)
    tokens = TokenSql(store, source, counter)
    try:
        if strategy in ("lines", "records"):
            by_rows(store, step, source, tokens, *_sliding(step))
        elif strategy == "sql":
            chunk_sql(store, step, source, tokens, params or {})
        else:
            grouped, order = _GROUPERS[strategy](store, step, source, tokens)
            _write(store, step.table, grouped, order, tokens)
    except duckdb.Error as error:
        raise InputError.for_step(step.id, f"chunking failed: {_first_line(error)}") from None
    finally:
        tokens.close()


def _as_counter(count_tokens: TokenCounter | Callable[[str], int]) -> TokenCounter:
    if isinstance(count_tokens, TokenCounter):
        return count_tokens
    return TokenCounter(getattr(count_tokens, "__name__", "counter"), count_tokens)


class Source:
    """The source table as rows with normalised provenance columns (SQL text)."""

    def __init__(self, store: Store, table: str, step: Step, explode: bool) -> None:
        self.table = table
        self.step = step
        self.names = [name for name, _ in store.columns(table)]
        for needed in ("id", "text"):
            if needed not in self.names:
                raise InputError.for_step(step.id, f"table '{table}' has no {needed} column")
        self.exploded = explode and "line_no" not in self.names and "size" in self.names

    def has(self, name: str) -> bool:
        return name in self.names

    def column(self, name: str) -> str:
        if not self.has(name):
            shown = ", ".join(self.names)
            raise InputError.for_step(
                self.step.id, f"table '{self.table}' has no column '{name}' (columns: {shown})")
        return quote_ident(name)

    def rows_sql(self, extra: str = "") -> str:
        """``id, source, first_line, last_line, start_byte, end_byte, text`` (+ ``extra``)."""
        if self.exploded:
            return self._file_lines_sql(extra)
        line = "line_no" if self.has("line_no") else "NULL"
        last = "coalesce(end_line_no, line_no)" if self.has("end_line_no") else line
        start = "byte_offset" if self.has("byte_offset") else "NULL"
        end = "byte_offset + strlen(coalesce(text, ''))" if self.has("byte_offset") else "NULL"
        source = "source" if self.has("source") else "NULL"
        return (
            f"SELECT id, CAST({source} AS VARCHAR) AS source, "
            f"CAST({line} AS BIGINT) AS first_line, CAST({last} AS BIGINT) AS last_line, "
            f"CAST({start} AS BIGINT) AS start_byte, CAST({end} AS BIGINT) AS end_byte, "
            f"coalesce(CAST(text AS VARCHAR), '') AS text{extra} FROM {quote_ident(self.table)}"
        )

    def _file_lines_sql(self, extra: str) -> str:
        """A ``files`` table split into lines, numbered and byte-offset per file, in SQL."""
        split = "string_split(regexp_replace(coalesce(f.text, ''), '\\n$', ''), chr(10))"
        return f"""SELECT row_number() OVER (ORDER BY file_id, line_no) - 1 AS id, source,
                line_no AS first_line, line_no AS last_line,
                sum(strlen(text) + 1) OVER (PARTITION BY file_id ORDER BY line_no)
                    - strlen(text) - 1 AS start_byte,
                sum(strlen(text) + 1) OVER (PARTITION BY file_id ORDER BY line_no) - 1
                    AS end_byte, text{extra}
            FROM (SELECT f.id AS file_id, CAST(f.source AS VARCHAR) AS source, l.text,
                         l.line_no FROM {quote_ident(self.table)} f,
                  unnest({split}) WITH ORDINALITY AS l(text, line_no))"""


class TokenSql:
    """SQL for a token count of a text column, following the policy in the module docstring."""

    def __init__(self, store: Store, source: Source, counter: TokenCounter) -> None:
        self.store = store
        self.counter = counter
        self._udf: str | None = None
        self._ratio: float | None = None
        self.scratch: list[str] = []  # temporary tables to drop when the step is done
        if counter.sql("x") is None:
            # stops reading at the first row past the limit (not a pass over all the text)
            running = (f"SELECT sum(strlen(CAST(text AS VARCHAR))) OVER (ROWS UNBOUNDED "
                       f"PRECEDING) AS seen FROM {quote_ident(source.table)}")
            larger = store.scalar(
                f"SELECT count(*) FROM (SELECT 1 FROM ({running}) "
                f"WHERE seen > {EXACT_TOKEN_BYTES} LIMIT 1)")
            if not larger:
                self._udf = self._register()
            else:
                self._ratio = chars_per_token(store, source.table, counter)

    def of(self, column: str) -> str:
        if self._udf is not None:
            return f"{self._udf}({column})"
        return self.of_length(f"length({column})") or ""

    def of_length(self, chars: str) -> str | None:
        """The count for a text of ``chars`` characters (a SQL column or call); None when
        counting needs the text itself (the counter runs as a UDF)."""
        if self._udf is not None:
            return None
        return self.counter.sql_of_length(chars) or (
            f"CAST(ceil({chars} / {self._ratio!r}) AS BIGINT)")

    def _register(self) -> str:
        name = f"rlm_tokens_{uuid.uuid4().hex[:12]}"
        self.store.con.create_function(
            name, self.counter.count, [VARCHAR], BIGINT, side_effects=False
        )
        return name

    def close(self) -> None:
        for table in self.scratch:
            self.store.con.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
        if self._udf is not None:
            self.store.con.remove_function(self._udf)
            self._udf = None


def chars_per_token(store: Store, table: str, counter: TokenCounter) -> float:
    """Characters per token of ``counter`` measured on a sample of ``table``'s text."""
    sample = (
        store.scalar(
            f"""SELECT string_agg(CAST(text AS VARCHAR), chr(10)) FROM
            (SELECT text FROM {quote_ident(table)}
             USING SAMPLE {SAMPLE_ROWS} ROWS (reservoir, 7))"""
        )
        or ""
    )
    tokens = counter.count(sample) if sample else 0
    return round(len(sample) / tokens, 4) if tokens else 4.0


def _group_columns(key: str = "NULL", order: str = "id") -> str:
    return f"""min(id) AS first_id, min(first_line) AS first_line,
        max(last_line) AS last_line, min(start_byte) AS start_byte, max(end_byte) AS end_byte,
        count(*) AS n_rows, {key} AS key, string_agg(text, chr(10) ORDER BY {order}) AS text"""


def _write(store: Store, table: str, grouped: str, order: str, tokens: TokenSql) -> None:
    """Number the chunks of ``grouped`` (``first_id, grp`` + chunk columns) by ``order``."""
    sql = f"""
        SELECT row_number() OVER (ORDER BY {order}) - 1 AS id, source, first_line, last_line,
               start_byte, end_byte, n_rows, {tokens.of("text")} AS n_tokens,
               CAST(key AS VARCHAR) AS key, text
        FROM ({grouped}) ORDER BY id"""
    with store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} AS {sql}")


def _sliding(step: Step, what: str = "chunk") -> tuple[int, int]:
    n = _arg(step, 0)
    overlap = step.options.get("overlap", 0) or 0
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SpecError.for_step(step.id, f"{what} size must be a positive integer, got {n!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < n:
        raise SpecError.for_step(
            step.id, f"overlap must be an integer from 0 to {n - 1}, got {overlap!r}")
    return n, overlap


def _arg(step: Step, index: int) -> Any:
    if len(step.args) <= index:
        raise SpecError.for_step(step.id, f"chunk by {step.strategy} needs an argument")
    return step.args[index]


def _by_regex(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``regex(pattern)``: a chunk starts at each matching row (rows before the first match form
    their own chunk); ``max_lines`` splits long groups."""
    pattern = _arg(step, 0)
    _check_regex(store, step, pattern)
    max_lines = step.options.get("max_lines")
    starts = f"""SELECT *, sum(CASE WHEN regexp_matches(text, {quote_literal(pattern)}) THEN 1
        ELSE 0 END) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS g FROM ({source.rows_sql()})"""
    sub = "0"
    if max_lines:
        sub = f"(row_number() OVER (PARTITION BY source, g ORDER BY id) - 1) // {int(max_lines)}"
    members = f"SELECT *, {sub} AS part FROM ({starts})"
    grouped = f"SELECT source, g, part, {_group_columns()} FROM ({members}) GROUP BY ALL"
    return grouped, "first_id"


def _check_regex(store: Store, step: Step, pattern: Any) -> None:
    if not isinstance(pattern, str):
        raise SpecError.for_step(step.id, f"regex must be a string, got {pattern!r}")
    try:
        store.scalar("SELECT regexp_matches('', ?)", [pattern])
    except duckdb.Error as error:
        raise SpecError.for_step(
            step.id, f"invalid regex {pattern!r}: {_first_line(error)}") from None


def _by_delimiter(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``delimiter(text)``: rows equal to ``text`` separate chunks and are dropped."""
    delimiter = quote_literal(str(_arg(step, 0)))
    marked = f"""SELECT *, text = {delimiter} AS is_delim, sum(CASE WHEN text = {delimiter}
        THEN 1 ELSE 0 END) OVER (ORDER BY id ROWS UNBOUNDED PRECEDING) AS g
        FROM ({source.rows_sql()})"""
    grouped = f"""SELECT source, g, {_group_columns()} FROM ({marked})
        WHERE NOT is_delim GROUP BY source, g"""
    return grouped, "first_id"


def _by_file(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``file()``: one chunk per source file."""
    grouped = f"SELECT source, {_group_columns()} FROM ({source.rows_sql()}) GROUP BY source"
    return grouped, "first_id"


def _by_record(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``record()``: one chunk per row."""
    grouped = f"""SELECT source, id AS first_id, first_line, last_line, start_byte, end_byte,
        1 AS n_rows, NULL AS key, text FROM ({source.rows_sql()})"""
    return grouped, "first_id"


def _by_column(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``column(name)``: one chunk per distinct value, rows in id order, first seen first."""
    column = source.column(str(_arg(step, 0)))
    rows = source.rows_sql(f", CAST({column} AS VARCHAR) AS group_key")
    columns = _group_columns(key="group_key")
    grouped = f"""SELECT string_agg(DISTINCT source, ', ' ORDER BY source) AS source, {columns}
        FROM ({rows}) GROUP BY group_key"""
    return grouped, "first_id"


def _by_window(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``window(duration, column="ts")``: time buckets; rows without a timestamp take the
    previous row's (continuation lines), rows before any timestamp form a first chunk."""
    micros = parse_duration(step, _arg(step, 0))
    column = source.column(str(step.options.get("column") or "ts"))
    stamped = source.rows_sql(f", try_cast({column} AS TIMESTAMP) AS raw_ts")
    filled = f"""SELECT *, last_value(raw_ts IGNORE NULLS) OVER (ORDER BY id
        ROWS UNBOUNDED PRECEDING) AS ts FROM ({stamped})"""
    bucketed = f"SELECT *, time_bucket(to_microseconds({micros}), ts) AS bucket FROM ({filled})"
    columns = _group_columns(key="strftime(bucket, '%Y-%m-%dT%H:%M:%S')", order="ts, id")
    grouped = f"""SELECT string_agg(DISTINCT source, ', ' ORDER BY source) AS source, bucket,
        {columns} FROM ({bucketed}) GROUP BY bucket"""
    return grouped, "bucket NULLS FIRST, first_id"


def parse_duration(step: Step, text: Any) -> int:
    """``"5m"`` → microseconds (units ms, s, m, h, d)."""
    value = str(text).strip()
    unit = next((u for u in ("ms", "s", "m", "h", "d") if value.endswith(u)), None)
    number = value[: -len(unit)] if unit else ""
    if unit is None or not number.isdigit() or int(number) == 0:
        raise SpecError(
            f'step \'{step.id}\': bad window duration {text!r} (use e.g. "30s", "5m", "1h")'
        )
    return int(number) * _UNITS[unit]


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0]


def _by_budget(store: Store, step: Step, source: Source, tokens: TokenSql) -> tuple[str, str]:
    """``chars(n, overlap)`` / ``tokens(n, overlap)``: see :mod:`rlm_dsl.runtime.ingest.packing`."""
    n, overlap = _sliding(step)
    return by_budget(store, step, source, tokens, n, overlap)


_GROUPERS: dict[str, Callable[[Store, Step, Source, TokenSql], tuple[str, str]]] = {
    "chars": _by_budget,
    "tokens": _by_budget,
    "regex": _by_regex,
    "delimiter": _by_delimiter,
    "file": _by_file,
    "record": _by_record,
    "column": _by_column,
    "window": _by_window,
}
