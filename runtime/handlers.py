"""The handler table: one entry per ``(kind, strategy)`` of the plan, to run it and estimate it.

Executor and estimation stages read the same table, the way sqlglot's optimizer reads its
``RULES``: :func:`run_step` (the executor, :mod:`rlm_dsl.runtime.executor`) and
:func:`estimate_step` (``rlm plan --estimate``, :mod:`rlm_dsl.runtime.estimator`) both look a
step up with :func:`handler_for`. Each :class:`Handler` holds the step's ``run``
(:mod:`rlm_dsl.runtime.steps.run`) and its ``estimate`` (:mod:`rlm_dsl.runtime.estimate.costs`)
and says whether the step calls an LM. A map over a ``use``d recipe is keyed
``("map", "recipe")``; a ``None`` strategy matches every strategy of its kind (inputs and
chunkers). Adding a step kind is one entry here plus its two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlm_dsl.compiler.plan import Step
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.estimate import costs
from rlm_dsl.runtime.estimate.report import StepEstimate
from rlm_dsl.runtime.steps import run
from rlm_dsl.runtime.steps.context import RunContext


@dataclass(frozen=True)
class Handler:
    run: Callable[[RunContext, Step, run.Modules, run.SubRun], int | None]
    estimate: Callable[[Any, Step, Step, StepEstimate], None]  # (walker, local, step, result)
    lm: bool = False  # the step calls an LM (bound before the run, one module per step)


HANDLERS: dict[tuple[str, str | None], Handler] = {
    ("input", None): Handler(run.run_input, costs.estimate_input),
    ("chunk", None): Handler(run.run_chunk, costs.estimate_chunk),
    ("filter", "sql"): Handler(run.run_filter_sql, costs.estimate_filter_sql),
    ("filter", "regex"): Handler(run.run_filter_sql, costs.estimate_filter_sql),
    ("filter", "lm"): Handler(run.run_filter_lm, costs.estimate_filter_lm, lm=True),
    ("map", "predict"): Handler(run.run_map, costs.estimate_map, lm=True),
    ("map", "recipe"): Handler(run.run_recipe, costs.estimate_recipe),
    ("reduce", "sql"): Handler(run.run_reduce_sql, costs.estimate_reduce_sql),
    ("reduce", "vote"): Handler(run.run_reduce_vote, costs.estimate_vote),
    ("reduce", "concat"): Handler(run.run_reduce_lm, costs.estimate_reduce_lm, lm=True),
    ("reduce", "tree"): Handler(run.run_reduce_lm, costs.estimate_reduce_lm, lm=True),
    ("reduce", "fold"): Handler(run.run_reduce_lm, costs.estimate_reduce_lm, lm=True),
    ("rlm", "rlm"): Handler(run.run_rlm, costs.estimate_rlm, lm=True),
}

LM_KINDS = frozenset(key for key, handler in HANDLERS.items() if handler.lm)


def handler_for(step: Step) -> Handler:
    """The entry of ``step``: its ``(kind, strategy)``, else its kind's catch-all."""
    key = ("map", "recipe") if step.kind == "map" and step.recipe else (step.kind, step.strategy)
    found = HANDLERS.get(key) or HANDLERS.get((step.kind, None))
    if found is None:
        raise SpecError.for_step(step.id, f"no runtime handler for {step.kind} {step.strategy}")
    return found


def run_step(ctx: RunContext, step: Step, modules: run.Modules, sub_run: run.SubRun
             ) -> int | None:
    """Run ``step``; returns the rows it wrote when that is known."""
    return handler_for(step).run(ctx, step, modules, sub_run)


def estimate_step(walker: Any, local: Step, step: Step) -> StepEstimate:
    """Forecast ``step`` (tables named as in ``local``) on the estimator's ``walker``."""
    result = StepEstimate(step.id, step.kind, step.strategy)
    handler_for(step).estimate(walker, local, step, result)
    if walker.store.table_exists(local.table):
        result.rows = walker.store.count(local.table)
    return result
