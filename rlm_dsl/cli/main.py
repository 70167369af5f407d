"""Entry point of the ``rlm`` console script: imports every command module and maps errors.

Errors a user caused are :class:`RlmError`s and print as one message with their exit code; click
usage errors exit 1 (DESIGN §4); anything else is an internal error, shown with a traceback only
under ``--debug`` (or ``RLM_DEBUG=1``).
"""

from __future__ import annotations

import importlib
import os
import sys

import typer

from rlm_dsl.cli.app import app, err
from rlm_dsl.errors import RlmError

COMMAND_MODULES = ("check", "plan", "run", "ask", "models", "ingest", "sql", "trace",
                   "optimize")


def _load_commands(args: list[str]) -> None:
    """Import the named command's module only (DSPy and LiteLLM take seconds to import), or
    every module when no command is named (``rlm --help``)."""
    named = next((a for a in args if not a.startswith("-")), None)
    for name in (named,) if named in COMMAND_MODULES else COMMAND_MODULES:
        importlib.import_module(f"rlm_dsl.cli.{name}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI and return (and, as a script, exit with) the process exit code."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("RLM_DEBUG") == "1"
    _load_commands(args)
    try:
        result = app(args=args, standalone_mode=False, prog_name="rlm")
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort:
        err.print("aborted")
        code = 130
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        if callable(getattr(exc, "show", None)):
            exc.show()
        else:
            err.print(f"Error: {exc}", markup=False, highlight=False)
        code = 1
    except RlmError as exc:
        if debug:
            raise
        err.print(str(exc), markup=False, highlight=False)
        code = exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        code = 130
    except Exception as exc:
        if debug:
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug)")
        code = 70
    if argv is None:
        sys.exit(code)
    return code
