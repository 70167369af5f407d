"""Step dispatch: one handler per (kind, strategy) of the Plan contract.

Step-handler stage. :func:`run_step` matches a :class:`~rlm_dsl.compiler.plan.Step` and runs it
against the run's store: inputs and chunks through the store engineer's readers and chunkers,
SQL and regex filters as one DuckDB statement, LM filters / maps / reduces through their
:class:`~rlm_dsl.runtime.steps.predict.StepModule`, maps over ``use``d recipes through
:mod:`rlm_dsl.runtime.steps.recipe`, and ``rlm`` steps through the REPL module. A kind the table
does not know raises a named error instead of falling through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import dspy

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.compiler.types import Prim
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.predict import BudgetStop, StepModule
from rlm_dsl.runtime.steps.sql_limit import time_limited
from rlm_dsl.runtime.store import quote_ident

SubRun = Callable[[RunContext, Plan], None]


def step_module(step: Step, description: str = "") -> dspy.Module:
    """The default DSPy module of an LM step (what ``rlm_dsl.load`` exposes to optimizers)."""
    if step.kind == "rlm":
        from rlm_dsl.runtime.repl.module import RlmStep

        return RlmStep(step)
    out = Prim("bool") if step.kind == "filter" else step.output.type  # type: ignore[union-attr]
    return StepModule(step, out, description)


def run_step(ctx: RunContext, step: Step, modules: dict[str, dspy.Module], sub_run: SubRun
             ) -> int | None:
    """Run ``step``; returns the rows it wrote when that is known."""
    local = replace(step, table=ctx.table(step.table),
                    source=ctx.table(step.source) if step.source else None)
    match step.kind, step.strategy:
        case "input", _:
            return _input(ctx, local)
        case "chunk", _:
            return _chunk(ctx, local)
        case "filter", "sql" | "regex":
            return _filter_sql(ctx, local)
        case "filter", "lm":
            from rlm_dsl.runtime.steps.map import run_filter_lm

            return run_filter_lm(ctx, step, _module(ctx, step, modules))
        case "map", _ if step.recipe:
            from rlm_dsl.runtime.steps.recipe import run_recipe_map

            return run_recipe_map(ctx, step, sub_run)
        case "map", _:
            from rlm_dsl.runtime.steps.map import run_map

            return run_map(ctx, step, _module(ctx, step, modules))
        case "reduce", _:
            return _reduce(ctx, step, modules)
        case "rlm", _:
            return _rlm(ctx, step, modules)
    raise SpecError(f"step '{step.id}': no runtime handler for {step.kind} {step.strategy}")


def _module(ctx: RunContext, step: Step, modules: dict[str, dspy.Module]) -> Any:
    key = ctx.modules_prefix + step.id
    if key not in modules:
        modules[key] = step_module(step, ctx.plan.description)
    return modules[key]


def _input(ctx: RunContext, step: Step) -> int:
    if ctx.row is not None:
        from rlm_dsl.runtime.steps.recipe import row_input

        return row_input(ctx, step, ctx.row)
    if ctx.incremental and step.strategy == "log":
        from rlm_dsl.runtime.steps.incremental import append_log

        appended = append_log(ctx, step)
        if appended is not None:
            return appended
    from rlm_dsl.runtime.inputs import load_input

    load_input(ctx.store, step, ctx.inputs.get(step.name))
    return ctx.store.count(step.table)


def _chunk(ctx: RunContext, step: Step) -> int:
    from rlm_dsl.runtime.chunkers import chunk
    from rlm_dsl.runtime.tokens import get_counter

    bound = ctx.lms.get(None) or next(iter(ctx.lms.values()), None)
    counter = bound.resolved.token_counter if bound else get_counter(None)
    chunk(ctx.store, step, step.source or "", counter, ctx.params)
    return ctx.store.count(step.table)


def _filter_sql(ctx: RunContext, step: Step) -> int:
    source = quote_ident(step.source or "")
    if step.strategy == "sql":
        predicate = ctx.render(step.args[0])
        where, params = f"({predicate})", []
    else:
        where, params = "regexp_matches(text, ?)", [step.args[0]]
    with ctx.store.write() as con, time_limited(con, step):
        try:
            con.execute(f"CREATE OR REPLACE TABLE {quote_ident(step.table)} AS "
                        f"SELECT * FROM {source} WHERE {where} ORDER BY id", params)
        except Exception as exc:  # DuckDB binder/parser errors name the column or token
            first = str(exc).strip().splitlines()[0]
            raise SpecError(f"SQL error: {first}") from None
    return ctx.store.count(step.table)


def _reduce(ctx: RunContext, step: Step, modules: dict[str, dspy.Module]) -> int:
    from rlm_dsl.runtime.steps.reduce import Reducer, run_sql, run_vote

    if step.strategy == "sql":
        run_sql(ctx, step)
    elif step.strategy == "vote":
        run_vote(ctx, step)
    else:
        Reducer(ctx, step, _module(ctx, step, modules)).run()
    return 1


def _rlm(ctx: RunContext, step: Step, modules: dict[str, dspy.Module]) -> int:
    from rlm_dsl.runtime.calls import call_scope
    from rlm_dsl.runtime.repl.module import RlmStep
    from rlm_dsl.runtime.steps.reduce import write_value

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
