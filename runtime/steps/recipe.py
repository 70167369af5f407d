"""Recipes calling recipes: a map step that runs a ``use``d recipe once per source row.

Step-handler stage. For each row, the sub-recipe's plan (``plan.uses[alias]``) runs in the same
store and under the same budget and LMs, with its tables prefixed ``<step id>__<row id>__``
(so ``map-ticket_summaries__3__parts`` holds the chunks of row 3) and its params from the step's
``params={...}`` option. The sub-recipe's first input is the row's ``text`` — as lines for line
inputs, else one record — and its first output becomes the row's value in the step's table. Rows
already done are skipped on resume; a sub-run that fails goes to ``failures`` like any row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.errors import RlmError
from rlm_dsl.runtime.ingest.params import coerce_params
from rlm_dsl.runtime.lm.gate import call_scope
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.map import ensure_table, pending_rows
from rlm_dsl.runtime.steps.outputs import read_value
from rlm_dsl.runtime.store.store import quote_ident

LINE_INPUTS = ("text", "lines", "stdin", "log")


def run_recipe_map(ctx: RunContext, step: Step, sub_run: Callable[[RunContext, Plan], None]
                   ) -> int:
    assert step.output is not None and step.recipe is not None
    sub = ctx.plan.uses[step.recipe]
    target = ctx.table(step.table)
    ensure_table(ctx, target, step.output.name, step.output.type)
    rows, _ = pending_rows(ctx, step, target)
    params = coerce_params(sub, dict(step.options.get("params") or {}))
    ctx.tick(step, 0, len(rows))
    for row in rows:
        prefix = f"{ctx.prefix}{step.id}__{row['id']}__"
        sctx = replace(ctx, plan=sub, prefix=prefix, params=params, row=row,
                       modules_prefix=f"{ctx.modules_prefix}{step.recipe}/")
        try:
            with call_scope(step=ctx.key(step), chunk_id=int(row["id"])):
                sub_run(sctx, sub)
        except RlmError as exc:
            ctx.fail(step, int(row["id"]), f"sub-recipe '{step.recipe}': {exc}", None, 1)
            continue
        value = read_value(sctx, sub.producer(sub.outputs[0])) if sub.outputs else None
        ctx.writer.add(target, {"id": row["id"], step.output.name: value})
        ctx.tick(step)
    ctx.writer.flush()
    return len(rows)


def row_input(ctx: RunContext, step: Step, row: dict[str, Any]) -> int:
    """Write the sub-recipe input table of ``step`` from the parent ``row``."""
    text = str(row.get("text") or "")
    source = f"{row.get('source') or 'row'}#{row['id']}"
    table = quote_ident(step.table)
    with ctx.store.write() as con:
        if step.strategy in LINE_INPUTS:
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT CAST(i - 1 AS BIGINT) AS id, "
                "CAST(? AS VARCHAR) AS source, CAST(i AS BIGINT) AS line_no, "
                "CAST(NULL AS BIGINT) AS byte_offset, l[i] AS text "
                "FROM (SELECT string_split(?, chr(10)) AS l), range(1, len(l) + 1) t(i) "
                "ORDER BY i", [source, text])
        else:
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT CAST(0 AS BIGINT) AS id, "
                "CAST(? AS VARCHAR) AS source, CAST(1 AS BIGINT) AS line_no, "
                "CAST(? AS VARCHAR) AS text", [source, text])
    return ctx.store.count(step.table)
