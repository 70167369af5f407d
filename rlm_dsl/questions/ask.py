"""``rlm ask`` orchestration: profile → plan → check → estimate → (confirm) → run → answer.

Planner stage (``rlm ask``), on top of the compiler and the executor. :func:`plan_question`
profiles the inputs, lets the :class:`~rlm_dsl.questions.planner.Planner` choose a strategy and fill
its slots (its LM calls pass the run's call gate: cached in, counted against and recorded in the
run's store and budget, :mod:`~rlm_dsl.questions.planner_lm`) and returns the checked spec with
its cost forecast (:func:`~rlm_dsl.runtime.estimator.estimate_plan`, plus the
expected wall time for the local model from its measured tokens per second). :func:`ask` then
stops when planning's spend plus the forecast is over the budget (``confirm`` may allow it), runs
the spec with the usual executor into a store (``db``, or a temporary one) on what is left of the
budget, and returns an :class:`AskResult`:
the answer, the ``{source, line, text}`` evidence, the strategy, the spec and the run summary.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import dspy

from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.questions.evidence import answer_value, evidence
from rlm_dsl.questions.planner import Chosen, Planner
from rlm_dsl.questions.planner_lm import (
    PlannerSpend,
    adopt_planner_calls,
    planner_lm,
    remaining,
    spend_of,
)
from rlm_dsl.questions.profile import InputProfile, profile_inputs
from rlm_dsl.questions.speed import expected_wall_s, record_speed
from rlm_dsl.questions.strategies import layout_for
from rlm_dsl.runtime.estimator import estimate_plan
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.lm.resolve import default_model_id, resolve_lm
from rlm_dsl.runtime.module import RecipeModule

DEFAULT_MAX_CALLS = 500
DEFAULT_MAX_TOKENS = 1_000_000


@dataclass
class Planned:
    """A checked plan for a question, with its forecast; nothing spent on the run yet."""

    question: str
    profile: InputProfile
    chosen: Chosen
    model: str
    estimate: Any  # rlm_dsl.runtime.estimate.Estimate
    wall_s: float | None  # expected wall time (local models; None when unknown)
    spend: PlannerSpend = field(default_factory=PlannerSpend)  # what planning cost (spent)
    db: str | None = None  # the store the planner's calls were recorded in

    @property
    def spec(self) -> str:
        return self.chosen.spec

    def forecast(self) -> dict[str, Any]:
        total = self.estimate.to_json()["total"]
        return {"calls": total["calls"], "calls_max": total["calls_max"],
                "tokens": total["tokens"], "tokens_max": total["tokens_max"],
                "cost_usd": total["cost_usd"], "wall_s": self.wall_s,
                "planner_calls": self.spend.calls, "planner_tokens": self.spend.tokens}


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
                  planner: Planner | None = None, spec_dir: str | None = None,
                  db: str | os.PathLike[str] | None = None, max_calls: int | None = None,
                  max_tokens: int | None = None, max_usd: float | None = None,
                  write_spec: bool = False) -> Planned:
    """Profile, plan, check and cost ``question`` over ``paths`` (spends only planner calls,
    gated like a run's over ``db`` — in memory when None — and the caps; see
    :mod:`~rlm_dsl.questions.planner_lm`); the spec's paths are relative to ``spec_dir``, where
    it will be saved (default: here). ``write_spec`` lets the LM write its own spec from the
    chosen template (checked as untrusted; the template runs when it never passes)."""

    model = lm or default_model_id()
    resolved = resolve_lm(model)
    profile = profile_inputs(list(paths))
    layout = layout_for(profile, resolved.context_window)
    planner = planner or Planner()
    budget = Budget(max_calls, max_tokens, max_usd)
    with planner_lm(resolved, db, budget) as (gated, ledger), \
            dspy.context(lm=gated, adapter=RobustAdapter()):
        chosen = planner(question=question, profile=profile, layout=layout, strategy=strategy,
                         use_lm=use_lm, structured=resolved.structured, spec_dir=spec_dir,
                         write=write_spec)
    spend = spend_of(ledger, recorded=db is not None)
    forecast = estimate_plan(chosen.plan, {"docs": list(paths)}, {}, model)
    total = forecast.to_json()["total"]
    wall = expected_wall_s(model, total["prompt_tokens"], total["completion_tokens"])
    return Planned(question, profile, chosen, model, forecast, wall, spend,
                   None if db is None else os.fspath(db))


def over_budget(planned: Planned, max_calls: int | None, max_tokens: int | None,
                max_usd: float | None) -> str | None:
    """Why the forecast exceeds the budget (the defaults when no cap is given), or None."""
    total, spent = planned.estimate.to_json()["total"], planned.spend
    calls_cap = max_calls if max_calls is not None else DEFAULT_MAX_CALLS
    tokens_cap = max_tokens if max_tokens is not None else DEFAULT_MAX_TOKENS
    if spent.calls + total["calls"] > calls_cap:
        return (f"the plan needs about {total['calls']:,} LM calls{_after(spent.calls)}; "
                f"the budget is {calls_cap:,}")
    if spent.tokens + total["tokens"] > tokens_cap:
        return (f"the plan needs about {total['tokens']:,} tokens{_after(spent.tokens)}; "
                f"the budget is {tokens_cap:,}")
    cost = None if total["cost_usd"] is None else total["cost_usd"] + spent.usd
    if max_usd is not None and cost is not None and cost > max_usd:
        return f"the plan costs about ${cost:.4f}; the budget is ${max_usd:.4f}"
    return None


def _after(spent: int) -> str:
    return f" after planning spent {spent:,}" if spent else ""


@contextmanager
def run_store(db: str | os.PathLike[str] | None) -> Iterator[str]:
    """``db``, or a scratch store that is removed afterwards."""
    if db is not None:
        yield os.fspath(db)
        return
    with tempfile.TemporaryDirectory(prefix="rlm-ask-") as scratch:
        yield os.path.join(scratch, "ask.duckdb")


def run_planned(planned: Planned, *, db: str | os.PathLike[str] | None = None,
                max_calls: int | None = None, max_tokens: int | None = None,
                max_usd: float | None = None, concurrency: int = 8,
                confirm: Callable[[str], bool] | None = None,
                allow_weak_sandbox: bool = False) -> AskResult:
    """Run a checked plan (exit 3 first when its forecast is over the budget, unless
    ``confirm(reason)`` allows it; a free-form plan needs a strong REPL sandbox unless
    ``allow_weak_sandbox``). The caps cover planning and the run together; the planner's calls
    are filed under the run when they were recorded in the same store."""
    reason = over_budget(planned, max_calls, max_tokens, max_usd)
    if reason and not (confirm and confirm(reason)):
        raise BudgetExhausted(f"rlm ask: {reason}; nothing was run. Raise --max-calls / "
                              "--max-tokens, or narrow the question or the inputs.")
    spent = planned.spend
    with run_store(db) as store:
        result = RecipeModule(planned.chosen.plan).run(
            inputs={"docs": list(planned.profile.paths)}, lm=planned.model, db=store,
            concurrency=concurrency, max_calls=remaining(max_calls, spent.calls),
            max_tokens=remaining(max_tokens, spent.tokens),
            max_usd=remaining(max_usd, spent.usd), allow_weak_sandbox=allow_weak_sandbox)
        if planned.db is not None and os.path.abspath(planned.db) == os.path.abspath(store):
            adopt_planner_calls(store, spent, result.run_id)
        record_speed(planned.model, store)
        chosen = planned.chosen
        outputs = result.outputs
        answer = answer_value(outputs["answer"] if "answer" in outputs else
                              outputs.get("counts"))
        cited = evidence(store, chosen.strategy, chosen.slots, result.evidence.get("answer"))
    summary = dict(result.summary) | {"strategy": chosen.strategy, "planned_by": chosen.source,
                                      "planner_calls": spent.calls,
                                      "planner_tokens": spent.tokens,
                                      "planner_cache_hits": spent.cache_hits,
                                      "forecast": planned.forecast()}
    return AskResult(answer, cited, chosen.strategy, chosen.spec, summary, outputs,
                     list(chosen.notes) + list(result.warnings))


def ask(question: str, paths: list[str] | str, *, lm: str | None = None,
        db: str | os.PathLike[str] | None = None, strategy: str | None = None,
        max_calls: int | None = None, max_tokens: int | None = None,
        max_usd: float | None = None, concurrency: int = 8, use_planner_lm: bool = True,
        confirm: Callable[[str], bool] | None = None,
        allow_weak_sandbox: bool = False, write_spec: bool = False,
        planner: Planner | None = None) -> AskResult:
    """Answer ``question`` over the files at ``paths`` (files, directories, globs); ``planner``
    (default: a fresh one) may be a tuned one (:mod:`rlm_dsl.questions.tuning`)."""
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    with run_store(db) as store:
        planned = plan_question(question, [os.fspath(p) for p in paths], lm=lm,
                                strategy=strategy, use_lm=use_planner_lm, planner=planner, db=store,
                                max_calls=max_calls, max_tokens=max_tokens, max_usd=max_usd,
                                write_spec=write_spec)
        return run_planned(planned, db=store, max_calls=max_calls, max_tokens=max_tokens,
                           max_usd=max_usd, concurrency=concurrency, confirm=confirm,
                           allow_weak_sandbox=allow_weak_sandbox)
