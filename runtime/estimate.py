"""Cost forecast (``rlm plan --estimate``): LM calls, tokens and dollars per step, before a run.

Estimation stage beside the executor. :func:`estimate_plan` walks the plan in the executor's
order over an in-memory store: inputs are loaded with :func:`~rlm_dsl.runtime.inputs.load_input`
and chunked with :func:`~rlm_dsl.runtime.chunkers.chunk` exactly as a run does, SQL and regex
filters run for real, and every LM step's prompts are rendered with the real Jinja2 templates
and counted with the bound LM's own counter plus the adapter's fixed text. A map or LM filter
costs one call per row, plus the split recursion of a row whose prompt does not fit the window;
a tree reduce is simulated level by level with the executor's batching (fan-in *and* fit);
concat is one call (a tree when it does not fit); fold one call per item; sql and vote none; a
``use``d recipe is estimated per row. Values an LM would produce are stood in for by typed
placeholders sized by :mod:`rlm_dsl.runtime.estimate_values`, so downstream prompts are counted
too. Only what cannot be known is a range: rows after an LM filter (all kept … none kept) and
``rlm`` steps (one REPL turn … every iteration and ``max_llm_calls`` sub-calls).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

from rich.console import Console
from rich.table import Table

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.compiler.types import Prim
from rlm_dsl.errors import LMError
from rlm_dsl.runtime.estimate_values import placeholder, profile_for, write_values
from rlm_dsl.runtime.store import Store, quote_ident

RLM_TURN_TOKENS = 1500  # an rlm action prompt: instructions, tool docs, context metadata
RLM_HISTORY_TOKENS = 300  # what each REPL turn adds to the next action prompt
RLM_ANSWER_TOKENS = 150
SAMPLE = 400  # rows whose prompts are rendered and counted; more rows are scaled from these


@dataclass
class StepEstimate:
    step: str
    kind: str
    strategy: str | None
    model: str | None = None
    rows: int | None = None
    calls: int = 0
    calls_min: int = 0
    calls_max: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_min: int = 0
    tokens_max: int = 0
    cost_usd: float | None = None
    note: str = ""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "kind": self.kind, "strategy": self.strategy,
                "model": self.model, "rows": self.rows, "calls": self.calls,
                "calls_min": self.calls_min, "calls_max": self.calls_max,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "tokens": self.tokens, "tokens_min": self.tokens_min,
                "tokens_max": self.tokens_max, "cost_usd": self.cost_usd, "note": self.note}


@dataclass
class Estimate:
    recipe: str
    steps: list[StepEstimate] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def total(self, name: str) -> Any:
        if name == "cost_usd":
            costs = [s.cost_usd for s in self.steps if s.calls_max]
            return None if any(c is None for c in costs) else round(sum(costs), 6)
        return sum(getattr(s, name) for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        keys = ("calls", "calls_min", "calls_max", "prompt_tokens", "completion_tokens", "tokens",
                "tokens_min", "tokens_max", "cost_usd")
        return {"recipe": self.recipe, "steps": [s.to_json() for s in self.steps],
                "total": {k: self.total(k) for k in keys}, "notes": self.notes}

    def versus(self, summary: dict[str, Any]) -> str:
        """One line setting this estimate beside a finished run's summary (calls, tokens)."""
        parts = []
        for name in ("calls", "tokens"):
            guess, actual = self.total(name), int(summary.get(name) or 0)
            off = f" ({(guess - actual) / actual:+.0%})" if actual else ""
            parts.append(f"{name} {guess:,} estimated, {actual:,} actual{off}")
        return "estimate vs actual: " + " · ".join(parts)

    def render(self, console: Console) -> None:
        table = Table(title=f"estimate: {self.recipe}", title_justify="left")
        for name in ("step", "rows", "calls", "tokens", "cost"):
            table.add_column(name, justify="left" if name == "step" else "right")
        for s in self.steps:
            table.add_row(s.step, _n(s.rows), _span(s.calls, s.calls_min, s.calls_max),
                          _span(s.tokens, s.tokens_min, s.tokens_max),
                          _usd(s.cost_usd) if s.calls_max else "")
        table.add_row("total", "", _span(*(self.total(k) for k in ("calls", "calls_min",
                                                                    "calls_max"))),
                      _span(*(self.total(k) for k in ("tokens", "tokens_min", "tokens_max"))),
                      _usd(self.total("cost_usd")), style="bold")
        console.print(table)
        for s in self.steps:
            if s.note:
                console.print(f"{s.step}: {s.note}", markup=False, highlight=False)
        for note in self.notes:
            console.print(f"note: {note}", markup=False, highlight=False)


def _span(value: int, low: int, high: int) -> str:
    """``value``, with its range when it has one: ``4 (0-12)``."""
    return str(value) if low == value == high else f"{value} ({low}-{high})"


def _n(value: int | None) -> str:
    return "" if value is None else str(value)


def _usd(value: float | None) -> str:
    return "unknown (no price)" if value is None else f"${value:.4f}"


def estimate_plan(plan: Plan, inputs: dict[str, str], params: dict[str, str],
                  lm: str | None, lm_all: bool = False) -> Estimate:
    """Forecast ``plan`` over ``inputs`` (name → path) and ``params`` with default LM ``lm``
    (``lm_all``: ``lm`` for every step, bindings included — as ``rlm run`` binds them)."""
    from rlm_dsl.runtime.runinfo import check_inputs, coerce_params

    check_inputs(plan, inputs)
    estimate = Estimate(plan.recipe)
    with Store.open(None) as store:
        walker = _Walker(plan, store, coerce_params(plan, dict(params)), lm, estimate)
        walker.lm_all = lm_all
        walker.walk(dict(inputs))
    return estimate


class _Walker:
    """One walk over a plan (or a ``use``d sub-plan, with a table prefix)."""

    def __init__(self, plan: Plan, store: Store, params: dict[str, Any], lm: str | None,
                 estimate: Estimate, prefix: str = "") -> None:
        self.plan, self.store, self.params, self.lm = plan, store, params, lm
        self.lm_all = False  # ``lm`` replaces the bindings too
        self.estimate, self.prefix = estimate, prefix
        self.uncertain: set[str] = set()  # tables whose row count depends on an LM filter
        self.row: dict[str, Any] | None = None
        self._bound: dict[str | None, Any] = {}

    def walk(self, inputs: dict[str, Any]) -> list[StepEstimate]:
        out = []
        for step in self.plan.steps():
            local = replace(step, table=self.prefix + step.table,
                            source=self.prefix + step.source if step.source else None)
            result = self.one(local, step, inputs)
            if step.source and self.prefix + step.source in self.uncertain:
                self.uncertain.add(local.table)
                result.calls_min = result.tokens_min = 0
            _note_caps(step, result)
            out.append(result)
        if not self.prefix:
            self.estimate.steps.extend(out)
        return out

    def one(self, local: Step, step: Step, inputs: dict[str, Any]) -> StepEstimate:
        from rlm_dsl.runtime.estimate_steps import estimate_step

        return estimate_step(self, local, step, inputs)

    def value(self, step: Step, kind: str) -> Any:
        """A placeholder answer of ``step``'s output type, sized for its LM."""
        assert step.output is not None
        model = self.bound(step).resolved.model_id
        return placeholder(step.output.type, kind, profile_for(model))

    def bound(self, step: Step) -> Any:
        """The step's :class:`~rlm_dsl.runtime.steps.context.BoundLM` (no engine is called)."""
        if step.lm not in self._bound:
            self._bound[step.lm] = self._resolve(step.lm)
        return self._bound[step.lm]

    def _resolve(self, name: str | None) -> Any:
        from rlm_dsl.runtime.lm.resolve import default_model_id, resolve_lm
        from rlm_dsl.runtime.steps.context import BoundLM

        binding = next((b for b in self.plan.lms if b.name == name), None) if name else None
        given = self.lm is not None and (binding is None or self.lm_all)
        model = self.lm if given else _model_of(binding, default_model_id())
        options = {} if given or binding is None else dict(binding.options)
        for key in ("rpm", "tpm", "concurrency"):
            options.pop(key, None)
        try:
            resolved = resolve_lm(model, options)
        except LMError as exc:
            return self._fallback(model, exc)
        return BoundLM(resolved=resolved, lm=None)  # type: ignore[arg-type]

    def _fallback(self, model: str, exc: LMError) -> Any:
        from rlm_dsl.runtime.lm.resolve import DEFAULT_CONTEXT_WINDOW, ResolvedLM
        from rlm_dsl.runtime.steps.context import BoundLM

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


def _model_of(binding: Any, default: str) -> str:
    if binding is None:
        return default
    if binding.env and os.environ.get(binding.env, "").strip():
        return os.environ[binding.env].strip()
    return binding.model or default


def filter_sql(walker: _Walker, local: Step, render: Any) -> None:
    """``filter … where sql`` / ``regex``: the same statement the executor runs."""
    source = quote_ident(local.source or "")
    if local.strategy == "sql":
        where, args = f"({render(local.args[0])})", []
    else:
        where, args = "regexp_matches(text, ?)", [local.args[0]]
    with walker.store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(local.table)} AS "
                    f"SELECT * FROM {source} WHERE {where} ORDER BY id", args)


def out_type(step: Step) -> Any:
    return Prim("bool") if step.kind == "filter" else step.output.type  # type: ignore[union-attr]


__all__ = ["Estimate", "StepEstimate", "estimate_plan"]
