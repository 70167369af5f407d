"""Content-keyed reuse, like a build system: a stored step result is reused only when its
fingerprint matches, and every decision says why.

Executor stage. The ``step_fingerprints`` system table holds, per step key, the fingerprint
(:mod:`rlm_dsl.runtime.steps.fingerprint`) of what its table holds now and whether the step
finished (``running`` is written before the step starts, so a run killed mid-step resumes it).
:func:`decide` compares a step's new fingerprint with the stored one: equal and ``done`` →
reused; equal and unfinished → resumed (a map keeps its finished rows); different → re-run from
scratch (:func:`clear` drops its table and supersedes its open failures; the LM-call cache still
answers every unchanged prompt for free). A step also runs again when a parent ran again with the
same fingerprint (it resumed or retried rows), when ``--retry-failed`` finds open failures, and
for ``--incremental`` inputs. ``rlm run --explain`` prints the decisions; the summary keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import networkx as nx

from rlm_dsl.compiler.plan import Step
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.fingerprint import Fingerprint
from rlm_dsl.runtime.steps.recipe import drop_row_tables
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import Store


@dataclass(frozen=True)
class Stored:
    """What ``step_fingerprints`` says about a step's table."""

    fingerprint: Fingerprint
    status: str  # running, done, partial, failed


@dataclass(frozen=True)
class Decision:
    """Whether a step runs and why: ``action`` is reused, ran, re-ran or resumed."""

    action: str
    reason: str
    fresh: bool = False  # its stored results belong to another fingerprint: drop them first

    @property
    def runs(self) -> bool:
        return self.action != "reused"

    def to_dict(self) -> dict[str, str]:
        return {"action": self.action, "reason": self.reason}


def load_stored(store: Store) -> dict[str, Stored]:
    """Every step key's stored fingerprint."""
    return {step: Stored(Fingerprint(digest, parts), status)
            for step, digest, parts, status in queries.stored_fingerprints(store)}


def decide(ctx: RunContext, step: Step, new: Fingerprint, stored: Stored | None,
           reran_parents: list[str], has_failures: bool) -> Decision:
    """Reuse, resume or run ``step`` (see the module docstring for the rules)."""
    if stored is None:
        return Decision("ran", "no stored result", fresh=True)
    if stored.fingerprint.digest != new.digest:
        return Decision("re-ran", _changes(stored.fingerprint, new), fresh=True)
    if stored.status != "done":
        return Decision("resumed", f"the last run left it {stored.status}")
    if ctx.incremental and step.kind == "input":
        return Decision("re-ran", "--incremental reads what its files gained")
    if reran_parents:
        return Decision("re-ran", "upstream " + ", ".join(f"'{p}'" for p in reran_parents)
                        + " ran again")
    if ctx.retry_failed and has_failures:
        return Decision("resumed", "--retry-failed: it has failed rows")
    if not ctx.store.table_exists(ctx.table(step.table)):
        return Decision("re-ran", f"its table '{ctx.table(step.table)}' is missing", fresh=True)
    return Decision("reused", "unchanged")


def _changes(old: Fingerprint, new: Fingerprint) -> str:
    """Which parts of the fingerprint differ, in words."""
    names = sorted(set(old.parts) | set(new.parts))
    changed = [n for n in names if old.parts.get(n) != new.parts.get(n)]
    words = []
    for name in changed:
        kind, _, detail = name.partition(":")
        words.append({
            "definition": "its definition changed",
            "param": f"param '{detail}' changed",
            "model": "its model or LM settings changed",
            "module": "its prompt module (optimized prompts) changed",
            "input": "its input files changed",
            "upstream": f"upstream '{detail}' changed",
        }.get(kind, f"{name} changed"))
    return "; ".join(words) or "its fingerprint changed"


def record(ctx: RunContext, step: Step, new: Fingerprint, status: str) -> None:
    """Store ``step``'s fingerprint and status (written at once: a kill must not lose it)."""
    queries.record_fingerprint(ctx.store, ctx.key(step), new.digest, new.parts, status,
                               ctx.ledger.run_id, datetime.now(UTC).isoformat())


def clear(ctx: RunContext, step: Step) -> None:
    """Drop the stored results of ``step`` and of every step below it (they belong to other
    fingerprints: a run that stops before reaching them must not show them as outputs) and
    supersede their open failures, sub-recipe rows included."""
    below = [ctx.plan.step(i) for i in sorted(nx.descendants(ctx.plan.graph, step.id))]
    for stale in [step, *below]:
        if stale is not step or step.kind != "input" or not ctx.incremental:
            table = ctx.table(stale.table)  # (an incremental log appends to its own table)
            ctx.store.drop(table)
            ctx.store.drop(f"{table}__decisions")
        if stale.recipe is not None:
            drop_row_tables(ctx, stale)
    queries.forget_steps(ctx.store, [ctx.key(s) for s in [step, *below]])


def explain_lines(decisions: dict[str, Any]) -> list[str]:
    """``rlm run --explain``: one line per step, ``step  action  reason``."""
    width = max((len(k) for k in decisions), default=0)
    return [f"{key.ljust(width)}  {d['action']:<8}  {d['reason']}"
            for key, d in decisions.items()]
