"""Chunk stage, positional strategies: ``lines``/``records``, ``chars``, ``tokens`` and ``sql``.

Row windows (``lines``, ``records``) are pure SQL with computed chunk ids (see :func:`by_rows`).

Budget chunks hold whole rows, packed greedily up to ``n`` characters or tokens, never across a
``source`` boundary. Per-row weights (``length(text) + 1`` or the row's tokens + 1, the 1 being
the joining newline) are computed in SQL into a scratch table and fetched once as an integer
array; each chunk's end is then one ``numpy.searchsorted`` over the cumulative weights, and the
next chunk starts at the earliest row that keeps at most ``overlap`` units of overlap. The
boundaries go back to DuckDB as a small table and the chunk text is built there. A single row
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
from rlm_dsl.runtime.store import Store, quote_ident

from rlm_dsl.errors import SpecError

if TYPE_CHECKING:
    from rlm_dsl.runtime.chunkers import Source, TokenSql

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


def by_rows(
    store: Store, step: Step, source: Source, tokens: TokenSql, n: int, overlap: int
) -> None:
    """``lines`` / ``records(n, overlap)``: windows of n rows, stride n - overlap, per source.

    Chunk ids are computed, not sorted: a source's chunk count follows from its row count, so
    id = (chunks of earlier sources) + window index, and the aggregation groups by that one
    BIGINT. A row's position ``rn`` is ``id - first id`` when ids are contiguous in each
    source (every input table), else a ``row_number`` window.
    """
    stride = n - overlap
    ranked = _ranked(store, source.rows_sql(), stride, overlap, tokens)
    if overlap == 0:
        members = f"SELECT *, rn // {n} AS grp FROM ({ranked})"
    else:
        first = f"greatest(0, (rn - {n} + {stride}) // {stride})"
        members = f"""SELECT * EXCLUDE (grps), unnest(grps) AS grp FROM (
            SELECT *, range({first}, rn // {stride} + 1) AS grps FROM ({ranked}))"""
    grouped = f"""SELECT base + grp AS chunk_id, any_value(source) AS source,
            min(first_line) AS first_line, max(last_line) AS last_line,
            min(start_byte) AS start_byte, max(end_byte) AS end_byte, count(*) AS n_rows,
            string_agg(text, chr(10) ORDER BY id) AS text
        FROM ({members}) WHERE grp < chunks GROUP BY base + grp"""
    sql = f"""SELECT chunk_id AS id, source, first_line, last_line, start_byte, end_byte,
        n_rows, {tokens.of("text")} AS n_tokens, CAST(NULL AS VARCHAR) AS key, text
        FROM ({grouped}) ORDER BY id"""
    with store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS {sql}")


def _ranked(store: Store, rows: str, stride: int, overlap: int, tokens: TokenSql) -> str:
    """``rows`` plus ``rn`` (position in its source), ``base`` and ``chunks`` of its source."""
    sources = store.con.execute(
        f"""SELECT source, min(id), count(*), max(id) - min(id) + 1 FROM ({rows})
            GROUP BY source ORDER BY 2"""
    ).fetchall()
    counts = [max(1, (count - overlap + stride - 1) // stride) for _, _, count, _ in sources]
    bases = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist() if counts else []
    contiguous = all(count == span for _, _, count, span in sources)
    if len(sources) == 1 and contiguous:
        first = sources[0][1]
        return f"SELECT *, id - {first} AS rn, 0 AS base, {counts[0]} AS chunks FROM ({rows})"
    table = f"rlm_bases_{uuid.uuid4().hex[:12]}"
    tokens.scratch.append(table)
    with store.write() as con:
        con.execute(
            f"""CREATE TEMP TABLE {table} AS SELECT unnest(?::VARCHAR[]) AS source,
                unnest(?::BIGINT[]) AS first_id, unnest(?::BIGINT[]) AS base,
                unnest(?::BIGINT[]) AS chunks""",
            [[row[0] for row in sources], [row[1] for row in sources], bases, counts],
        )
    position = "r.id - b.first_id" if contiguous else _WINDOW_RN
    return f"""SELECT r.*, {position} AS rn, b.base, b.chunks FROM ({rows}) r
        JOIN {table} b ON r.source IS NOT DISTINCT FROM b.source"""


_WINDOW_RN = "row_number() OVER (PARTITION BY r.source ORDER BY r.id) - 1"


def by_budget(
    store: Store, step: Step, source: Source, tokens: TokenSql, n: int, overlap: int
) -> tuple[str, str]:
    """Grouped chunk SQL for ``chars`` / ``tokens`` (see the module docstring)."""
    rows_table = f"rlm_pack_{uuid.uuid4().hex[:12]}"
    ranges_table = f"{rows_table}_ranges"
    weight = "length(text) + 1" if step.strategy == "chars" else f"{tokens.of('text')} + 1"
    with store.write() as con:
        con.execute(
            f"""CREATE TEMP TABLE {rows_table} AS SELECT
                row_number() OVER (ORDER BY id) - 1 AS pos, *, {weight} AS w,
                source IS DISTINCT FROM lag(source) OVER (ORDER BY id) AS brk
            FROM ({source.rows_sql()}) ORDER BY pos"""
        )
        tokens.scratch.extend([rows_table, ranges_table])
        arrays = con.execute(f"SELECT w, brk FROM {rows_table} ORDER BY pos").fetchnumpy()
        weights = np.asarray(arrays["w"], dtype=np.int64)
        ranges = pack(
            weights, np.flatnonzero(np.asarray(arrays["brk"], dtype=bool)), n + 1, overlap
        )
        split = (ranges[:, 1] - ranges[:, 0] == 1) & (weights[ranges[:, 0]] > n + 1)
        con.execute(
            f"""CREATE TEMP TABLE {ranges_table} AS SELECT unnest(?::BIGINT[]) AS a,
                unnest(?::BIGINT[]) AS b, unnest(?::BOOLEAN[]) AS split""",
            [ranges[:, 0].tolist(), ranges[:, 1].tolist(), split.tolist()],
        )
    members = _whole_rows(rows_table, ranges_table)
    pieces = _pieces(rows_table, ranges_table, step.strategy == "chars", n, overlap)
    grouped = f"""SELECT source, grp, part, min(id) AS first_id, min(first_line) AS first_line,
        max(last_line) AS last_line, min(start_byte) AS start_byte, max(end_byte) AS end_byte,
        count(*) AS n_rows, NULL AS key, string_agg(text, chr(10) ORDER BY id) AS text
        FROM ({members} UNION ALL {pieces}) GROUP BY source, grp, part"""
    return grouped, "grp, part"


def _whole_rows(rows_table: str, ranges_table: str) -> str:
    return f"""SELECT r.a AS grp, 0 AS part, s.id, s.source, s.first_line, s.last_line,
            s.start_byte, s.end_byte, s.text
        FROM (SELECT a, unnest(range(a, b)) AS pos FROM {ranges_table} WHERE NOT split) r
        JOIN {rows_table} s ON s.pos = r.pos"""


def _pieces(rows_table: str, ranges_table: str, chars: bool, n: int, overlap: int) -> str:
    """One member per piece of each over-budget row (its own chunk: ``part`` numbers them)."""
    ratio = "1.0" if chars else "length(s.text) / greatest(s.w - 1, 1)"
    sized = f"""SELECT r.a AS grp, s.*, greatest(1, floor({n} * {ratio}))::BIGINT AS plen,
            floor({overlap} * {ratio})::BIGINT AS povl
        FROM {ranges_table} r JOIN {rows_table} s ON s.pos = r.a WHERE r.split"""
    cut = f"""SELECT *, unnest(range(0, greatest(length(text) - povl, 1),
            greatest(plen - povl, 1))) AS off FROM ({sized})"""
    return f"""SELECT grp, off AS part, id, source, first_line, last_line,
            start_byte + strlen(substr(text, 1, off)) AS start_byte,
            start_byte + strlen(substr(text, 1, off + plen)) AS end_byte,
            substr(text, off + 1, plen) AS text
        FROM ({cut})"""


def chunk_sql(
    store: Store, step: Step, source: Source, tokens: TokenSql, params: dict[str, Any]
) -> None:
    """``chunk ... by sql``: the query's rows in its own order; it must yield ``text``."""
    query = render_query(step, source.table, params)
    try:
        names = [row[0] for row in store.con.execute(f"DESCRIBE {query}").fetchall()]
    except Exception as error:
        detail = str(error).strip().splitlines()[0]
        raise SpecError(f"step '{step.id}': chunk query failed: {detail}") from None
    if "text" not in names:
        raise SpecError(
            f"step '{step.id}': chunk query must yield a text column (it yields: "
            f"{', '.join(names)})"
        )
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
    with store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS {sql}")


def render_query(step: Step, table: str, params: dict[str, Any]) -> str:
    if not step.args or not isinstance(step.args[0], str):
        raise SpecError(f"step '{step.id}': chunk by sql needs a query string")
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        return environment.from_string(step.args[0]).render({**params, "input": quote_ident(table)})
    except jinja2.TemplateError as error:
        raise SpecError(f"step '{step.id}': chunk query template: {error}") from None
