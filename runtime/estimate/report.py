"""Cost forecast report: LM calls, tokens and dollars per step, as a table or JSON.

Estimation stage. :class:`StepEstimate` is one step's forecast and :class:`Estimate` the plan's,
with totals, a Rich table and the line setting it beside a finished run. How it is made:
:func:`~rlm_dsl.runtime.estimator.estimate_plan` walks the plan in the executor's
order over an in-memory store: inputs are loaded with
:func:`~rlm_dsl.runtime.ingest.inputs.load_input`
and chunked with :func:`~rlm_dsl.runtime.ingest.chunkers.chunk` exactly as a run does, SQL and regex
filters run for real, and every LM step's prompts are rendered with the real Jinja2 templates
and counted with the bound LM's own counter plus the adapter's fixed text. A map or LM filter
costs one call per row, plus the split recursion of a row whose prompt does not fit the window;
a tree reduce is simulated level by level with the executor's batching (fan-in *and* fit);
concat is one call (a tree when it does not fit); fold one call per item; sql and vote none; a
``use``d recipe is estimated per row. Values an LM would produce are stood in for by typed
placeholders sized by :mod:`rlm_dsl.runtime.estimate.values`, so downstream prompts are counted
too. Only what cannot be known is a range: rows after an LM filter (all kept … none kept) and
``rlm`` steps (one REPL turn … every iteration and ``max_llm_calls`` sub-calls).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.types import Prim

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


def out_type(step: Step) -> Any:
    return Prim("bool") if step.kind == "filter" else step.output.type  # type: ignore[union-attr]


__all__ = ["Estimate", "StepEstimate"]
