"""``rlm check FILE...``: compile every spec and print all diagnostics of all of them.

Exit 0 when every file compiles, 1 when any has spec errors, 2 when any cannot be read (missing,
a directory, binary, not UTF-8). Diagnostics go to stderr gcc-style; a clean file prints one
``ok`` line with its step count on stdout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlm_dsl.cli.app import app
from rlm_dsl.compile import compile_file
from rlm_dsl.errors import InputError, SpecError


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="Spec files (.rlm) to check.")],
) -> None:
    """Check specs: every error at once, as file:line:col with a caret and a hint."""
    worst = 0
    for path in files:
        try:
            plan = compile_file(path)
        except InputError as exc:
            typer.echo(f"{exc}", err=True)
            worst = 2
        except SpecError as exc:
            typer.echo(str(exc), err=True)
            worst = max(worst, 1)
        else:
            count = plan.graph.number_of_nodes()
            typer.echo(f"{path}: ok (recipe {plan.recipe}, {count} step{'s' * (count != 1)})")
    raise typer.Exit(worst)
