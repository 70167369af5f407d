"""Chunk stage, row windows: ``lines(n, overlap)`` and ``records(n, overlap)`` in SQL.

A window holds ``n`` consecutive rows of one source; the next starts ``n - overlap`` rows later,
and a last window that adds no new row is not made. Chunk ids are computed, not sorted: a
source's window count follows from its row count, so a row's windows are
``base(source) + rn // stride`` (``rn``: its position in the source) and the aggregation groups
by that one BIGINT with ``string_agg(text, '\\n' ORDER BY id)``. When ids are contiguous in each
source (every input table) ``rn`` is ``id - first id`` and the work runs in batches of about
:data:`BATCH_ROWS` rows selected by id range (DuckDB skips the other row groups), so memory
stays bounded however large the input; otherwise (a filtered table) ``rn`` comes from a
``row_number`` window in one statement. In the batched case the text is joined by an *unordered*
``string_agg`` (4x cheaper than the sorting one) that is verified, not trusted: the same
aggregate collects ``list(id)``, and a window whose ids did not arrive in order (a window split
between two threads' morsels) is written with NULL text and then rebuilt by the ordered
aggregate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from rlm_dsl.compiler.plan import Step
from rlm_dsl.runtime.store.store import STORED, Store, quote_ident

if TYPE_CHECKING:
    from rlm_dsl.runtime.ingest.chunkers import Source, TokenSql

BATCH_ROWS = 200_000  # ~20 MB of text: ordered aggregates hold a batch in memory
# True when a window's rows reached the unordered aggregate in id order (ids are contiguous).
IN_ORDER = "list(id) = range(min(id), max(id) + 1)"


@dataclass(frozen=True)
class _Source:
    name: str | None
    first_id: int
    rows: int
    base: int  # chunks of the sources before this one
    chunks: int


def by_rows(
    store: Store, step: Step, source: Source, tokens: TokenSql, n: int, overlap: int
) -> None:
    """Write ``step.table``: the row windows of ``source`` (see the module docstring)."""
    stride = n - overlap
    rows = source.rows_sql()
    sources, contiguous = _sources(store, rows, stride, overlap)
    if not source.exploded and tokens.of_length("0") is not None:
        _lazy_windows(store, step, source, tokens, n, overlap, sources, contiguous)
        return
    table = quote_ident(step.table)
    with store.transaction(bulk=True) as con:
        con.execute(
            f"CREATE OR REPLACE TABLE {table} (id BIGINT, source VARCHAR, first_line BIGINT, "
            "last_line BIGINT, start_byte BIGINT, end_byte BIGINT, n_rows BIGINT, "
            f"n_tokens BIGINT, key VARCHAR, text {store.text_type})"
        )
        if not sources:
            return
        bases = _bases_table(store, sources, tokens)
        if not contiguous:
            ranked = f"""SELECT r.*, row_number() OVER (PARTITION BY r.source ORDER BY r.id) - 1
                AS rn, b.base, b.chunks FROM ({rows}) r
                JOIN {bases} b ON r.source IS NOT DISTINCT FROM b.source"""
            con.execute(f"INSERT INTO {table} {_windows(ranked, n, overlap, tokens)}")
            return
        for low, high, first_chunk, last_chunk, only in _batches(sources, n, stride):
            rows_in = f"SELECT * FROM ({rows}) WHERE id BETWEEN {low} AND {high}"
            if only is not None:  # one source: its constants inline, no join (2x faster)
                ranked = f"""SELECT *, id - {only.first_id} AS rn, {only.base} AS base,
                    {only.chunks} AS chunks FROM ({rows_in})"""
            else:
                ranked = f"""SELECT r.*, r.id - b.first_id AS rn, b.base, b.chunks
                    FROM ({rows_in}) r JOIN {bases} b ON r.source IS NOT DISTINCT FROM b.source"""
            chunks = (first_chunk, last_chunk)
            con.execute(f"INSERT INTO {table} {_windows(ranked, n, overlap, tokens, chunks)}")
            _reorder(con, table, ranked, n, overlap, tokens, chunks)


def _lazy_windows(
    store: Store,
    step: Step,
    source: Source,
    tokens: TokenSql,
    n: int,
    overlap: int,
    sources: list[_Source],
    contiguous: bool,
) -> None:
    """Store each window as the id range of its rows (``step.table__stored``: no text) and make
    ``step.table`` the view that joins their text from the source on demand."""
    stored = quote_ident(step.table + STORED)
    rows = source.rows_sql()
    with store.transaction(bulk=True) as con:
        con.execute(
            f"CREATE OR REPLACE TABLE {stored} (id BIGINT, source VARCHAR, first_line BIGINT, "
            "last_line BIGINT, start_byte BIGINT, end_byte BIGINT, n_rows BIGINT, "
            "n_tokens BIGINT, key VARCHAR, first_id BIGINT, last_id BIGINT)"
        )
        if sources:
            bases = _bases_table(store, sources, tokens)
            rn = ("r.id - b.first_id" if contiguous
                  else "row_number() OVER (PARTITION BY r.source ORDER BY r.id) - 1")
            ranked = f"""SELECT r.*, {rn} AS rn, b.base, b.chunks FROM ({rows}) r
                JOIN {bases} b ON r.source IS NOT DISTINCT FROM b.source"""
            con.execute(f"INSERT INTO {stored} {_windows(ranked, n, overlap, tokens, lazy=True)}")
        con.execute(lazy_view_sql(step.table, source.table))


def lazy_view_sql(table: str, source: str) -> str:
    """The view ``table``: the windows stored in ``table__stored`` with their text, the rows
    ``first_id``..``last_id`` of ``source`` joined by newlines (a point lookup by ``id`` reads
    only its own rows)."""
    picks = ", ".join(f"any_value(c.{name}) AS {name}" for name in
                      ("source", "first_line", "last_line", "start_byte", "end_byte", "n_rows",
                       "n_tokens", "key"))
    # list() then list_sort(), not string_agg(… ORDER BY id): an ordered aggregate holds every
    # row in memory (a whole 1 GB input read at once failed under a 1 GB limit); list() spills
    rows = "list(struct_pack(i := s.id, t := coalesce(CAST(s.text AS VARCHAR), '')))"
    return f"""CREATE OR REPLACE VIEW {quote_ident(table)} AS SELECT c.id, {picks},
        array_to_string(list_transform(list_sort({rows}), lambda r: r.t), chr(10)) AS text
        FROM {quote_ident(table + STORED)} c JOIN {quote_ident(source)} s
        ON s.id BETWEEN c.first_id AND c.last_id GROUP BY c.id"""


def _reorder(
    con: duckdb.DuckDBPyConnection,
    table: str,
    ranked: str,
    n: int,
    overlap: int,
    tokens: TokenSql,
    chunks: tuple[int, int],
) -> None:
    """Rebuild, with the ordered aggregate, the text of the batch's windows left NULL."""
    unordered = con.execute(
        f"SELECT list(id) FROM {table} WHERE id BETWEEN ? AND ? AND text IS NULL", list(chunks)
    ).fetchall()[0][0]
    if not unordered:
        return
    fixed = _windows(ranked, n, overlap, tokens, chunks, only=unordered)
    con.execute(
        f"""UPDATE {table} SET text = f.text, n_tokens = f.n_tokens FROM ({fixed}) AS f
            WHERE {table}.id = f.chunk_id"""
    )


def _sources(store: Store, rows: str, stride: int, overlap: int) -> tuple[list[_Source], bool]:
    found = store.con.execute(
        f"""SELECT source, min(id), count(*), max(id) - min(id) + 1 FROM ({rows})
            GROUP BY source ORDER BY 2"""
    ).fetchall()
    sources, base = [], 0
    for name, first_id, count, _ in found:
        chunks = max(1, (count - overlap + stride - 1) // stride)
        sources.append(_Source(name, first_id, count, base, chunks))
        base += chunks
    return sources, all(count == span for _, _, count, span in found)


def _bases_table(store: Store, sources: list[_Source], tokens: TokenSql) -> str:
    table = f"rlm_bases_{uuid.uuid4().hex[:12]}"
    tokens.scratch.append(table)
    store.con.execute(
        f"""CREATE TEMP TABLE {table} AS SELECT unnest(?::VARCHAR[]) AS source,
            unnest(?::BIGINT[]) AS first_id, unnest(?::BIGINT[]) AS base,
            unnest(?::BIGINT[]) AS chunks""",
        [
            [s.name for s in sources],
            [s.first_id for s in sources],
            [s.base for s in sources],
            [s.chunks for s in sources],
        ],
    )
    return table


def _batches(
    sources: list[_Source], n: int, stride: int
) -> list[tuple[int, int, int, int, _Source | None]]:
    """``(low id, high id, first chunk, last chunk, the source if only one)`` per batch;
    consecutive small sources share a batch."""
    per_batch = max(1, BATCH_ROWS // stride)
    pieces: list[tuple[int, int, int, int, _Source | None]] = []
    for src in sources:
        last_id = src.first_id + src.rows - 1
        for start in range(0, src.chunks, per_batch):
            stop = min(src.chunks, start + per_batch) - 1
            high = min(src.first_id + stop * stride + n - 1, last_id)
            low = src.first_id + start * stride
            piece = (low, high, src.base + start, src.base + stop, src)
            if pieces and pieces[-1][4] is not src and high - pieces[-1][0] < BATCH_ROWS:
                low, _, first, _, _ = pieces.pop()
                piece = (low, high, first, src.base + stop, None)
            pieces.append(piece)
    return pieces


def _windows(
    ranked: str,
    n: int,
    overlap: int,
    tokens: TokenSql,
    chunk_range: tuple[int, int] | None = None,
    only: list[int] | None = None,
    lazy: bool = False,
) -> str:
    """The windows of ``ranked``; with a ``chunk_range`` (contiguous ids) their text is joined
    unordered and NULL where the ids arrived out of order, unless ``only`` names the windows to
    rebuild with the ordered aggregate. ``lazy`` windows have no text but the id range of their
    rows (``first_id``, ``last_id``) and its length in characters for the token count."""
    stride = n - overlap
    if overlap == 0:
        members = f"SELECT *, rn // {n} AS grp FROM ({ranked})"
    else:
        first = f"greatest(0, (rn - {n} + {stride}) // {stride})"
        members = f"""SELECT * EXCLUDE (grps), unnest(grps) AS grp FROM (
            SELECT *, range({first}, rn // {stride} + 1) AS grps FROM ({ranked}))"""
    keep = "grp < chunks"
    text = "string_agg(text, chr(10) ORDER BY id)"
    if chunk_range is not None:
        keep += f" AND base + grp BETWEEN {chunk_range[0]} AND {chunk_range[1]}"
        if only is None:
            text = f"CASE WHEN {IN_ORDER} THEN string_agg(text, chr(10)) END"
    if only is not None:
        keep += f" AND base + grp IN ({', '.join(str(int(i)) for i in only)})"
    content = f"{text} AS text"
    if lazy:
        content = ("sum(length(text)) + count(*) - 1 AS chars, min(id) AS first_id, "
                   "max(id) AS last_id")
    grouped = f"""SELECT base + grp AS chunk_id, any_value(source) AS source,
            min(first_line) AS first_line, max(last_line) AS last_line,
            min(start_byte) AS start_byte, max(end_byte) AS end_byte, count(*) AS n_rows,
            {content}
        FROM ({members}) WHERE {keep} GROUP BY base + grp"""
    n_tokens, last = (tokens.of_length("chars"), "first_id, last_id") if lazy else (
        tokens.of("text"), "text")
    return f"""SELECT chunk_id, source, first_line, last_line, start_byte, end_byte, n_rows,
        {n_tokens} AS n_tokens, NULL, {last} FROM ({grouped}) ORDER BY chunk_id"""
