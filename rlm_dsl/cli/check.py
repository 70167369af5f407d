"""``rlm check FILE...``: compile every spec and print all diagnostics of all of them.

Exit 0 when every file compiles, 1 when any has spec errors, 2 when any cannot be read (missing,
a directory, binary, not UTF-8). Diagnostics go to stderr gcc-style; a clean file prints one
``ok`` line with its step count on stdout. ``--json`` prints one object instead: ``exit_code``
and per file ``file``, ``ok``, ``recipe``, ``steps``, ``error`` (an unreadable file) and
``diagnostics`` (``file``, ``line``, ``col``, ``end_line``, ``end_col``, ``severity``,
``message``, ``hint``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from rlm_dsl.cli.app import app
from rlm_dsl.compile import compile_file
from rlm_dsl.errors import InputError, SpecError


@app.command()
def check(
    files: Annotated[list[Path], typer.Argument(help="Spec files (.rlm) to check.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Check specs: every error at once, as file:line:col with a caret and a hint."""
    worst, found = 0, []
    for path in files:
        entry: dict[str, Any] = {"file": str(path), "ok": False, "recipe": None, "steps": None,
                                 "error": None, "diagnostics": []}
        try:
            plan = compile_file(path)
        except InputError as exc:
            entry["error"] = str(exc)
            worst = 2
        except SpecError as exc:
            entry["error"] = str(exc)
            to_dict = getattr(exc, "to_dict", None)
            entry["diagnostics"] = to_dict()["diagnostics"] if callable(to_dict) else []
            worst = max(worst, 1)
        else:
            count = plan.graph.number_of_nodes()
            entry.update(ok=True, recipe=plan.recipe, steps=count)
        found.append(entry)
        if not as_json:
            _print(entry)
    if as_json:
        typer.echo(json.dumps({"exit_code": worst, "files": found}, indent=2))
    raise typer.Exit(worst)


def _print(entry: dict[str, Any]) -> None:
    if entry["ok"]:
        count = entry["steps"]
        typer.echo(f"{entry['file']}: ok (recipe {entry['recipe']}, "
                   f"{count} step{'s' * (count != 1)})")
    else:
        typer.echo(entry["error"], err=True)
