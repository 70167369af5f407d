"""``rlm sql DB "query"``: run one SQL query, read-only, on a run or ingest database.

The CLI face of the store for analysts: opens the DuckDB file read-only (so a query can never
change a run's results) and prints the result as a Rich table, CSV or JSON. A missing or
non-DuckDB file is an input error (exit 2); a SQL error is a usage error (exit 1).
"""

from __future__ import annotations

import csv
import io
import json
import os
from typing import Annotated

import duckdb
import typer
from rich.table import Table

from rlm_dsl.cli.app import app, out
from rlm_dsl.errors import InputError, SpecError

FORMATS = ("table", "csv", "json")


@app.command()
def sql(
    db: Annotated[str, typer.Argument(help="DuckDB database file (a run's --db or an ingest).")],
    query: Annotated[str, typer.Argument(help="The SQL query.")],
    format: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
) -> None:
    """Query a run or ingest database (read-only)."""
    if format not in FORMATS:
        raise SpecError(f"unknown output format '{format}'; use one of: {', '.join(FORMATS)}")
    columns, rows = _query(db, query)
    if format == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        typer.echo(buf.getvalue(), nl=False)
    elif format == "json":
        records = [dict(zip(columns, row, strict=True)) for row in rows]
        typer.echo(json.dumps(records, default=str, ensure_ascii=False, indent=2))
    else:
        grid = Table(*columns)
        for row in rows:
            grid.add_row(*("NULL" if v is None else str(v) for v in row))
        out.print(grid)
        out.print(f"{len(rows)} row(s)", highlight=False)


def _query(db: str, query: str) -> tuple[list[str], list[tuple]]:
    if not os.path.isfile(db):
        raise InputError(f"{db}: no such DuckDB database file")
    try:
        con = duckdb.connect(db, read_only=True)
    except duckdb.Error as exc:
        raise InputError(f"{db}: cannot open as a DuckDB database: {_first(exc)}") from None
    try:
        cur = con.execute(query)
        if cur.description is None:
            return [], []
        return [d[0] for d in cur.description], cur.fetchall()
    except duckdb.Error as exc:
        raise SpecError(f"SQL error: {_first(exc)}") from None
    finally:
        con.close()


def _first(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
