"""A plan's output values read back from the run's store (a map's list, a reduce's one value).

Step-handler stage, after the walk: :func:`read_outputs` is what a run returns, and
:func:`read_value` what a map over a ``use``d recipe stores for each row.
"""

from __future__ import annotations

from typing import Any

from rlm_dsl.compiler.plan import Step
from rlm_dsl.runtime.steps.context import RunContext


def read_outputs(ctx: RunContext) -> dict[str, Any]:
    """Each output value of the plan, read from the store (missing → None)."""
    return {name: read_value(ctx, ctx.plan.producer(name)) for name in ctx.plan.outputs}


def read_value(ctx: RunContext, step: Step) -> Any:
    table = ctx.table(step.table)
    if not ctx.store.table_exists(table):
        return None
    rows = ctx.store.rows(table, order_by="id" if _has_id(ctx, table) else None)
    if step.output is not None and step.kind in ("reduce", "rlm"):
        return rows[0][step.output.name] if rows else None
    if step.output is not None and step.kind == "map":
        return [row[step.output.name] for row in rows]
    return rows


def _has_id(ctx: RunContext, table: str) -> bool:
    return any(name == "id" for name, _ in ctx.store.columns(table))
