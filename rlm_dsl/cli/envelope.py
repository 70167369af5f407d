"""The one JSON object ``rlm run --json`` prints, on success and on every failure.

CLI stage. Whatever happens — outputs produced, some rows failed (exit 4), a budget stop (3), a
bad input (2), a spec or usage error (1), an internal error (70) or an interrupt (130) — stdout
gets exactly one object with the same keys: ``status``, ``exit_code``, ``run_id``, ``db``,
``outputs``, ``summary``, ``evidence`` (per output, the rows its value rests on, each with its
``source:line`` citation) and ``error`` (null on success; else ``type``, ``message``,
``exit_code`` and whatever the error's own ``to_dict()`` adds, such as the step and chunk).
Keys are null where the run never started (a usage error has no run id).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rlm_dsl.errors import RlmError
from rlm_dsl.runtime.steps.evidence import citation

KEYS = ("status", "exit_code", "run_id", "db", "outputs", "summary", "evidence", "error")


def run_object(result: Any, error: BaseException | None = None, db: str | None = None,
               code: int | None = None) -> dict[str, Any]:
    """The ``--json`` object of a run: ``result`` is its RunResult (None when it never ran);
    ``code`` overrides the exit code derived from ``error`` (usage errors exit 1)."""
    code = exit_code(error) if code is None else code
    status = result.status if result is not None else ("done" if error is None else "failed")
    return {
        "status": "interrupted" if code == 130 else status,
        "exit_code": code,
        "run_id": getattr(result, "run_id", None),
        "db": result.db if result is not None else db,
        "outputs": result.outputs if result is not None else None,
        "summary": result.summary if result is not None else None,
        "evidence": _cited(result.evidence) if result is not None else None,
        "error": error_object(error, code),
    }


def _cited(evidence: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Each output's evidence rows, each with its ``source:line`` citation."""
    return {name: [dict(row, cite=citation(row)) for row in rows]
            for name, rows in evidence.items()}


def error_object(error: BaseException | None, code: int) -> dict[str, Any] | None:
    """``error`` as a JSON object (a structured error's ``to_dict()`` is kept whole)."""
    if error is None:
        return None
    found = {"type": type(error).__name__, "message": _message(error), "exit_code": code}
    to_dict = getattr(error, "to_dict", None)
    if callable(to_dict):
        found.update(to_dict())
    return found


def exit_code(error: BaseException | None) -> int:
    """The exit code ``rlm`` ends with after ``error`` (README "Exit codes")."""
    if error is None:
        return 0
    if isinstance(error, RlmError):
        return error.exit_code
    return 130 if isinstance(error, KeyboardInterrupt) else 70


def write(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def _message(error: BaseException) -> str:
    format_message = getattr(error, "format_message", None)  # click's usage errors
    return str(format_message() if callable(format_message) else error)
