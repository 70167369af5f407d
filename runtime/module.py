"""A compiled recipe as a DSPy module: what ``rlm_dsl.load`` returns and ``rlm optimize`` tunes.

Executor stage, public face. :class:`RecipeModule` holds one DSPy module per LM step in
:attr:`RecipeModule.step_modules` (keyed by step id; steps of ``use``d recipes as
``<alias>/<step id>``), so DSPy optimizers find every map / filter / reduce / rlm predictor by
name and a tuned program runs with its tuned prompts. :meth:`RecipeModule.run` executes the
recipe and returns a :class:`~rlm_dsl.runtime.runinfo.RunResult` (typed outputs + run summary);
:meth:`forward` takes inputs and params as keywords and returns a ``dspy.Prediction`` of the
outputs. It lives in the runtime so that the runtime never imports the public API
(:mod:`rlm_dsl.api` re-exports it).
"""

from __future__ import annotations

import os
from typing import Any

import dspy

from rlm_dsl.compiler.plan import Plan
from rlm_dsl.runtime.executor import RunOptions, RunResult, execute
from rlm_dsl.runtime.handlers import LM_KINDS
from rlm_dsl.runtime.steps.run import step_module

__all__ = ["RecipeModule"]


class RecipeModule(dspy.Module):
    """A compiled recipe as a DSPy module (see the module docstring)."""

    def __init__(self, plan: Plan) -> None:
        super().__init__()
        self.plan = plan
        self.step_modules: dict[str, dspy.Module] = {}
        _collect(plan, "", self.step_modules)

    def run(
        self,
        inputs: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        *,
        lm: str | None = None,
        lm_all: bool = False,
        db: str | os.PathLike[str] | None = None,
        concurrency: int = 8,
        max_calls: int | None = None,
        max_tokens: int | None = None,
        max_usd: float | None = None,
        retry_failed: bool = False,
        executor: str = "local",
        ray_workers: int | None = None,
        timeout: float | None = None,
        allow_weak_sandbox: bool = False,
    ) -> RunResult:
        """Run the recipe; ``inputs`` maps input names to paths (or lists of paths). ``lm`` is
        the default LM (steps without ``using NAME``); with ``lm_all`` it replaces every
        binding too."""
        options = RunOptions(
            inputs=dict(inputs or {}), params=dict(params or {}), lm=lm, lm_all=lm_all,
            db=os.fspath(db) if db is not None else None, concurrency=concurrency,
            max_calls=max_calls, max_tokens=max_tokens, max_usd=max_usd,
            retry_failed=retry_failed, executor=executor, ray_workers=ray_workers,
            timeout=timeout, allow_weak_sandbox=allow_weak_sandbox,
        )
        return execute(self.plan, options, self.step_modules)

    def forward(self, lm: str | None = None, **values: Any) -> dspy.Prediction:
        """Inputs and params by name (``logs="app.log", question="…"``) → the outputs."""
        input_names = {s.name for s in self.plan.steps() if s.kind == "input"}
        inputs = {k: v for k, v in values.items() if k in input_names}
        params = {k: v for k, v in values.items() if k not in input_names}
        result = self.run(inputs=inputs, params=params, lm=lm)
        return dspy.Prediction(**result.outputs)

    def named_parameters(self) -> list[tuple[str, Any]]:
        """Predictors named by step id (``map-incidents.predict``, ``rlm-answer.extract``);
        the names ``dump_state`` / ``load_state`` and DSPy optimizers use."""
        found: list[tuple[str, Any]] = []
        for key, module in self.step_modules.items():
            if not getattr(module, "_compiled", False):
                found.extend((f"{key}.{name}", p) for name, p in module.named_parameters())
        return found

    def deepcopy(self) -> RecipeModule:
        """A new module over the same plan with a copy of every predictor. Step modules hold
        run handles after a run (an rlm step keeps the bound LM's token counter), which
        ``copy.deepcopy`` cannot copy; DSPy optimizers copy programs all the time."""
        twin = RecipeModule(self.plan)
        mine = dict(self.named_parameters())
        for name, predictor in twin.named_parameters():
            if name in mine:
                vars(predictor).update(vars(mine[name].deepcopy()))
        return twin

    def __deepcopy__(self, memo: dict[int, Any]) -> RecipeModule:
        return self.deepcopy()


def _collect(plan: Plan, prefix: str, into: dict[str, dspy.Module]) -> None:
    for step in plan.steps():
        if (step.kind, step.strategy) in LM_KINDS and not step.recipe:
            into[prefix + step.id] = step_module(step, plan.description)
    for alias, sub in plan.uses.items():
        _collect(sub, f"{prefix}{alias}/", into)
