"""Running one step: the ``run`` half of each entry of the handler table.

Step-handler stage. :mod:`rlm_dsl.runtime.handlers` keys one entry per ``(kind, strategy)`` of the
Plan contract; the ``run`` of each is a function here with one signature
``(ctx, step, modules, sub_run) -> rows written or None``: inputs and chunks through the ingest
readers and chunkers, SQL and regex filters as one DuckDB statement, LM filters / maps / reduces
through their :class:`~rlm_dsl.runtime.steps.predict.StepModule`, maps over ``use``d recipes
through :mod:`rlm_dsl.runtime.steps.recipe`, and ``rlm`` steps through the REPL module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import dspy

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.compiler.types import Prim
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.ingest.chunkers import chunk
from rlm_dsl.runtime.ingest.inputs import load_input
from rlm_dsl.runtime.lm.gate import call_scope
from rlm_dsl.runtime.lm.tokens import get_counter
from rlm_dsl.runtime.repl.module import RlmStep
from rlm_dsl.runtime.steps import map as map_step
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.incremental import append_log
from rlm_dsl.runtime.steps.predict import BudgetStop, StepModule
from rlm_dsl.runtime.steps.recipe import row_input, run_recipe_map
from rlm_dsl.runtime.steps.reduce import Reducer, run_sql, run_vote, write_value
from rlm_dsl.runtime.store.sql_limit import time_limited
from rlm_dsl.runtime.store.store import quote_ident

SubRun = Callable[[RunContext, Plan], None]
Modules = dict[str, dspy.Module]


def step_module(step: Step, description: str = "") -> dspy.Module:
    """The default DSPy module of an LM step (what ``rlm_dsl.load`` exposes to optimizers)."""
    if step.kind == "rlm":
        return RlmStep(step)
    out = Prim("bool") if step.kind == "filter" else step.output.type  # type: ignore[union-attr]
    return StepModule(step, out, description)


def _local(ctx: RunContext, step: Step) -> Step:
    """``step`` with its tables named as in this context (a ``use``d recipe's row prefix)."""
    return replace(step, table=ctx.table(step.table),
                   source=ctx.table(step.source) if step.source else None)


def module_for(ctx: RunContext, step: Step, modules: Modules) -> Any:
    key = ctx.modules_prefix + step.id
    if key not in modules:
        modules[key] = step_module(step, ctx.plan.description)
    return modules[key]


def run_input(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    step = _local(ctx, step)
    if ctx.row is not None:
        return row_input(ctx, step, ctx.row)
    if ctx.incremental and step.strategy == "log":
        appended = append_log(ctx, step)
        if appended is not None:
            return appended
    load_input(ctx.store, step, ctx.inputs.get(step.name), ctx.warnings, ctx.encoding)
    return ctx.store.count(step.table)


def run_chunk(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    step = _local(ctx, step)
    bound = ctx.lms.get(None) or next(iter(ctx.lms.values()), None)
    counter = bound.resolved.token_counter if bound else get_counter(None)
    chunk(ctx.store, step, step.source or "", counter, ctx.params)
    return ctx.store.count(step.table)


def run_filter_sql(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    step = _local(ctx, step)
    source = quote_ident(step.source or "")
    if step.strategy == "sql":
        predicate = ctx.render(step.args[0])
        where, params = f"({predicate})", []
    else:
        where, params = "regexp_matches(text, ?)", [step.args[0]]
    with ctx.store.write() as con, time_limited(con):
        try:
            con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS "
                        f"SELECT * FROM {source} WHERE {where} ORDER BY id", params)
        except Exception as exc:  # DuckDB binder/parser errors name the column or token
            first = str(exc).strip().splitlines()[0]
            raise SpecError(f"SQL error: {first}") from None
    return ctx.store.count(step.table)


def run_filter_lm(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    return map_step.run_filter_lm(ctx, step, module_for(ctx, step, modules))


def run_map(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    return map_step.run_map(ctx, step, module_for(ctx, step, modules))


def run_recipe(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    return run_recipe_map(ctx, step, sub_run)


def run_reduce_sql(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    run_sql(ctx, step)
    return 1


def run_reduce_vote(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    run_vote(ctx, step)
    return 1


def run_reduce_lm(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    """concat, tree and fold: the reducer batches the items into LM calls."""
    Reducer(ctx, step, module_for(ctx, step, modules)).run()
    return 1


def run_rlm(ctx: RunContext, step: Step, modules: Modules, sub_run: SubRun) -> int:
    root, sub = ctx.lm_for(step), ctx.lms.get(step.sub_lm) or ctx.lm_for(step)
    key = ctx.modules_prefix + step.id
    module = modules.get(key)
    if not isinstance(module, RlmStep):
        module = modules[key] = RlmStep(step)
    module.context_window, module.count_tokens = sub.window, sub.count
    module.max_workers = ctx.concurrency
    try:
        with call_scope(step=ctx.key(step), chunk_id=0, depth=0):
            result = module.run(ctx.store, ctx.table(step.source or ""), ctx.params, root.lm,
                                sub.lm, ctx.ledger.run_id)
    except Exception:
        # The REPL may wrap a refused sub-call in its own error: the budgets decide.
        for budget in ctx.ledger.budgets_for(ctx.key(step)):
            if budget.exhausted is not None:
                raise BudgetStop(budget.exhausted) from None
        raise
    ctx.warnings.extend(result.warnings)
    write_value(ctx, step, result.value)
    return 1
