"""Line numbering for log ingest: each line's ``line_no``, ``byte_offset`` and record, in parallel.

Part of the *parse* stage (:mod:`~rlm_dsl.runtime.logs.parse` inserts the lines numbered here).
A line's byte offset is a running sum over the lines before it, and DuckDB runs a running sum
(a streaming window) on one thread, so numbering a whole file in one window was the slowest step
of ingest (docs/benchmarks.md, Log ingest). Instead one parallel ``read_csv`` copies the lines
into the temp table :data:`STAGE` — DuckDB keeps insertion order, so the table's ``rowid`` counts
the lines (from a first rowid that is not 0 inside a transaction) — with each line's width (its
bytes plus its newline) and, for multi-line formats, whether it starts a record. One parallel
aggregate sums widths and record starts per slice of rows; each slice is then numbered by its
own running sums from its slice's bases, and the slices — one ``UNION ALL``, whose branches
DuckDB runs side by side when insertion order need not be kept (:func:`concurrent_slices`) —
feed the parsing insert. Line numbers do not depend on the order in which the slices' rows reach
the table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from rlm_dsl.runtime.logs.logformat import LogFormat

STAGE = "_rlm_log_lines"
SLICES_PER_THREAD = 4  # more slices than threads, so that a slow one does not hold the rest up
MIN_SLICE_ROWS = 1 << 15  # below this a file is numbered in fewer slices (one for small files)
_RUNNING = "OVER (ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"


def stage_sql(fmt: LogFormat, read: str, newline: int | str = 1) -> str:
    """Copy the lines of ``read`` into the temp table :data:`STAGE` (one parallel pass).

    ``newline`` is the width of a line ending: a number, or ``"nl"`` when ``read`` gives each
    line's own (:func:`~rlm_dsl.runtime.logs.parse.read_lines_sql`, ``crlf_marked``).
    """
    columns = f"line, strlen(line) + {newline} AS width"
    if fmt.multiline:
        columns += f", {fmt.starts_record_sql()} AS is_start"
    lines = f"SELECT * REPLACE (coalesce(line, '') AS line) FROM {read}"  # a blank line is NULL
    return f"CREATE OR REPLACE TEMP TABLE {STAGE} AS SELECT {columns} FROM ({lines})"


def numbered_lines_sql(
    con: Any,
    fmt: LogFormat,
    *,
    first_line: int = 1,
    first_byte: int = 0,
    parent_id: int | None = None,
) -> str | None:
    """A query of the staged lines with ``line_no``, ``byte_offset`` and, for multi-line
    formats, ``is_start`` and ``rec`` (the line's record, 1-based within this read); None when
    nothing was staged.

    Without a ``parent_id`` the first line always starts a record; with one (an incremental
    read), leading continuation lines get ``rec`` 0 and belong to that existing record.
    """
    lines, first = con.execute(f"SELECT count(*), min(rowid) FROM {STAGE}").fetchone()
    if lines == 0:
        return None
    if fmt.multiline and parent_id is None:
        con.execute(f"UPDATE {STAGE} SET is_start = true WHERE rowid = {first}")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    rows = max(MIN_SLICE_ROWS, -(-lines // (threads * SLICES_PER_THREAD)))
    starts = "sum(is_start::BIGINT)" if fmt.multiline else "0"
    sums = con.execute(f"SELECT (rowid - {first}) // {rows} AS k, sum(width), {starts} "
                       f"FROM {STAGE} GROUP BY k ORDER BY k").fetchall()
    slices, byte, rec = [], first_byte, 0
    for k, width, record_starts in sums:
        low = first + k * rows
        columns = [
            "line",
            f"rowid - {first - first_line} AS line_no",
            f"{byte} + sum(width) {_RUNNING} - width AS byte_offset",
        ]
        if fmt.multiline:
            columns += ["is_start", f"{rec} + sum(is_start::BIGINT) {_RUNNING} AS rec"]
        slices.append(f"SELECT {', '.join(columns)} FROM {STAGE} "
                      f"WHERE rowid >= {low} AND rowid < {low + rows}")
        byte, rec = byte + width, rec + record_starts
    return " UNION ALL ".join(slices)


@contextlib.contextmanager
def concurrent_slices(con: Any) -> Iterator[None]:
    """Let DuckDB run the slices of :func:`numbered_lines_sql` side by side.

    DuckDB runs the branches of a ``UNION ALL`` one after the other while it keeps insertion
    order; each slice is a running sum, which runs on one thread, so in order the insert would
    use one core. Without it the rows of the slices reach the table interleaved, which changes
    nothing for readers: every row carries its line number.
    """
    con.execute("SET SESSION preserve_insertion_order = false")  # this connection only
    try:
        yield
    finally:
        con.execute("RESET SESSION preserve_insertion_order")
