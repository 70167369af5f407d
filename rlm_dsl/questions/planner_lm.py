"""The planner's LM, gated like a run's: cached, budgeted and recorded in the run's store.

Planner stage (``rlm ask``), over the runtime's call gate (:mod:`rlm_dsl.runtime.lm.gate`).
:func:`planner_lm` opens the store the run will use (``db``; an in-memory one for
``--plan-only``, which must leave no file behind), and gives the planner a ``dspy.LM`` whose
engine is a :class:`~rlm_dsl.runtime.lm.gate.GatedEngine` over the run's budget: a question asked
again on the same ``--db`` is planned from the cache for free, the planner's calls count against
``--max-calls`` / ``--max-tokens`` / ``--max-usd``, and each lands in ``lm_calls`` under the step
``planner``. :func:`adopt_planner_calls` then files those rows under the run that followed, so
``rlm trace`` and the run's totals show them with the steps' calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import dspy

from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.lm.gate import Gate, GatedEngine, RunLedger, call_scope, new_run_id
from rlm_dsl.runtime.lm.resolve import ResolvedLM
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer

PLANNER_STEP = "planner"
PLANNER_TOKENS = 160  # a strategy, a few keywords and labels


@dataclass(frozen=True)
class PlannerSpend:
    """What planning cost: calls and tokens spent (cache hits are free), and where they are."""

    calls: int = 0
    tokens: int = 0
    usd: float = 0.0
    cache_hits: int = 0
    run_id: str | None = None  # the ledger the calls were recorded under (None: not recorded)


@contextmanager
def planner_lm(resolved: ResolvedLM, db: str | os.PathLike[str] | None, budget: Budget,
               ) -> Iterator[tuple[dspy.LM, RunLedger]]:
    """A gated LM for the planner over ``db``'s cache and ``budget`` (module docstring). A
    ``db`` that does not exist yet is created only when the planner made calls to record."""
    existing = db is not None and os.path.exists(db)
    store = Store.open(db if existing else None)
    writer = Writer(store)
    try:
        ledger = RunLedger.open(writer, new_run_id(), budget)
        gate = Gate(model=resolved.model_id, ledger=ledger, count_tokens=resolved.count_tokens,
                    price=resolved.price, concurrency=1)
        lm = resolved.make_lm(engine=GatedEngine(resolved.engine, gate), num_retries=0,
                              temperature=0, max_tokens=PLANNER_TOKENS)
        with call_scope(step=PLANNER_STEP):
            yield lm, ledger
        writer.flush()
        if db is not None and not existing and store.count("lm_calls"):
            with Store.open(db) as target:
                target.insert_rows("lm_calls", store.rows("lm_calls", order_by=None))
    finally:
        writer.close()
        store.close()


def spend_of(ledger: RunLedger, recorded: bool) -> PlannerSpend:
    budget = ledger.budget
    return PlannerSpend(budget.calls, budget.tokens, budget.usd, ledger.cache_hits,
                        ledger.run_id if recorded else None)


def remaining(cap: int | float | None, spent: int | float) -> int | float | None:
    """What is left of ``cap`` for the run after planning spent ``spent`` (None: no cap)."""
    return None if cap is None else max(0, cap - spent)


def adopt_planner_calls(db: str | os.PathLike[str], spend: PlannerSpend, run_id: str) -> None:
    """File the planner's recorded calls under ``run_id``, the run planned with them."""
    if spend.run_id is None:
        return
    store = Store.open(db)
    try:
        queries.move_calls(store, spend.run_id, run_id)
    finally:
        store.close()
