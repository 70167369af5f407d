"""Why a reduced value is empty: the run summary's answer to "why is the answer null?".

Step-handler stage, read after a run. A ``concat`` / ``tree`` / ``fold`` / ``vote`` reduce with no
non-null item makes no LM call (:mod:`rlm_dsl.runtime.steps.reduce`); :func:`empty_values` names
each such value and walks up the plan to the first step that lost the rows: a filter that kept
none, a map whose rows all failed, an input with no rows, or values that are all null (not found,
or not grounded in their row's text).
"""

from __future__ import annotations

from rlm_dsl.compiler.plan import Step
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.evidence import says_nothing
from rlm_dsl.runtime.steps.reduce import source_items
from rlm_dsl.runtime.store.store import quote_ident

REDUCES = frozenset({"concat", "tree", "fold", "vote"})


def empty_values(ctx: RunContext) -> dict[str, str]:
    """Value name → why it is empty, for every LM/vote reduce of the run that had no item."""
    empty: dict[str, str] = {}
    for step in ctx.plan.steps():
        if step.kind != "reduce" or step.strategy not in REDUCES or step.output is None:
            continue
        if not ctx.store.table_exists(ctx.table(step.table)):
            continue  # never ran (a budget stop, a failed step): reported elsewhere
        if not all(says_nothing(item) for item in source_items(ctx, step)):
            continue
        empty[step.output.name] = _why(ctx, step.source or "")
    return empty


def _producer(ctx: RunContext, table: str) -> Step | None:
    return next((s for s in ctx.plan.steps() if s.table == table), None)


def _rows(ctx: RunContext, table: str) -> int:
    name = ctx.table(table)
    if not ctx.store.table_exists(name):
        return 0
    row = ctx.store.con.execute(f"SELECT count(*) FROM {quote_ident(name)}").fetchone()
    return int(row[0]) if row else 0


def _why(ctx: RunContext, table: str) -> str:
    step = _producer(ctx, table)
    if step is None:
        return f"'{table}' has no rows"
    rows = _rows(ctx, table)
    if rows:
        name = step.output.name if step.output else table
        return f"all {rows} values of '{name}' are null or empty (not found or not grounded)"
    if step.kind == "input":
        return f"input '{step.name}' is empty"
    before = _rows(ctx, step.source or "")
    if not before:
        return _why(ctx, step.source or "")
    if step.kind == "filter":
        return f"filter '{step.id}' kept none of {before} rows"
    failed = ctx.store.con.execute(
        "SELECT count(DISTINCT chunk_id) FROM failures WHERE step = ? AND NOT resolved",
        [ctx.key(step)]).fetchone()
    if failed and failed[0] and int(failed[0]) >= before:
        return f"all {before} rows of '{step.id}' failed"
    return f"'{step.id}' wrote no row for its {before} source rows"
