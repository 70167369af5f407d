"""A run's outcome: the status it ends with, the exit code that tells the truth, the retry hint.

Executor stage (the run contract, ``docs/architecture.md`` "Run outcome"). A run ends ``done``
only when every row of every step was produced; rows whose LM calls failed after their retries
stay open in ``failures`` and make the run ``partial`` — :class:`~rlm_dsl.errors.RowsFailed`,
exit 4, with the finished work kept, a count per step and the command that retries only those
rows. A run that stops on a budget is ``budget`` (exit 3), one that stops on any other error is
``failed`` (its error's exit code), and a run whose process died (SIGKILL, power loss) is marked
``interrupted`` (:func:`~rlm_dsl.runtime.store.queries.mark_interrupted`) when its database is
next opened.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from rlm_dsl.compiler.plan import Plan
from rlm_dsl.errors import BudgetExhausted, RowsFailed
from rlm_dsl.runtime.steps.context import where
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import Store

STATUSES = ("running", "done", "partial", "budget", "failed", "interrupted")


def status_of(error: BaseException | None) -> str:
    """The ``runs.status`` a run ends with after ``error`` (None: it finished)."""
    if error is None:
        return "done"
    if isinstance(error, RowsFailed):
        return "partial"
    if isinstance(error, BudgetExhausted):
        return "budget"
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return "failed"


def open_failures(store: Store, plan: Plan) -> dict[str, list[tuple[str | None, str]]]:
    """Open ``failures`` rows of ``plan``'s steps (sub-recipe rows count for their map step):
    top-level step id → ``(the failed chunk, None for a step-level failure; error)``, in order.
    A chunk is its id, or for a step of a ``use``d recipe ``<chunk> of row <row> (<step>)``."""
    ids = {step.id for step in plan.steps()}
    found: dict[str, list[tuple[str | None, str]]] = {}
    for step, chunk_id, error in queries.open_failure_rows(store):
        top, _, inner = step.partition("__")
        if top in ids:
            row, _, sub_step = inner.partition("__")
            label = None if chunk_id is None else (
                f"{chunk_id} of row {row} ({sub_step})" if inner else str(chunk_id))
            found.setdefault(top, []).append((label, error or ""))
    return found


def rows_failed(plan: Plan, failed: dict[str, list[tuple[str | None, str]]], db: str | None,
                command: Callable[[dict[str, str]], str] | None) -> RowsFailed:
    """The error of a run that finished with open failures: what is missing, the most common
    cause per step, and how to retry."""
    total = sum(len(rows) for rows in failed.values())
    lines = [f"run incomplete: {total} row(s) failed after their retries; "
             "the outputs miss them"]
    for step_id, rows in failed.items():
        ids = [c for c, _ in rows if c is not None]
        shown = ", ".join(ids[:10]) + (f", … ({len(ids) - 10} more)" if len(ids) > 10 else "")
        what = f"{len(ids)} row(s): chunk {shown}" if ids else "the step failed"
        cause, count = Counter(error.splitlines()[0] if error else "" for _, error in rows
                               ).most_common(1)[0]
        lines.append(f"{where(plan.step(step_id))}: {what}")
        lines.append(f"  {'cause' if count == len(rows) else 'most often'}: {cause}")
    if db:
        lines.append(f"finished results are kept in {db} (the failures table lists every row)")
        retry = command({"--retry-failed": ""}) if command else f"db={db!r}, retry_failed=True"
        lines.append(f"retry the failed rows with: {retry}")
    else:
        lines.append("the store was in memory: run again with --db FILE to keep finished work "
                     "and retry only the failed rows")
    return RowsFailed("\n".join(lines))


def with_result(error: BaseException, result: Any) -> BaseException:
    """Attach the run's :class:`~rlm_dsl.runtime.runinfo.RunResult` (outputs so far, summary,
    run id, status) to ``error``, so ``--json`` and API callers see what the run kept."""
    error.result = result  # type: ignore[attr-defined]
    return error
