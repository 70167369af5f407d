"""The estimator (``rlm plan --estimate``): walks a plan like the executor, forecasting each step.

Estimation stage beside the executor. :func:`estimate_plan` checks the inputs and params like a
run does, opens an in-memory store and walks the plan in the executor's order; each step is
forecast by the ``estimate`` of its entry in the handler table
(:func:`~rlm_dsl.runtime.handlers.estimate_step`, the per-kind functions in
:mod:`rlm_dsl.runtime.estimate.costs`) and lands in an :class:`~rlm_dsl.runtime.estimate.report.
Estimate`. The walker hands the step functions the LMs they would be bound to (resolved, never
called), typed placeholder answers and the rows of earlier steps; a ``use``d recipe gets a nested
walker per row. A prompt a step already sent (a repeated chunk, the same batch of answers in
another row of a ``use``d recipe) is free, as the run's LM-call cache makes it: placeholder
answers are a function of the prompt they answer, so repeats propagate downstream as in a run.
Steps fed by an LM filter are ranges, and a step whose own ``max_calls`` / ``max_total_tokens``
the forecast exceeds gets a note.
"""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.errors import LMError
from rlm_dsl.runtime.estimate.report import Estimate, StepEstimate
from rlm_dsl.runtime.estimate.values import placeholder, profile_for, write_values
from rlm_dsl.runtime.handlers import estimate_step
from rlm_dsl.runtime.ingest.params import check_inputs, coerce_params
from rlm_dsl.runtime.lm.resolve import DEFAULT_CONTEXT_WINDOW, ResolvedLM, resolve_lm
from rlm_dsl.runtime.runinfo import lm_steps, model_of
from rlm_dsl.runtime.steps.context import BoundLM
from rlm_dsl.runtime.store.store import Store

__all__ = ["estimate_plan"]


def estimate_plan(plan: Plan, inputs: dict[str, str], params: dict[str, str],
                  lm: str | None, lm_all: bool = False, encoding: str | None = None) -> Estimate:
    """Forecast ``plan`` over ``inputs`` (name → path) and ``params`` with default LM ``lm``
    (``lm_all``: ``lm`` for every step, bindings included — as ``rlm run`` binds them;
    ``encoding``: of text, lines and log inputs, as ``rlm run --encoding``)."""
    check_inputs(plan, inputs)
    estimate = Estimate(plan.recipe)
    with Store.open(None) as store:
        walker = _Walker(plan, store, coerce_params(plan, dict(params)), lm, estimate)
        walker.lm_all, walker.encoding = lm_all, encoding
        walker.walk(dict(inputs))
    return estimate


class _Walker:
    """One walk over a plan (or a ``use``d sub-plan, with a table prefix)."""

    def __init__(self, plan: Plan, store: Store, params: dict[str, Any], lm: str | None,
                 estimate: Estimate, prefix: str = "") -> None:
        self.plan, self.store, self.params, self.lm = plan, store, params, lm
        self.lm_all = False  # ``lm`` replaces the bindings too
        self.encoding: str | None = None  # of the plan's own inputs (--encoding)
        self.estimate, self.prefix = estimate, prefix
        self.uncertain: set[str] = set()  # tables whose row count depends on an LM filter
        self.row: dict[str, Any] | None = None
        self.inputs: dict[str, Any] = {}
        self._bound: dict[str | None, Any] = {}
        self.seen: set[str] = set()  # prompts already counted: the run's cache answers repeats

    def nested(self, plan: Plan, params: dict[str, Any], prefix: str, row: dict[str, Any]
               ) -> _Walker:
        """A walker over a ``use``d sub-plan for one row of its map (tables under ``prefix``)."""
        inner = _Walker(plan, self.store, params, self.lm, self.estimate, prefix=prefix)
        inner.row, inner.lm_all, inner.seen = row, self.lm_all, self.seen
        return inner

    def lm_steps(self) -> list[Step]:
        return lm_steps(self.plan)

    def walk(self, inputs: dict[str, Any]) -> list[StepEstimate]:
        self.inputs = inputs
        out = []
        for step in self.plan.steps():
            local = replace(step, table=self.prefix + step.table,
                            source=self.prefix + step.source if step.source else None)
            result = estimate_step(self, local, step)
            if step.source and self.prefix + step.source in self.uncertain:
                self.uncertain.add(local.table)
                result.calls_min = result.tokens_min = 0
            _note_caps(step, result)
            out.append(result)
        if not self.prefix:
            self.estimate.steps.extend(out)
        return out

    def value(self, step: Step, kind: str, prompt: str | None = None) -> Any:
        """A placeholder answer of ``step``'s output type, sized for its LM; given the
        ``prompt`` it answers, the same prompt gets the same answer and others another."""
        assert step.output is not None
        model = self.bound(step).resolved.model_id
        seed = None if prompt is None else zlib.crc32(prompt.encode())
        return placeholder(step.output.type, kind, profile_for(model), seed)

    def fresh(self, step: Step, prompt: str) -> bool:
        """Whether ``step``'s ``prompt`` costs a call: False when the same step (of any row of
        a ``use``d recipe) sent the same prompt before — the run's LM-call cache answers it."""
        key = f"{self.plan.recipe}\0{step.id}\0{self.bound(step).resolved.model_id}\0{prompt}"
        if key in self.seen:
            return False
        self.seen.add(key)
        return True

    def bound(self, step: Step) -> Any:
        """The step's :class:`~rlm_dsl.runtime.steps.context.BoundLM` (no engine is called)."""
        if step.lm not in self._bound:
            self._bound[step.lm] = self._resolve(step.lm)
        return self._bound[step.lm]

    def _resolve(self, name: str | None) -> Any:
        binding = next((b for b in self.plan.lms if b.name == name), None) if name else None
        given = self.lm is not None and (binding is None or self.lm_all)
        model = self.lm if given else model_of(binding)
        options = {} if given or binding is None else dict(binding.options)
        for key in ("rpm", "tpm", "concurrency"):
            options.pop(key, None)
        try:
            resolved = resolve_lm(model, options)
        except LMError as exc:
            return self._fallback(model, exc)
        return BoundLM(resolved=resolved, lm=None)  # type: ignore[arg-type]

    def _fallback(self, model: str, exc: LMError) -> Any:
        note = (f"model '{model}' could not be resolved ({exc}); assuming a "
                f"{DEFAULT_CONTEXT_WINDOW}-token window, the offline token counter, no price")
        if note not in self.estimate.notes:
            self.estimate.notes.append(note)
        resolved = ResolvedLM(model_id=model, engine=None, context_window=DEFAULT_CONTEXT_WINDOW)
        return BoundLM(resolved=resolved, lm=None)  # type: ignore[arg-type]

    def rows(self, table: str) -> list[dict[str, Any]]:
        if not self.store.table_exists(table):
            return []
        return self.store.rows(table, order_by="id")

    def keep_values(self, step: Step, local: Step, values: list[tuple[int, Any]]) -> None:
        """Write placeholder results of an LM step so later steps read typed rows."""
        assert step.output is not None
        write_values(self.store, local.table, step.output.name, step.output.type, values)


def _note_caps(step: Step, result: StepEstimate) -> None:
    """Say when the step's own budget (``max_calls``, ``max_total_tokens``) would stop the run."""
    caps = (("max_calls", result.calls, "calls"), ("max_total_tokens", result.tokens, "tokens"))
    for option, need, what in caps:
        cap = step.options.get(option)
        if cap is not None and need > cap:
            stop = (f"its {option}={cap} stops the run (exit 3) before the {need:,} {what} "
                    "estimated")
            result.note = f"{result.note}; {stop}" if result.note else stop
