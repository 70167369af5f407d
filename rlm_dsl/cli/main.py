"""Entry point of the ``rlm`` console script: imports every command module and maps errors.

Errors a user caused are :class:`RlmError`s and print as one message with their exit code; click
usage errors exit 1 (DESIGN §4); anything else is an internal error, shown with a traceback only
under ``--debug`` (or ``RLM_DEBUG=1``), which is accepted before or after the command. ``rlm run
--json`` prints its one JSON object (:mod:`rlm_dsl.cli.envelope`) on every failure too.
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
    args = [a for a in args if a != "--debug"]  # a global flag, wherever it is written
    _load_commands(args)
    failure: BaseException | None = None
    try:
        result = app(args=args, standalone_mode=False, prog_name="rlm")
        code = result if isinstance(result, int) else 0
    except typer.Exit as exc:
        code = exc.exit_code
    except typer.Abort as exc:
        err.print("aborted")
        failure, code = exc, 130
    except typer.TyperException as exc:  # click's usage errors (typer vendors click)
        if callable(getattr(exc, "show", None)):
            exc.show()
        else:
            err.print(f"Error: {exc}", markup=False, highlight=False)
        failure, code = exc, 1
    except RlmError as exc:
        if debug:
            raise
        err.print(str(exc), markup=False, highlight=False)
        failure, code = exc, exc.exit_code
    except KeyboardInterrupt as exc:
        err.print("interrupted")
        failure, code = exc, 130
    except Exception as exc:
        if debug:
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (re-run with --debug)")
        failure, code = exc, 70
    if failure is not None and _run_json(args):
        from rlm_dsl.cli import envelope

        result = getattr(failure, "result", None)
        envelope.write(envelope.run_object(result, failure, _option(args, "--db"), code))
    if argv is None:
        sys.exit(code)
    return code


def _run_json(args: list[str]) -> bool:
    """Whether this is ``rlm run … --json`` (its failures print the JSON object too)."""
    return next((a for a in args if not a.startswith("-")), None) == "run" and "--json" in args


def _option(args: list[str], flag: str) -> str | None:
    """The value given to ``flag`` (``--db x`` or ``--db=x``), None when absent."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.partition("=")[2]
    return None
