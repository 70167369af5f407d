"""``rlm ask`` orchestration: profile → plan → check → estimate → (confirm) → run → answer.

Planner stage (``rlm ask``), on top of the compiler and the executor. :func:`plan_question`
profiles the inputs, lets the :class:`~rlm_dsl.questions.planner.Planner` choose a strategy and fill
its slots (its LM calls go to the run's model directly, outside the run's store) and returns the
checked spec with its cost forecast (:func:`~rlm_dsl.runtime.estimator.estimate_plan`, plus the
expected wall time for the local model from its measured tokens per second). :func:`ask` then
stops when the forecast is over the budget (``confirm`` may allow it), runs the spec with the
usual executor into a store (``db``, or a temporary one), and returns an :class:`AskResult`:
the answer, the ``{source, line, text}`` evidence, the strategy, the spec and the run summary.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import dspy

from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.questions.evidence import answer_value, evidence
from rlm_dsl.questions.planner import Chosen, Planner
from rlm_dsl.questions.profile import InputProfile, profile_inputs
from rlm_dsl.questions.speed import expected_wall_s, record_speed
from rlm_dsl.questions.strategies import layout_for
from rlm_dsl.runtime.estimator import estimate_plan
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.resolve import default_model_id, resolve_lm
from rlm_dsl.runtime.module import RecipeModule

DEFAULT_MAX_CALLS = 500
DEFAULT_MAX_TOKENS = 1_000_000
PLANNER_TOKENS = 160  # a strategy, a few keywords and labels


@dataclass
class Planned:
    """A checked plan for a question, with its forecast; nothing spent on the run yet."""

    question: str
    profile: InputProfile
    chosen: Chosen
    model: str
    estimate: Any  # rlm_dsl.runtime.estimate.Estimate
    wall_s: float | None  # expected wall time (local models; None when unknown)

    @property
    def spec(self) -> str:
        return self.chosen.spec

    def forecast(self) -> dict[str, Any]:
        total = self.estimate.to_json()["total"]
        return {"calls": total["calls"], "calls_max": total["calls_max"],
                "tokens": total["tokens"], "tokens_max": total["tokens_max"],
                "cost_usd": total["cost_usd"], "wall_s": self.wall_s}


@dataclass
class AskResult:
    answer: Any
    evidence: list[dict[str, Any]]
    strategy: str
    spec: str
    summary: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "evidence": self.evidence, "strategy": self.strategy,
                "spec": self.spec, "summary": self.summary}


def plan_question(question: str, paths: list[str], lm: str | None = None,
                  strategy: str | None = None, use_lm: bool = True,
                  planner: Planner | None = None, spec_dir: str | None = None) -> Planned:
    """Profile, plan, check and cost ``question`` over ``paths`` (spends only planner calls);
    the spec's paths are relative to ``spec_dir``, where it will be saved (default: here)."""

    model = lm or default_model_id()
    resolved = resolve_lm(model)
    profile = profile_inputs(list(paths))
    layout = layout_for(profile, resolved.context_window)
    planner = planner or Planner()
    planner_lm = resolved.make_lm(num_retries=0, temperature=0, max_tokens=PLANNER_TOKENS)
    with dspy.context(lm=planner_lm, adapter=RobustAdapter()):
        chosen = planner(question=question, profile=profile, layout=layout, strategy=strategy,
                         use_lm=use_lm, structured=resolved.structured, spec_dir=spec_dir)
    chosen = replace(chosen, lm_calls=len(planner_lm.history),
                     lm_tokens=sum(int((h.get("usage") or {}).get("total_tokens") or 0)
                                   for h in planner_lm.history))
    forecast = estimate_plan(chosen.plan, {"docs": list(paths)}, {}, model)
    total = forecast.to_json()["total"]
    wall = expected_wall_s(model, total["prompt_tokens"], total["completion_tokens"])
    return Planned(question, profile, chosen, model, forecast, wall)


def over_budget(planned: Planned, max_calls: int | None, max_tokens: int | None,
                max_usd: float | None) -> str | None:
    """Why the forecast exceeds the budget (the defaults when no cap is given), or None."""
    total = planned.estimate.to_json()["total"]
    calls_cap = max_calls if max_calls is not None else DEFAULT_MAX_CALLS
    tokens_cap = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if total["calls"] > calls_cap:
        return f"the plan needs about {total['calls']:,} LM calls; the budget is {calls_cap:,}"
    if total["tokens"] > tokens_cap:
        return f"the plan needs about {total['tokens']:,} tokens; the budget is {tokens_cap:,}"
    cost = total["cost_usd"]
    if max_usd is not None and cost is not None and cost > max_usd:
        return f"the plan costs about ${cost:.4f}; the budget is ${max_usd:.4f}"
    return None


def run_planned(planned: Planned, *, db: str | os.PathLike[str] | None = None,
                max_calls: int | None = None, max_tokens: int | None = None,
                max_usd: float | None = None, concurrency: int = 8,
                confirm: Callable[[str], bool] | None = None,
                allow_weak_sandbox: bool = False) -> AskResult:
    """Run a checked plan (exit 3 first when its forecast is over the budget, unless
    ``confirm(reason)`` allows it; a free-form plan needs a strong REPL sandbox unless
    ``allow_weak_sandbox``)."""
    reason = over_budget(planned, max_calls, max_tokens, max_usd)
    if reason and not (confirm and confirm(reason)):
        raise BudgetExhausted(f"rlm ask: {reason}; nothing was run. Raise --max-calls / "
                              "--max-tokens, or narrow the question or the inputs.")
    with tempfile.TemporaryDirectory(prefix="rlm-ask-") as scratch:
        store = os.fspath(db) if db is not None else os.path.join(scratch, "ask.duckdb")
        result = RecipeModule(planned.chosen.plan).run(
            inputs={"docs": list(planned.profile.paths)}, lm=planned.model, db=store,
            concurrency=concurrency, max_calls=max_calls, max_tokens=max_tokens,
            max_usd=max_usd, allow_weak_sandbox=allow_weak_sandbox)
        record_speed(planned.model, store)
        chosen = planned.chosen
        outputs = result.outputs
        answer = answer_value(outputs["answer"] if "answer" in outputs else
                              outputs.get("counts"))
        cited = evidence(store, chosen.strategy, chosen.slots, result.evidence.get("answer"))
    summary = dict(result.summary) | {"strategy": chosen.strategy, "planned_by": chosen.source,
                                      "planner_calls": chosen.lm_calls,
                                      "planner_tokens": chosen.lm_tokens,
                                      "forecast": planned.forecast()}
    return AskResult(answer, cited, chosen.strategy, chosen.spec, summary, outputs,
                     list(chosen.notes) + list(result.warnings))


def ask(question: str, paths: list[str] | str, *, lm: str | None = None,
        db: str | os.PathLike[str] | None = None, strategy: str | None = None,
        max_calls: int | None = None, max_tokens: int | None = None,
        max_usd: float | None = None, concurrency: int = 8, use_planner_lm: bool = True,
        confirm: Callable[[str], bool] | None = None,
        allow_weak_sandbox: bool = False) -> AskResult:
    """Answer ``question`` over the files at ``paths`` (files, directories, globs)."""
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    planned = plan_question(question, [os.fspath(p) for p in paths], lm=lm, strategy=strategy,
                            use_lm=use_planner_lm)
    return run_planned(planned, db=db, max_calls=max_calls, max_tokens=max_tokens,
                       max_usd=max_usd, concurrency=concurrency, confirm=confirm,
                       allow_weak_sandbox=allow_weak_sandbox)
