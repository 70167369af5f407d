"""``rlm ingest DB FILES...``: parse log files into a table of a DuckDB database file.

The CLI face of the log-ingest stage (:mod:`rlm_dsl.runtime.logs`). A new table is created; an
existing one gets only the lines each source gained since (so re-running on a growing log is
cheap), and new files in full. DuckDB's memory is capped (``--memory-limit``, 1GB by default),
so multi-GB inputs spill to disk instead of growing the process. Prints one row per file
(format, rows, parse errors, problems) and a total with the throughput; unreadable input exits 2
after keeping what could be read.
"""

from __future__ import annotations

import os
from typing import Annotated

import duckdb
import typer
from rich.table import Table

from rlm_dsl.cli.app import app, out
from rlm_dsl.errors import InputError, SpecError
from rlm_dsl.runtime.logs import LoadReport, LogIngestError, load_log
from rlm_dsl.runtime.logs.formats import sql_str
from rlm_dsl.runtime.logs.load import expand_paths
from rlm_dsl.runtime.store.store import Store


@app.command()
def ingest(
    db: Annotated[str, typer.Argument(help="DuckDB database file (created if missing).")],
    files: Annotated[list[str], typer.Argument(help="Log files, directories or globs (.gz ok).")],
    format: Annotated[
        str | None, typer.Option("--format", help="Force one log format (default: detect).")
    ] = None,
    table: Annotated[str, typer.Option("--table", help="Table to create or append to.")] = "logs",
    dedup: Annotated[
        bool, typer.Option("--dedup", help="Collapse repeated message templates.")
    ] = False,
    memory_limit: Annotated[
        str, typer.Option("--memory-limit", help="DuckDB memory limit; larger input spills.")
    ] = "1GB",
    encoding: Annotated[str | None, typer.Option(
        "--encoding", help="The files' encoding: utf-8, utf-16 or latin-1 (default: UTF-8, and "
        "a file that is not is read as Latin-1 with a note).")] = None,
) -> None:
    """Parse log files into a DuckDB table (appends only new lines to an existing table)."""
    if os.path.isdir(db):
        raise InputError(f"{db}: is a directory, not a DuckDB database")
    own = {os.path.abspath(db), os.path.abspath(db) + ".wal"}  # e.g. `rlm ingest logs.duckdb .`
    paths = [p for p in expand_paths(files) if os.path.abspath(p) not in own]
    with Store.open(db) as store:
        _limit_memory(store, memory_limit)
        append = store.table_exists(table)
        try:
            report = load_log(store, table, paths, format=format, dedup=dedup, incremental=append,
                              encoding=encoding)
        except LogIngestError as exc:
            _show(exc.report, db, append)
            raise
        _show(report, db, append)


def _limit_memory(store: Store, limit: str) -> None:
    try:
        store.con.execute(f"SET memory_limit = {sql_str(limit)}")
    except duckdb.Error:
        raise SpecError(f"--memory-limit: not a memory size: '{limit}' (e.g. 1GB, 512MB)") from None


def _show(report: LoadReport, db: str, append: bool) -> None:
    grid = Table("file", "format", "rows", "parse errors", "note", box=None)
    for f in report.files:
        note = f.error or f.note
        grid.add_row(f.source, f.format or "-", str(f.rows), str(f.parse_errors), note)
    out.print(grid)
    size = sum(os.path.getsize(f.source) for f in report.files) / 1e6
    speed = size / report.seconds if report.seconds else 0.0
    verb = "appended" if append else "ingested"
    formats = ", ".join(sorted({f.format for f in report.files if f.format})) or "-"
    out.print(
        f"{verb} {report.rows} rows from {len(report.files)} file(s) into {db}:{report.table} "
        f"(formats: {formats}; parse errors: {report.parse_errors}) in {report.seconds:.2f} s "
        f"({size:.1f} MB, {speed:.0f} MB/s)",
        markup=False,
        highlight=False,
    )
