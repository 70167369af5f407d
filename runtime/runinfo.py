"""A run's edges: options in (inputs, params, LM, budget), LMs bound, summary out.

Executor stage helpers. :class:`RunOptions` is what ``rlm run`` and ``rlm_dsl.load(...).run``
pass (:mod:`rlm_dsl.runtime.ingest.params` checks its inputs and params against the plan);
:func:`bind_lms` resolves every LM binding the plan's steps use — a step without ``using`` gets the
run's default LM (``--lm``, else ``$RLM_LM``, else ``local``); a ``using NAME`` step gets its
binding's ``env(...)`` variable, then its literal, unless ``--lm-all`` replaces every binding —
and wraps each in the call gate; :func:`summarize` builds the run summary and
:func:`summary_line` its one line.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.handlers import LM_KINDS
from rlm_dsl.runtime.lm import ray_engine
from rlm_dsl.runtime.lm.gate import Gate, GatedEngine, RunLedger
from rlm_dsl.runtime.lm.resolve import default_model_id, resolve_lm, takes_timeout
from rlm_dsl.runtime.steps.context import BoundLM, Progress, RunContext
from rlm_dsl.runtime.steps.empties import empty_values
from rlm_dsl.runtime.store import queries


@dataclass
class RunOptions:
    inputs: dict[str, list[str] | str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    lm: str | None = None  # the default LM: for steps without ``using NAME``
    lm_all: bool = False  # ``lm`` also replaces every ``using NAME`` binding (--lm-all)
    lm_options: dict[str, Any] = field(default_factory=dict)  # for ``lm`` (api_base, …)
    db: str | None = None
    concurrency: int = 8
    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    retry_failed: bool = False
    incremental: bool = False  # re-read inputs (logs: only new lines), recompute via the cache
    progress: Progress | None = None
    command: Callable[[dict[str, str]], str] | None = None  # resume command for budget messages
    executor: str = "local"  # "ray": LM calls answered by Ray workers (runtime/lm/ray_engine.py)
    ray_workers: int | None = None  # Ray workers per model (default: the cluster's CPUs)
    allow_weak_sandbox: bool = False  # run `rlm` steps even without kernel isolation (bwrap)
    timeout: float | None = None  # seconds per LM request where a binding sets none (--timeout)
    encoding: str | None = None  # of text, lines and log inputs (--encoding; None: UTF-8)


@dataclass
class RunResult:
    outputs: dict[str, Any]
    summary: dict[str, Any]
    run_id: str
    db: str | None
    warnings: list[str] = field(default_factory=list)
    # output name → the rows its value rests on (reduces that keep evidence; see steps/evidence)
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: str = "done"  # done, partial, budget, failed, interrupted (runtime/outcome.py)

    def summary_line(self) -> str:
        return summary_line(self.summary)


def lm_steps(plan: Plan) -> list[Step]:
    found = [s for s in plan.steps() if (s.kind, s.strategy) in LM_KINDS and not s.recipe]
    for sub in plan.uses.values():
        found.extend(lm_steps(sub))
    return found


def bind_lms(plan: Plan, options: RunOptions, ledger: RunLedger
             ) -> tuple[dict[str | None, BoundLM], list[str]]:
    """Every LM the plan's steps use, resolved and gated; plus warnings for the summary."""
    bindings = {b.name: b for b in _all_bindings(plan)}
    names: set[str | None] = set()
    for step in lm_steps(plan):
        names.add(step.lm)
        if step.kind == "rlm":
            names.add(step.sub_lm)
    bound: dict[str | None, BoundLM] = {}
    warnings: list[str] = []
    by_model: dict[str, BoundLM] = {}
    for name in sorted(names, key=lambda n: n or ""):
        binding = bindings.get(name) if name else None
        given = options.lm is not None and (binding is None or options.lm_all)
        model = options.lm if given else model_of(binding)
        lm_options = dict(options.lm_options if given else binding.options if binding else {})
        if options.timeout is not None and takes_timeout(model):
            lm_options.setdefault("timeout", options.timeout)
        key = f"{model}|{sorted(lm_options.items())}"
        if key not in by_model:
            by_model[key] = _bind(model, lm_options, options, ledger, warnings)
        bound[name] = by_model[key]
    return bound, warnings


def _all_bindings(plan: Plan) -> list[Any]:
    found = list(plan.lms)
    for sub in plan.uses.values():
        found.extend(_all_bindings(sub))
    return found


def model_of(binding: Any) -> str:
    """The model an LM binding names: its ``env(...)`` variable, its literal, the default."""
    if binding is None:
        return default_model_id()
    if binding.env and os.environ.get(binding.env, "").strip():
        return os.environ[binding.env].strip()
    return binding.model or default_model_id()


def _bind(model: str, lm_options: dict[str, Any], options: RunOptions, ledger: RunLedger,
          warnings: list[str]) -> BoundLM:
    rates = {k: lm_options.pop(k) for k in ("rpm", "tpm", "concurrency") if k in lm_options}
    resolved = resolve_lm(model, lm_options)
    engine, most = resolved.engine, resolved.max_concurrency
    if options.executor == "ray":
        engine = ray_engine.RayEngine(model, lm_options, workers=options.ray_workers,
                                      per_worker=resolved.max_concurrency,
                                      concurrency=options.concurrency)
        most = engine.slots
    elif options.executor != "local":
        raise SpecError(f"unknown executor '{options.executor}': use 'local' or 'ray'")
    limit = min(options.concurrency, rates.get("concurrency") or options.concurrency,
                most or options.concurrency)
    if resolved.price is None and options.max_usd is not None:
        warnings.append(f"warning: no price is known for model '{model}': --max-usd cannot "
                        "be enforced for its calls; only call and token caps apply")
    gate = Gate(model=model, ledger=ledger, count_tokens=resolved.count_tokens,
                price=resolved.price, concurrency=limit, rpm=rates.get("rpm"),
                tpm=rates.get("tpm"))
    gated = GatedEngine(engine, gate)
    return BoundLM(resolved=resolved, lm=resolved.make_lm(engine=gated, num_retries=0),
                   engine=gated)


def summarize(ctx: RunContext, started: float, warnings: list[str]) -> dict[str, Any]:
    budget, ledger = ctx.ledger.budget, ctx.ledger
    priced = all(b.resolved.price is not None for b in ctx.lms.values())
    return {
        "calls": budget.calls, "cache_hits": ledger.cache_hits, "tokens": budget.tokens,
        "cost_usd": round(budget.usd, 6) if priced else None,
        "wall_s": round(time.perf_counter() - started, 3),
        "failures": queries.open_failure_count(ctx.store), "warnings": warnings,
        "empty": empty_values(ctx),
        "truncated": dict(sorted(ledger.truncated.items())),
        # each model's context window: a replay of this run splits prompts the same way
        "models": {b.resolved.model_id: b.resolved.context_window for b in ctx.lms.values()},
    }


def summary_line(s: dict[str, Any]) -> str:
    cost = "unknown" if s["cost_usd"] is None else f"${s['cost_usd']:.4f}"
    line = (f"calls: {s['calls']} · cache hits: {s['cache_hits']} · tokens: {s['tokens']:,} · "
            f"cost: {cost} · wall: {s['wall_s']:.2f} s · failures: {s['failures']}")
    if s["failures"]:
        line += " (rows in the failures table; re-run with --retry-failed)"
    for name, why in (s.get("empty") or {}).items():
        line += f" · empty: {name} ({why})"
    for step, n in (s.get("truncated") or {}).items():
        line += (f" · {n} answer{'s' if n > 1 else ''} of {step} stopped at max_tokens "
                 "(raise it in the step's `with`)")
    return line
