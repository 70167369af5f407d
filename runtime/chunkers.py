"""Chunk stage: turn a source table into the chunk table of a ``chunk`` step, in SQL.

Every strategy assigns each source row (in ``id`` order, never across a ``source`` boundary
unless the strategy groups by something else) to one or more chunk groups, then one
``GROUP BY`` builds the chunk rows with ``string_agg(text, '\\n' ORDER BY id)``; nothing loops
over lines in Python. The chunk table has the contract's columns ``id, source, first_line,
last_line, start_byte, end_byte, n_rows, n_tokens, key, text`` (``end_byte`` is exclusive; line
and byte columns are NULL when the source has none), ids dense and ordered by the chunk's first
row. ``chars`` and ``tokens`` pack whole rows greedily up to the budget: per-row weights are
computed in SQL, fetched as one integer array, and the chunk *boundaries* are found with one
``numpy.searchsorted`` per chunk (never per line); a single row over the budget is cut with
``substr``. ``n_tokens`` is exact when the counter has a SQL form (the chars/4 estimate) or the
table holds at most :data:`EXACT_TOKEN_BYTES` of text (a DuckDB Python UDF calls the counter per
chunk); above that it is ``ceil(chars / r)`` with ``r`` the chars-per-token ratio the counter
measures on a sample of the source (a map step must still count its rendered prompt).

API::

    chunk(store, step, source_table, count_tokens, params=None) -> None   # writes step.table
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from rlm_dsl.compiler.plan import Step
from rlm_dsl.runtime.store import Store, quote_ident
from rlm_dsl.runtime.tokens import TokenCounter

from rlm_dsl.errors import InputError, SpecError

EXACT_TOKEN_BYTES = 16 << 20
SAMPLE_ROWS = 2000
CHUNK_COLUMNS = (
    "id BIGINT, source VARCHAR, first_line BIGINT, last_line BIGINT, start_byte BIGINT, "
    "end_byte BIGINT, n_rows BIGINT, n_tokens BIGINT, key VARCHAR, text VARCHAR"
)


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
    builder = _STRATEGIES.get(strategy)
    if builder is None:
        raise SpecError(f"step '{step.id}': unknown chunk strategy '{strategy}'")
    if not store.table_exists(source_table):
        raise InputError(f"step '{step.id}': no table '{source_table}' to chunk")
    source = Source(store, source_table, step)
    if strategy == "sql":
        _chunk_sql(store, step, source, counter, params or {})
        return
    grouped = builder(store, step, source, counter)
    _write_chunks(store, step.table, grouped, source, counter)


def _as_counter(count_tokens: TokenCounter | Callable[[str], int]) -> TokenCounter:
    if isinstance(count_tokens, TokenCounter):
        return count_tokens
    return TokenCounter(getattr(count_tokens, "__name__", "counter"), count_tokens)


class Source:
    """The source table seen as rows with normalised provenance columns (SQL text)."""

    def __init__(self, store: Store, table: str, step: Step) -> None:
        self.table = table
        self.step = step
        self.names = [name for name, _ in store.columns(table)]
        if "text" not in self.names:
            raise InputError(f"step '{step.id}': table '{table}' has no text column to chunk")
        if "id" not in self.names:
            raise InputError(f"step '{step.id}': table '{table}' has no id column")

    def has(self, name: str) -> bool:
        return name in self.names

    def rows_sql(self) -> str:
        """``id, source, first_line, last_line, start_byte, end_byte, text`` per row."""
        line = "line_no" if self.has("line_no") else "NULL"
        last = "coalesce(end_line_no, line_no)" if self.has("end_line_no") else line
        start = "byte_offset" if self.has("byte_offset") else "NULL"
        end = "byte_offset + strlen(coalesce(text, ''))" if self.has("byte_offset") else "NULL"
        source = "source" if self.has("source") else "NULL"
        return (
            f"SELECT id, CAST({source} AS VARCHAR) AS source, "
            f"CAST({line} AS BIGINT) AS first_line, "
            f"CAST({last} AS BIGINT) AS last_line, CAST({start} AS BIGINT) AS start_byte, "
            f"CAST({end} AS BIGINT) AS end_byte, coalesce(CAST(text AS VARCHAR), '') AS text "
            f"FROM {quote_ident(self.table)}"
        )

    def ranked_sql(self, store: Store) -> str:
        """:meth:`rows_sql` plus ``rn``: the row's 0-based position within its source.

        When ids are contiguous within each source (every input table, and any table nobody
        filtered) ``rn`` is ``id - first id``: a join with a per-source summary, no sort.
        """
        rows = self.rows_sql()
        summary = f"""SELECT source, min(id) AS first_id, count(*) AS n,
            max(id) - min(id) + 1 AS span FROM ({rows}) GROUP BY source"""
        if store.scalar(f"SELECT bool_and(n = span) FROM ({summary})"):
            return f"""SELECT r.*, r.id - s.first_id AS rn FROM ({rows}) r
                JOIN ({summary}) s ON r.source IS NOT DISTINCT FROM s.source"""
        return f"""SELECT *, row_number() OVER (PARTITION BY source ORDER BY id) - 1 AS rn
            FROM ({rows})"""


def _write_chunks(
    store: Store, table: str, grouped: str, source: Source, counter: TokenCounter
) -> None:
    """``grouped`` yields ``source, grp, first_id, first_line, last_line, start_byte, end_byte,
    n_rows, key, text`` per chunk (``grp`` any sortable chunk key); number and count tokens."""
    tokens, cleanup = _token_expression(store, source, counter)
    sql = f"""
        SELECT row_number() OVER (ORDER BY first_id, grp) - 1 AS id, source, first_line,
               last_line, start_byte, end_byte, n_rows, {tokens} AS n_tokens,
               CAST(key AS VARCHAR) AS key, text
        FROM ({grouped}) ORDER BY id"""
    try:
        with store.write() as con:
            con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} AS {sql}")
    finally:
        cleanup()


def _token_expression(
    store: Store, source: Source, counter: TokenCounter
) -> tuple[str, Callable[[], None]]:
    exact = counter.sql("text")
    if exact is not None:
        return exact, lambda: None
    size = store.scalar(
        f"SELECT coalesce(sum(strlen(CAST(text AS VARCHAR))), 0) FROM {quote_ident(source.table)}"
    )
    if size <= EXACT_TOKEN_BYTES:
        return _token_udf(store, counter)
    ratio = chars_per_token(store, source.table, counter)
    return f"CAST(ceil(length(text) / {ratio!r}) AS BIGINT)", lambda: None


def _token_udf(store: Store, counter: TokenCounter) -> tuple[str, Callable[[], None]]:
    from duckdb.sqltypes import BIGINT, VARCHAR

    name = f"rlm_tokens_{uuid.uuid4().hex[:12]}"
    con = store.con
    con.create_function(name, counter.count, [VARCHAR], BIGINT, side_effects=False)
    return f"{name}(text)", lambda: con.remove_function(name)


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


def _sliding(n: int, overlap: int, step_id: str, what: str) -> tuple[int, int]:
    if not isinstance(n, int) or n < 1:
        raise SpecError(f"step '{step_id}': {what} size must be a positive integer, got {n!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < n:
        raise SpecError(
            f"step '{step_id}': overlap must be an integer from 0 to {n - 1}, got {overlap!r}"
        )
    return n, overlap


def _group_columns(key: str = "NULL") -> str:
    return f"""min(id) AS first_id, min(first_line) AS first_line, max(last_line) AS last_line,
        min(start_byte) AS start_byte, max(end_byte) AS end_byte, count(*) AS n_rows,
        {key} AS key, string_agg(text, chr(10) ORDER BY id) AS text"""


def _by_rows(store: Store, step: Step, source: Source, counter: TokenCounter) -> str:
    """``lines(n, overlap)`` / ``records(n, overlap)``: windows of n rows, step n - overlap."""
    n, overlap = _sliding(_arg(step, 0), step.options.get("overlap", 0) or 0, step.id, "chunk")
    stride = n - overlap
    ranked = source.ranked_sql(store)
    if overlap == 0:
        members = f"SELECT *, rn // {n} AS grp FROM ({ranked})"
    else:
        members = f"""SELECT * EXCLUDE (grps), unnest(grps) AS grp FROM (
            SELECT *, range(greatest(0, (rn - {n} + {stride}) // {stride}), rn // {stride} + 1)
                AS grps FROM ({ranked}))"""
    totals = f"SELECT source, max(rn) + 1 AS total FROM ({ranked}) GROUP BY source"
    return f"""SELECT m.source, m.grp, {_group_columns()} FROM ({members}) m
        JOIN ({totals}) t ON m.source IS NOT DISTINCT FROM t.source
        WHERE m.grp = 0 OR m.grp * {stride} + {overlap} < t.total
        GROUP BY m.source, m.grp"""


def _arg(step: Step, index: int) -> Any:
    if len(step.args) <= index:
        raise SpecError(f"step '{step.id}': chunk by {step.strategy} needs an argument")
    return step.args[index]


_STRATEGIES: dict[str, Callable[[Store, Step, Source, TokenCounter], str]] = {
    "lines": _by_rows,
    "records": _by_rows,
    "sql": lambda *_: "",
}


def _chunk_sql(
    store: Store, step: Step, source: Source, counter: TokenCounter, params: dict[str, Any]
) -> None:
    raise SpecError(f"step '{step.id}': chunk by sql is not implemented yet")
