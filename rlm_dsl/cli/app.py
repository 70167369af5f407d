"""The shared Typer application and console helpers every ``rlm`` command module uses.

Command modules register themselves with ``@app.command()`` (or on :data:`models_app`) and raise
:class:`rlm_dsl.errors.RlmError` subclasses for anything the user did wrong; :func:`main` in
:mod:`rlm_dsl.cli.main` turns those into one message on stderr and the documented exit code.
"""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="rlm",
    help="rlm-dsl: declarative Recursive Language Model recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(help="Manage the embedded local model.", no_args_is_help=True)
app.add_typer(models_app, name="models")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors."),
) -> None:
    """rlm-dsl: declarative Recursive Language Model recipes."""
