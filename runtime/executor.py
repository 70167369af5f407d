"""The executor: walks a Plan over one DuckDB store, the independent steps of it at once.

Executor stage (DESIGN §3). :func:`execute` opens the store, resolves the LMs the plan uses and
wraps each in the call gate (:mod:`rlm_dsl.runtime.lm.gate`), then runs every step — generation
after topological generation, the steps of one generation side by side
(:mod:`rlm_dsl.runtime.steps.overlap`) — through its entry in the handler table
(:mod:`rlm_dsl.runtime.handlers`) — input, chunk, filter, map, reduce, rlm, and maps over
``use``d recipes (run as sub-plans, see :mod:`rlm_dsl.runtime.steps.recipe`). A step's result
from an earlier run of the same ``--db`` is reused only when its fingerprint matches
(:mod:`rlm_dsl.runtime.steps.reuse`); an interrupted map resumes from its missing rows and every
finished LM call is answered from ``lm_calls``. A budget refusal stops the run cleanly: results
written so far stay, and :class:`~rlm_dsl.errors.BudgetExhausted` says what is missing and how
to resume. Unexpected failures raise :class:`~rlm_dsl.errors.StepFailed` naming the step and
chunk: ``step 'map-incidents' (triage.rlm:9:1) failed on chunk 12: …``. How the run ends —
status, exit code, the error with the run's result attached — is :mod:`rlm_dsl.runtime.outcome`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import dspy
from dspy.dsp.utils.settings import main_thread_config, thread_local_overrides

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.errors import (
    BudgetExhausted,
    InputError,
    LMError,
    RlmError,
    SpecError,
    StepFailed,
)
from rlm_dsl.runtime.handlers import LM_KINDS, run_step
from rlm_dsl.runtime.ingest.params import check_inputs, coerce_params
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.lm.gate import RunLedger, new_run_id
from rlm_dsl.runtime.logs.parse import duckdb_encoding
from rlm_dsl.runtime.repl.isolation import require_strong
from rlm_dsl.runtime.runinfo import RunOptions, RunResult, bind_lms, summarize
from rlm_dsl.runtime.steps.context import BoundLM, RunContext, to_json, where
from rlm_dsl.runtime.steps.fingerprint import Fingerprint, fingerprint
from rlm_dsl.runtime.steps.incremental import clear_results
from rlm_dsl.runtime.steps.outcome import open_failures, rows_failed, status_of, with_result
from rlm_dsl.runtime.steps.outputs import read_evidence, read_outputs
from rlm_dsl.runtime.steps.overlap import generations, run_together
from rlm_dsl.runtime.steps.predict import BudgetStop, ItemFailed, RowError, TooLarge
from rlm_dsl.runtime.steps.reuse import Stored, clear, decide, load_stored, record
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer

__all__ = ["RunOptions", "RunResult", "execute"]


@dataclass
class _Walk:
    """The state of one walk over a plan (the top recipe or a sub-recipe run)."""

    ctx: RunContext
    modules: dict[str, dspy.Module]
    stored: dict[str, Stored] = field(default_factory=dict)  # step key → its fingerprint
    failed_before: set[str] = field(default_factory=set)  # steps with open step-level failures
    ran: set[str] = field(default_factory=set)
    prints: dict[str, Fingerprint] = field(default_factory=dict)  # step id → this run's
    decisions: dict[str, dict[str, str]] = field(default_factory=dict)  # step key → why


def execute(plan: Plan, options: RunOptions, modules: dict[str, dspy.Module] | None = None,
            ) -> RunResult:
    """Run ``plan`` with ``options``; ``modules`` (step id → DSPy module) override the defaults."""
    check_inputs(plan, options.inputs)
    if options.encoding is not None:
        duckdb_encoding(options.encoding)  # an unknown name stops the run before it starts
    require_strong(any(s.kind == "rlm" for s in plan.steps()), options.allow_weak_sandbox)
    params = coerce_params(plan, options.params)
    started = time.perf_counter()
    store = Store.open(options.db)
    queries.mark_interrupted(store)
    writer = Writer(store, journal=f"{options.db}.journal" if options.db else None)
    lms: dict[str | None, BoundLM] = {}
    try:
        budget = Budget(options.max_calls, options.max_tokens, options.max_usd)
        ledger = RunLedger.open(writer, new_run_id(), budget)
        lms, warnings = bind_lms(plan, options, ledger)
        if hasattr(options.progress, "bind"):  # live spend against the caps (RunProgress)
            options.progress.bind(budget)
        ctx = RunContext(plan=plan, store=store, writer=writer, ledger=ledger, lms=lms,
                         params=params, adapter=RobustAdapter(), concurrency=options.concurrency,
                         retry_failed=options.retry_failed, incremental=options.incremental,
                         progress=options.progress,
                         inputs=dict(options.inputs), encoding=options.encoding)
        _start_run(ctx, options)
        error: BaseException | None = None
        walk: _Walk | None = None
        try:
            walk = _Walk(ctx, modules or {}, stored=load_stored(store),
                         failed_before=queries.steps_with_step_failures(store))
            # lm_calls is the run's history: DSPy's own would keep the last 10,000 prompts and
            # answers of every LM in memory (400 MB at 40 KB chunks) and shift a 10,000-entry
            # list on every call once full. DSPy's global trace would do the same with every
            # predictor call; a trace a caller's context set (an optimizer's) is kept.
            with dspy.context(disable_history=True, **_untraced()):
                walk_plan(walk, plan)
            writer.flush()
            failed = open_failures(store, plan)
            if failed:
                error = rows_failed(plan, failed, options.db, options.command)
        except BudgetStop as stop:
            error = _exhausted(ctx, stop.error, options)
        except BaseException as exc:
            error = exc
        writer.flush()
        # bind-time warnings and the run's own (a degraded sandbox, an unenforceable step cap)
        summary = summarize(ctx, started, [*warnings, *ctx.warnings])
        summary["steps"] = walk.decisions if walk is not None else {}
        status = status_of(error)
        _finish_run(ctx, status, summary)
        result = RunResult(
            outputs=_read_kept(read_outputs, ctx, error, dict.fromkeys(plan.outputs)),
            summary=summary, run_id=ledger.run_id, db=options.db, warnings=summary["warnings"],
            status=status, evidence=_read_kept(read_evidence, ctx, error, {}))
        if error is not None:
            raise with_result(error, result)
        return result
    finally:
        try:
            _close_lms(lms)
        finally:
            writer.close()
            store.close()


def _untraced() -> dict[str, Any]:
    """``trace=None`` for the run's ``dspy.context`` unless a caller's context set a trace of
    its own (an optimizer's), not the process-wide one (``dspy.context`` copies that too)."""
    trace = thread_local_overrides.get().get("trace")
    return {} if trace is not None and trace is not main_thread_config.get("trace") else {
        "trace": None}


def _read_kept(read: Any, ctx: RunContext, error: BaseException | None, lost: Any) -> Any:
    """``read(ctx)`` of the store (outputs, evidence); after an error, what could be read, else
    ``lost`` (a broken store must not hide the error that broke the run)."""
    try:
        return read(ctx)
    except Exception:
        if error is None:
            raise
        return lost


def _close_lms(lms: dict[str | None, BoundLM]) -> None:
    """Close each bound LM's back end once (bindings can share one)."""
    for bound in {id(b): b for b in lms.values()}.values():
        bound.close()


def walk_plan(walk: _Walk, plan: Plan) -> None:
    """Run every step of ``plan``: generation after generation, the steps of one generation at
    once (:mod:`~rlm_dsl.runtime.steps.overlap`), reusing each stored result whose fingerprint
    matches (:mod:`rlm_dsl.runtime.steps.reuse`)."""
    for generation in generations(plan):
        run_together([partial(_walk_step, walk, plan, step) for step in generation],
                     walk.ctx.stopping)


def _walk_step(walk: _Walk, plan: Plan, step: Step) -> None:
    ctx = walk.ctx
    key = ctx.key(step)
    new = fingerprint(ctx, step, walk.modules, walk.prints)
    walk.prints[step.id] = new
    reran = [p.id for p in plan.parents(step.id) if p.id in walk.ran]
    decision = decide(ctx, step, new, walk.stored.get(key), reran,
                      ctx.retry_failed and queries.has_open_failures(ctx.store, key))
    if not ctx.prefix:  # sub-recipe rows are told by their map step
        walk.decisions[key] = decision.to_dict()
    if not decision.runs:
        return
    if decision.fresh:
        clear(ctx, step)
    elif ctx.incremental:
        clear_results(ctx, step)
    record(ctx, step, new, "running")
    ctx.tick(step, 0, None)
    _step_budget(ctx, step, key)
    began = datetime.now(UTC)
    try:
        rows = run_step(ctx, step, walk.modules, walk_plan_factory(walk))
    except BudgetStop:
        _status(ctx, key, "partial", None, began)
        record(ctx, step, new, "partial")
        raise
    except ItemFailed as exc:
        ctx.fail(step, None, str(exc), exc.raw, exc.attempts)
        _status(ctx, key, "failed", None, began)
        record(ctx, step, new, "failed")
        walk.ran.add(step.id)
        return
    except InputError:
        raise  # names the file and line already
    except (RowError, TooLarge, Exception) as exc:
        raise _step_error(step, exc) from None
    walk.ran.add(step.id)
    _status(ctx, key, "done", rows, began)
    record(ctx, step, new, "done")
    if key in walk.failed_before:
        queries.resolve_step_failures(ctx.store, key)


def walk_plan_factory(walk: _Walk) -> Any:
    """How a recipe map runs a sub-plan with another context (keeps dispatch free of _Walk)."""

    def run(ctx: RunContext, plan: Plan) -> None:
        walk_plan(_Walk(ctx, walk.modules, stored=walk.stored,
                        failed_before=walk.failed_before), plan)

    return run


def _step_budget(ctx: RunContext, step: Step, key: str) -> None:
    """Give ``step`` its own budget in the ledger when its options set one."""
    budget = Budget.for_step(where(step), step.options)
    if budget is None:
        return
    ctx.ledger.step_budgets[key] = budget
    warning = (f"warning: no price is known for the LM of {where(step)}: its max_usd cannot be "
               "enforced; only its call and token caps apply")
    if budget.max_usd is not None and ctx.lm_for(step).resolved.price is None and (
            warning not in ctx.warnings):  # once, not once per row of a `use`d recipe
        ctx.warnings.append(warning)


def _step_error(step: Step, exc: BaseException) -> RlmError:
    """``exc`` as a :class:`StepFailed` of ``step`` (an error naming its step already stays)."""
    chunk_id = exc.chunk_id if isinstance(exc, RowError) else None
    inner = exc.error if isinstance(exc, RowError) else exc
    if isinstance(inner, RlmError):
        if inner.step_id is not None:
            return inner
        family = next((c for c in (InputError, LMError, SpecError) if isinstance(inner, c)),
                      RlmError)
        return StepFailed.of(step, chunk_id, inner, family)
    kind = SpecError if type(inner).__module__.startswith("jinja2") else LMError
    first = str(inner).strip().splitlines()
    detail = f"{type(inner).__name__}: {first[0] if first else ''}".rstrip(": ")
    return StepFailed.of(step, chunk_id, inner, kind, detail)


def _status(ctx: RunContext, key: str, status: str, rows: int | None, began: datetime) -> None:
    ctx.writer.add("step_status", {
        "run_id": ctx.ledger.run_id, "step": key, "status": status, "rows": rows,
        "started_at": began.isoformat(), "finished_at": datetime.now(UTC).isoformat(),
    })


def _start_run(ctx: RunContext, options: RunOptions) -> None:
    ctx.writer.add("runs", {
        "run_id": ctx.ledger.run_id, "recipe": ctx.plan.recipe,
        "started_at": datetime.now(UTC).isoformat(), "status": "running",
        "params": ctx.params, "inputs": {k: v for k, v in options.inputs.items()},
    })
    ctx.writer.flush()


def _finish_run(ctx: RunContext, status: str, summary: dict[str, Any]) -> None:
    """Close the ``runs`` row; its ``summary`` also keeps the compiled plan (``plan``, the
    :meth:`Plan.to_json` form) so ``rlm trace`` draws the real step graph."""
    stored = {**summary, "plan": ctx.plan.to_json()}
    queries.finish_run(ctx.store, ctx.ledger.run_id, status, datetime.now(UTC).isoformat(),
                       to_json(stored))


def _exhausted(ctx: RunContext, error: BudgetExhausted, options: RunOptions) -> BudgetExhausted:
    ctx.writer.flush()
    missing, needed = _missing(ctx)
    lines = [str(error), *missing]
    used = ctx.ledger.budget
    if options.db:
        lines.append(f"finished results are kept in {options.db}")
        if used.exhausted is not None:  # the run's cap: the command with bigger caps
            flags = _bigger_budget(used, needed)
        else:  # a step's own cap: the same command goes on (its cap counts this run's calls)
            flags = {}
            lines.append("to go on, run the same command again (finished calls are cached and "
                         "free; the step's cap counts each run's new calls) or raise the step's "
                         "cap in the spec")
        if options.command:
            lines.append("resume with: " + options.command(flags))
        else:
            extra = "".join(f" and {k} {v}" for k, v in flags.items())
            lines.append(f"resume by running again with db={options.db!r}{extra}")
    else:
        lines.append("the store was in memory: run again with --db FILE to keep finished work "
                     "and resume it")
    return BudgetExhausted("\n".join(lines))


def _missing(ctx: RunContext) -> tuple[list[str], int]:
    """What the stopped run did not finish, and a rough count of the LM calls it still needs."""
    done = queries.done_steps(ctx.store)
    out, needed = [], 0
    for step in ctx.plan.steps():
        if step.id in done:
            continue
        if step.kind == "map" and ctx.store.table_exists(ctx.table(step.table)):
            have = ctx.store.count(ctx.table(step.table))
            total = ctx.store.count(ctx.table(step.source or ""))
            out.append(f"{where(step)}: {have} of {total} rows done, {total - have} missing")
            needed += total - have
        else:
            out.append(f"{where(step)}: not run")
            needed += _calls_of_unrun(ctx, step)
    return out, needed


def _calls_of_unrun(ctx: RunContext, step: Step) -> int:
    """LM calls a step that has not run will need: a row step one per source row when the
    source is there (else 10), a reduce or rlm step 10."""
    if (step.kind, step.strategy) not in LM_KINDS:
        return 0
    source = ctx.table(step.source or "")
    if step.kind in ("map", "filter") and step.source and ctx.store.table_exists(source):
        return ctx.store.count(source)
    return 10


def _bigger_budget(budget: Budget, needed: int) -> dict[str, str]:
    """Caps for the resumed run that cover the missing work: cache hits are free, so only the
    ``needed`` calls count, each at this run's mean tokens and dollars per call, plus 25 %."""
    flags: dict[str, str] = {}
    calls = max(budget.calls, 1)
    if budget.max_calls is not None:
        flags["--max-calls"] = str(max(budget.max_calls, int(needed * 1.2) + 1))
    if budget.max_tokens is not None:
        per_call = max(budget.tokens, budget.max_tokens) / calls
        flags["--max-tokens"] = str(max(budget.max_tokens, math.ceil(per_call * needed * 1.25)))
    if budget.max_usd is not None:
        per_call = max(budget.usd, budget.max_usd) / calls
        flags["--max-usd"] = f"{max(budget.max_usd, per_call * needed * 1.25):.4g}"
    return flags
