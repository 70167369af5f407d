"""Chunk stage, budget strategies ``chars(n, overlap)`` and ``tokens(n, overlap)``, and ``sql``.

Budget chunks hold whole rows, packed greedily up to ``n`` characters or tokens, never across a
``source`` boundary. Per-row weights (``length(text) + 1`` or the row's tokens + 1, the 1 being
the joining newline) are computed in SQL and fetched once, with the ids, as integer arrays;
each chunk's end is then one ``numpy.searchsorted`` over the cumulative weights, and the
next chunk starts at the earliest row that keeps at most ``overlap`` units of overlap. The
boundaries go back to DuckDB as a small table of id ranges the rows are joined to, and the
chunk text is built there (no text is copied or fetched). A single row
above the budget becomes its own chunks, cut with ``substr`` into pieces of ``n`` characters
(``tokens``: ``n`` tokens' worth of characters at that row's own chars-per-token ratio).
``chunk ... by sql`` renders the query's Jinja2 template (``{{ input }}`` is the source table)
and keeps its rows in the query's order, filling contract columns it does not yield.
"""

from __future__ import annotations

import itertools
import uuid
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.templates import environment
from rlm_dsl.errors import SpecError, StepFailed
from rlm_dsl.runtime.store.sql_limit import time_limited
from rlm_dsl.runtime.store.store import Store, quote_ident

if TYPE_CHECKING:
    from rlm_dsl.runtime.ingest.chunkers import Source, TokenSql

CONTRACT_TYPES = {
    "source": "VARCHAR",
    "first_line": "BIGINT",
    "last_line": "BIGINT",
    "start_byte": "BIGINT",
    "end_byte": "BIGINT",
    "n_rows": "BIGINT",
    "key": "VARCHAR",
}


def pack(weights: np.ndarray, breaks: np.ndarray, budget: int, overlap: int) -> np.ndarray:
    """Greedy ``[start, end)`` row ranges with weight sums ≤ ``budget`` (a heavier single row
    gets a range of its own), restarting at every index in ``breaks``."""
    cum = np.zeros(len(weights) + 1, dtype=np.int64)
    np.cumsum(weights, out=cum[1:])
    bounds = [*sorted({0, *breaks.tolist()}), len(weights)]
    ranges: list[tuple[int, int]] = []
    for first, stop in itertools.pairwise(bounds):
        start = first
        while start < stop:
            end = int(np.searchsorted(cum, cum[start] + budget, side="right")) - 1
            end = min(max(end, start + 1), stop)
            ranges.append((start, end))
            if end >= stop:
                break
            again = int(np.searchsorted(cum, cum[end] - overlap, side="left"))
            start = max(again, start + 1)
    return np.array(ranges, dtype=np.int64).reshape(-1, 2)


def by_budget(
    store: Store, step: Step, source: Source, tokens: TokenSql, n: int, overlap: int
) -> tuple[str, str]:
    """Grouped chunk SQL for ``chars`` / ``tokens`` (see the module docstring).

    Only ``id``, the weight and a source-change flag per row come to Python (as arrays); the
    chunk ranges go back as an id-range table the rows are joined to, so no text is copied.
    """
    weight = _weight(step, tokens)
    rows = source.rows_sql()
    arrays = store.con.execute(
        f"""SELECT id, {weight} AS w, source IS DISTINCT FROM lag(source) OVER (ORDER BY id)
            AS brk FROM ({rows}) ORDER BY id"""
    ).fetchnumpy()
    ids = np.asarray(arrays["id"], dtype=np.int64)
    weights = np.asarray(arrays["w"], dtype=np.int64)
    ranges = pack(weights, np.flatnonzero(np.asarray(arrays["brk"], dtype=bool)), n + 1, overlap)
    split = (ranges[:, 1] - ranges[:, 0] == 1) & (weights[ranges[:, 0]] > n + 1)
    ranges_table = _ranges_table(store, tokens, ids, ranges, split)
    members = f"""SELECT r.k AS grp, 0 AS part, s.* FROM ({rows}) s
        JOIN {ranges_table} r ON s.id >= r.lo AND s.id <= r.hi WHERE NOT r.split"""
    pieces = _pieces(rows, ranges_table, weight, step.strategy == "chars", n, overlap)
    grouped = f"""SELECT any_value(source) AS source, grp, part, min(id) AS first_id,
        min(first_line) AS first_line, max(last_line) AS last_line,
        min(start_byte) AS start_byte, max(end_byte) AS end_byte,
        count(*) AS n_rows, NULL AS key, string_agg(text, chr(10) ORDER BY id) AS text
        FROM ({members} UNION ALL BY NAME {pieces}) GROUP BY grp, part"""
    return grouped, "grp, part"


def _ranges_table(
    store: Store, tokens: TokenSql, ids: np.ndarray, ranges: np.ndarray, split: np.ndarray
) -> str:
    """The chunk ranges as a temporary table ``(k, lo, hi, split)`` of first and last ids."""
    table = f"rlm_ranges_{uuid.uuid4().hex[:12]}"
    tokens.scratch.append(table)
    with store.write() as con:
        con.execute(
            f"""CREATE TEMP TABLE {table} AS SELECT unnest(?::BIGINT[]) AS k,
                unnest(?::BIGINT[]) AS lo, unnest(?::BIGINT[]) AS hi,
                unnest(?::BOOLEAN[]) AS split""",
            [
                list(range(len(ranges))),
                ids[ranges[:, 0]].tolist() if len(ranges) else [],
                ids[ranges[:, 1] - 1].tolist() if len(ranges) else [],
                split.tolist(),
            ],
        )
    return table


def _weight(step: Step, tokens: TokenSql) -> str:
    return "length(text) + 1" if step.strategy == "chars" else f"{tokens.of('text')} + 1"


def _pieces(rows: str, ranges_table: str, weight: str, chars: bool, n: int, overlap: int) -> str:
    """One member per piece of each over-budget row (its own chunk: ``part`` numbers them)."""
    ratio = "1.0" if chars else f"length(text) / greatest({weight} - 1, 1)"
    sized = f"""SELECT r.k AS grp, s.*, greatest(1, floor({n} * {ratio}))::BIGINT AS plen,
            floor({overlap} * {ratio})::BIGINT AS povl
        FROM ({rows}) s JOIN {ranges_table} r ON s.id = r.lo WHERE r.split"""
    cut = f"""SELECT *, unnest(range(0, greatest(length(text) - povl, 1),
            greatest(plen - povl, 1))) AS off FROM ({sized})"""
    return f"""SELECT grp, off AS part, id, source, first_line, last_line,
            start_byte + strlen(substr(text, 1, off)) AS start_byte,
            start_byte + strlen(substr(text, 1, off + plen)) AS end_byte,
            substr(text, off + 1, plen) AS text
        FROM ({cut})"""


def _query_failed(step: Step, message: str) -> StepFailed:
    """A ``by sql`` query the run cannot use, named by the chunk step's spec position (``rlm
    check`` catches it earlier where the source's columns are known then)."""
    return StepFailed.of(step, None, SpecError(message), SpecError)


def chunk_sql(
    store: Store, step: Step, source: Source, tokens: TokenSql, params: dict[str, Any]
) -> None:
    """``chunk ... by sql``: the query's rows in its own order; it must yield ``text``."""
    query = render_query(step, source.table, params)
    try:
        names = [row[0] for row in store.con.execute(f"DESCRIBE {query}").fetchall()]
    except Exception as error:
        detail = str(error).strip().splitlines()[0]
        raise _query_failed(step, f"chunk query failed: {detail}") from None
    if "text" not in names:
        raise _query_failed(
            step, f"chunk query must yield a text column (it yields: {', '.join(names)})")
    columns = [
        f"CAST({quote_ident(name) if name in names else 'NULL'} AS {kind}) AS {name}"
        for name, kind in CONTRACT_TYPES.items()
    ]
    counted = "n_tokens" if "n_tokens" in names else f"{tokens.of('text')} AS n_tokens"
    extras = [quote_ident(name) for name in names if name not in {*CONTRACT_TYPES, "id"}]
    extras = [name for name in extras if name not in ('"text"', '"n_tokens"')]
    select = ", ".join([*columns[:6], counted, columns[6], "CAST(text AS VARCHAR) AS text"])
    sql = f"""SELECT row_number() OVER () - 1 AS id, {select}{"".join(", " + e for e in extras)}
        FROM ({query}) q"""
    with store.write() as con, time_limited(con):
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS {sql}")


def render_query(step: Step, table: str, params: dict[str, Any]) -> str:
    if not step.args or not isinstance(step.args[0], str):
        raise SpecError.for_step(step.id, "chunk by sql needs a query string")
    try:
        return environment().from_string(step.args[0]).render(
            {**params, "input": quote_ident(table)})
    except jinja2.TemplateError as error:
        raise _query_failed(step, f"chunk query template: {error}") from None
