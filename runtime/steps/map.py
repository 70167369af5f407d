"""Map and LM-filter steps: one prompt per row, run concurrently, split recursively when too big.

Step-handler stage. :func:`run_map` renders the step's Jinja2 prompt with ``chunk`` (the source
row) and the params, sends it through the step's :class:`~rlm_dsl.runtime.steps.predict.StepModule`
in a thread pool (contextvars copied, so every call knows its step and chunk), and queues each
typed result as it completes. A prompt that would not fit the LM's context window — counted with
the LM's own counter, leaving room for the adapter text and the answer — is split in halves by
lines (a single line by characters) and solved recursively by the same step, the pieces combined
by type (:func:`~rlm_dsl.runtime.lm.signatures.combine`), down to ``max_depth`` levels; each call
of a piece carries the piece's path (``0.1``) as ``parent_id`` so ``rlm trace`` draws the exact
split tree. Rows already
in the result table are skipped (resume); rows in ``failures`` are retried only with
``--retry-failed``. A map ``with grounded=[…]`` checks each row's answer against the row's text
(:mod:`~rlm_dsl.runtime.steps.grounding`) and records the outcome in a ``grounded`` column; every
map row keeps the source and line range of the row it read
(:mod:`~rlm_dsl.runtime.steps.evidence`).
:func:`run_filter_lm` is the same walk with a ``bool`` answer per row.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any

import dspy

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.types import Prim, Type
from rlm_dsl.runtime.lm.gate import call_scope, set_scope
from rlm_dsl.runtime.lm.signatures import combine, duckdb_type
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.evidence import LINE_TEXT_COLUMN, PROVENANCE, provenance
from rlm_dsl.runtime.steps.grounding import GROUNDED_COLUMN, Grounder, row_text
from rlm_dsl.runtime.steps.predict import (
    BudgetStop,
    ItemFailed,
    RowError,
    StepModule,
    TooLarge,
)
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import quote_ident

MAX_DEPTH = 12


def run_map(ctx: RunContext, step: Step, module: StepModule) -> int:
    """Run a map step into ``step.table``; returns the number of rows written this run."""
    assert step.output is not None
    target = ctx.table(step.table)
    fields = step.options.get("grounded")
    grounder = Grounder(step.output.type, step.output.name, fields) if fields else None
    extra = {**PROVENANCE,
             **({GROUNDED_COLUMN: "BOOLEAN", LINE_TEXT_COLUMN: "VARCHAR"} if grounder else {})}
    extra.pop(step.output.name, None)  # a value named like a bookkeeping column keeps its name
    ensure_table(ctx, target, step.output.name, step.output.type, extra)
    solver = _Solver(ctx, step, module, step.output.type, grounder)

    kept = list(extra)  # the bookkeeping columns, each a key of the row's record below

    def write(row: dict[str, Any], value: Any, grounded: bool | None) -> None:
        found = grounder.values(value) if grounder is not None else None
        record = provenance(row, found)
        record[GROUNDED_COLUMN] = grounded
        ctx.writer.add(target, {"id": row["id"], step.output.name: value,
                                **{name: record[name] for name in kept}})

    return run_rows(ctx, step, target, solver, write)


def run_filter_lm(ctx: RunContext, step: Step, module: StepModule) -> int:
    """An LM yes/no filter: decisions go to ``<table>__decisions``, passing rows to the table."""
    target = ctx.table(step.table)
    decisions = f"{target}__decisions"
    ensure_table(ctx, decisions, "keep", Prim("bool"))
    solver = _Solver(ctx, step, module, Prim("bool"))

    def write(row: dict[str, Any], value: Any, _grounded: bool | None) -> None:
        ctx.writer.add(decisions, {"id": row["id"], "keep": bool(value)})

    done = run_rows(ctx, step, decisions, solver, write)
    ctx.writer.flush()
    source = quote_ident(ctx.table(step.source or ""))
    ctx.store.create_table_as(
        target,
        f"SELECT s.* FROM {source} s JOIN {quote_ident(decisions)} d USING (id) "
        "WHERE d.keep ORDER BY s.id",
    )
    return done


def ensure_table(ctx: RunContext, table: str, column: str, t: Type,
                 extra: dict[str, str] | None = None) -> None:
    """The result table: ``id``, the value column, then ``extra`` columns (name → SQL type):
    a map's provenance and ``grounded``, a reduce's ``evidence``."""
    more = "".join(f", {quote_ident(name)} {sql}" for name, sql in (extra or {}).items())
    with ctx.store.write() as con:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {quote_ident(table)} "
            f"(id BIGINT, {quote_ident(column)} {duckdb_type(t)}{more})"
        )


def pending_rows(ctx: RunContext, step: Step, done_table: str) -> tuple[list[dict], dict[int, int]]:
    """Source rows still to do, and the failed ones being retried (chunk id → attempts so far)."""
    failed = queries.failed_rows(ctx.store, ctx.key(step))
    source = quote_ident(ctx.table(step.source or ""))
    cursor = ctx.store.con.execute(
        f"SELECT * FROM {source} WHERE id NOT IN (SELECT id FROM {quote_ident(done_table)}) "
        "ORDER BY id"
    )
    names = [d[0] for d in cursor.description]
    rows = [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]
    if not ctx.retry_failed:
        rows = [r for r in rows if r["id"] not in failed]
        failed = {}
    return rows, {int(k): int(v) for k, v in failed.items()}


def run_rows(ctx: RunContext, step: Step, done_table: str, solver: _Solver,
             write: Callable[[dict[str, Any], Any, bool | None], None]) -> int:
    rows, retried = pending_rows(ctx, step, done_table)
    ctx.tick(step, 0, len(rows))
    resolved: list[int] = []

    key = ctx.key(step)

    def one(row: dict[str, Any]) -> None:
        chunk_id = int(row["id"])
        set_scope(step=key, chunk_id=chunk_id, depth=0)  # each job runs in its own context copy
        try:
            attempt = retried.get(chunk_id, 0)
            value = solver.solve(row, 0, attempt)
            value, grounded = solver.ground(row, value, attempt)
        except ItemFailed as exc:
            ctx.fail(step, chunk_id, str(exc), exc.raw, exc.attempts)
            ctx.tick(step)
            return
        except BudgetStop:
            raise
        except Exception as exc:
            raise RowError(chunk_id, exc) from exc
        write(row, value, grounded)
        if chunk_id in retried:
            resolved.append(chunk_id)
        ctx.tick(step)

    # no more workers than the LM serves at once: with a serial model (the local engine) a row's
    # grounding re-ask follows its first call and reuses that row's prompt prefix in the cache
    workers = min(ctx.concurrency, solver.bound.concurrency or ctx.concurrency)
    with dspy.context(lm=solver.bound.lm, adapter=ctx.adapter):  # copied into every worker
        written = run_parallel(ctx, [(one, row) for row in rows], workers)
    ctx.writer.flush()
    if resolved:
        queries.resolve_row_failures(ctx.store, ctx.key(step), resolved)
    return written


def run_parallel(ctx: RunContext, jobs: list[tuple[Callable[[Any], Any], Any]],
                 workers: int | None = None) -> int:
    """Run ``fn(arg)`` jobs on ``workers`` (default ``ctx.concurrency``) threads; an error stops
    the rest.

    Each job runs in a copy of the caller's context (its ``dspy.context`` and call scope). The
    workers take the next job from one shared list (no future or queue hand-off per job); after
    a job raises, no new job starts, the running ones finish, and the first budget stop (else
    the first error) is raised. With one worker (the local model's limit) the jobs run in the
    calling thread: a thread hand-off per job would only add GIL traffic.
    """
    if not jobs:
        return 0
    base = contextvars.copy_context()
    workers = ctx.concurrency if workers is None else workers
    if workers <= 1 or len(jobs) == 1:
        for fn, arg in jobs:
            _check_stopping(ctx)
            base.copy().run(fn, arg)
        return len(jobs)
    todo = iter(jobs)
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()  # set on the first error, or when the caller is interrupted

    def work() -> None:
        while True:
            with lock:
                job = None if stop.is_set() or ctx.stopping.is_set() else next(todo, None)
            if job is None:
                return
            try:
                base.copy().run(*job)
            except BaseException as exc:  # stops the other workers; re-raised below
                errors.append(exc)
                stop.set()
                return

    threads = [threading.Thread(target=work, name=f"rlm-worker-{i}")
               for i in range(min(workers, len(jobs)))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:  # after an interrupt in the caller: start no new job, let the running ones end
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise next((e for e in errors if isinstance(e, BudgetStop)), errors[0])
    _check_stopping(ctx)
    return len(jobs)


def _check_stopping(ctx: RunContext) -> None:
    """Raise KeyboardInterrupt when the run was interrupted while this step ran in a branch
    thread (:mod:`~rlm_dsl.runtime.steps.overlap`): the step is not finished."""
    if ctx.stopping.is_set():
        raise KeyboardInterrupt


class _Solver:
    """Solves one row: fit check, call, or split-and-combine (see the module docstring)."""

    def __init__(self, ctx: RunContext, step: Step, module: StepModule, out: Type,
                 grounder: Grounder | None = None) -> None:
        self.ctx, self.step, self.module, self.out = ctx, step, module, out
        self.grounder = grounder
        self.bound = ctx.lm_for(step)
        self.room = self.bound.window - module.prompt_overhead(self.bound, ctx.adapter)
        self.max_depth = int(step.options.get("max_depth", MAX_DEPTH))

    def solve(self, row: dict[str, Any], depth: int, first_attempt: int = 0,
              piece: str = "") -> Any:
        """``row``'s value; a ``piece`` of a split row is named by its path of halves (``0.1``:
        the second half of the first half), which its calls carry as ``parent_id``."""
        prompt = self.ctx.render(self.step.prompt or "", chunk=row)
        if self.bound.fits(prompt, self.room):
            try:
                return self.module.call(self.bound, self.ctx.adapter, prompt, first_attempt)
            except TooLarge:
                pass
        halves = split_row(row)
        if halves is None or depth >= self.max_depth:
            raise ItemFailed(
                f"chunk does not fit the {self.bound.window}-token context window "
                f"(split {depth} times)", None, 1)
        parts = []
        for side, half in enumerate(halves):
            path = f"{piece}.{side}" if piece else str(side)
            with call_scope(depth=depth + 1, parent_id=path):
                parts.append(self.solve(half, depth + 1, first_attempt, path))
        return combine(self.out, parts)

    def ground(self, row: dict[str, Any], value: Any, attempt: int) -> tuple[Any, bool | None]:
        """The row's value with its grounded fields checked (re-asked once, then nulled), and
        whether it was grounded as first given (None when the map grounds nothing)."""
        if self.grounder is None:
            return value, None
        text = row_text(row)
        missing = self.grounder.missing(value, text)
        if not missing:
            return value, True
        prompt = self.ctx.render(self.step.prompt or "", chunk=row) + self.grounder.feedback(
            missing)
        if self.bound.fits(prompt, self.room):
            try:
                with call_scope(depth=0):
                    value = self.module.call(self.bound, self.ctx.adapter, prompt, attempt)
            except (ItemFailed, TooLarge):
                pass  # the first answer, nulled where it is not in the text
        return self.grounder.strip(value, text), False


def split_row(row: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The row with its ``text`` cut in two halves by lines (one line: by characters)."""
    text = row.get("text")
    if not isinstance(text, str) or len(text) < 2:
        return None
    lines = text.split("\n")
    if len(lines) >= 2:
        mid = len(lines) // 2
        left, right = "\n".join(lines[:mid]), "\n".join(lines[mid:])
        first = row.get("first_line")
        a, b = dict(row, text=left), dict(row, text=right)
        if isinstance(first, int):
            a["last_line"], b["first_line"] = first + mid - 1, first + mid
        return a, b
    cut = text.rfind(" ", 0, len(text) // 2 + 1)
    cut = cut if cut > 0 else len(text) // 2
    return dict(row, text=text[:cut]), dict(row, text=text[cut:])
