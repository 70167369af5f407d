"""A plan's output values read back from the run's store (a map's list, a reduce's one value).

Step-handler stage, after the walk: :func:`read_outputs` is what a run returns, and
:func:`read_value` what a map over a ``use``d recipe stores for each row; :func:`read_evidence`
the rows each output rests on.
"""

from __future__ import annotations

from typing import Any

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.evidence import EVIDENCE_COLUMN


def read_outputs(ctx: RunContext) -> dict[str, Any]:
    """Each output value of the plan, read from the store (missing → None)."""
    return {name: read_value(ctx, ctx.plan.producer(name)) for name in ctx.plan.outputs}


def read_evidence(ctx: RunContext) -> dict[str, list[dict[str, Any]]]:
    """Each output's evidence rows, for outputs whose step wrote an ``evidence`` column."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name in ctx.plan.outputs:
        table = ctx.table(ctx.plan.producer(name).table)
        if ctx.store.table_exists(table) and any(
                column == EVIDENCE_COLUMN for column, _ in ctx.store.columns(table)):
            rows = ctx.store.rows(table)
            found[name] = list(rows[0][EVIDENCE_COLUMN] or []) if rows else []
    return found


def read_value(ctx: RunContext, step: Step) -> Any:
    """The value of ``step`` in the one shape ``outputs`` uses (``docs/language.md``): a map's
    values as a list in row order (filtered or not), a reduce's or rlm's value itself, and the
    rows (records) of an input, chunk or untyped ``reduce … by sql`` table."""
    table = ctx.table(step.table)
    if not ctx.store.table_exists(table):
        return None
    rows = ctx.store.rows(table, order_by="id" if _has_id(ctx, table) else None)
    origin = _value_origin(ctx.plan, step)
    if origin.output is not None and origin.kind in ("reduce", "rlm"):
        return rows[0][origin.output.name] if rows else None
    if origin.output is not None and origin.kind == "map":
        return [row[origin.output.name] for row in rows]
    return rows


def _value_origin(plan: Plan, step: Step) -> Step:
    """The step that made the value column a filter passes on (a filter keeps its source's)."""
    while step.kind == "filter":
        parents = plan.parents(step.id)
        if len(parents) != 1:
            break
        step = parents[0]
    return step


def _has_id(ctx: RunContext, table: str) -> bool:
    return any(name == "id" for name, _ in ctx.store.columns(table))
