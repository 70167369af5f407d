"""One run of an `rlm` step at one recursion depth: its context, ids, budget and records.

Runtime helper of :mod:`rlm_dsl.runtime.repl.module`. An :class:`Invocation` is the per-call state
the ``dspy.RLM`` hooks need (the module itself stays stateless, so one module can serve a parent
and its children). The root invocation and every child made by ``rlm_query`` share one
:class:`CallBudget` and one trajectory list. Row ids form a tree: an iteration row is
``<parent_call_id or "root">.<n>``, and a sub-call made during it is ``<that id>.<k>``; a child's
iterations carry the ``rlm_query`` call's id as ``parent_call_id``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rlm_dsl.runtime.store.store import SYSTEM_TABLES

ERROR_PREFIXES = ("[Error]", "[Type Error]", "[ERROR]")


class StepSpent(RuntimeError):
    """The step's ``max_llm_calls`` budget cannot cover a call."""


class CallBudget:
    """``max_llm_calls`` of one step, shared by every depth; thread-safe."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._lock = threading.Lock()

    def reserve(self, n: int, what: str, *, fatal: bool = False) -> None:
        with self._lock:
            if self.used + n > self.limit:
                raise StepSpent(
                    f"the step's budget of {self.limit} LM calls is spent ({self.used} used, "
                    f"{what} needs {n} more); aggregate in code or SUBMIT what you have"
                    + (" — this sub-agent stops here" if fatal else ""))
            self.used += n

    def left(self) -> int:
        with self._lock:
            return self.limit - self.used


@dataclass(slots=True)
class Invocation:
    """State of one RLM invocation (root or child); see the module docstring for the ids."""

    store: Any
    run_id: str
    step: str
    chunk_id: int | None
    depth: int
    node: str  # "root", or the id of the rlm_query call that made this child
    parent_call_id: str | None
    source: Any  # TableSource | TextSource: serves the worker's `context`
    snapshot: Any  # SqlSnapshot: where the model's sql() runs (shared by the children)
    budget: CallBudget
    root_lm: Any
    sub_lm: Any
    trajectory: list[dict[str, Any]] = field(default_factory=list)
    interpreters: list[Any] = field(default_factory=list)
    iteration: int = 0
    _calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, iteration: int) -> None:
        """Start REPL iteration ``iteration`` (1-based)."""
        with self._lock:
            self.iteration, self._calls = iteration, 0

    def row_id(self) -> str:
        return f"{self.node}.{self.iteration}"

    def next_call_id(self) -> str:
        """A fresh id for a sub-call made during the current iteration."""
        with self._lock:
            self._calls += 1
            return f"{self.row_id()}.{self._calls}"

    def child(self, call_id: str, source: Any) -> Invocation:
        """The invocation of an ``rlm_query`` child: one level deeper, the sub-LM as its root."""
        return replace(self, depth=self.depth + 1, node=call_id, parent_call_id=call_id,
                       source=source, root_lm=self.sub_lm, iteration=0, _calls=0,
                       _lock=threading.Lock())

    def record_iteration(self, entry: dict[str, Any]) -> None:
        output = str(entry.get("output") or "")
        self._record(self.row_id(), self.parent_call_id, self.depth, self.iteration,
                     reasoning=entry.get("reasoning"), code=entry.get("code"), output=output,
                     error=output if output.startswith(ERROR_PREFIXES) else None)

    def record_call(self, tool: str, prompt: str, response: str | None, error: str | None,
                    call_id: str | None = None) -> None:
        call_id = call_id or self.next_call_id()
        parent, _, index = call_id.rpartition(".")
        self._record(call_id, parent, self.depth + 1, int(index), reasoning=None,
                     code=f"{tool}:\n{prompt}", output=response, error=error)

    def tables(self) -> dict[str, list[str]]:
        """Tables and views of the store's main schema with their columns."""
        rows = self.store.con.execute(
            "SELECT table_name, list(column_name ORDER BY column_index) FROM duckdb_columns() "
            "WHERE schema_name = 'main' AND NOT internal GROUP BY 1 ORDER BY 1").fetchall()
        return {name: list(cols) for name, cols in rows if name not in SYSTEM_TABLES}

    def all_warnings(self) -> list[str]:
        return list(dict.fromkeys(w for i in self.interpreters for w in i.warnings))

    def _record(self, row_id: str, parent: str | None, depth: int, iteration: int,
                **values: Any) -> None:
        row = {"run_id": self.run_id, "step": self.step, "chunk_id": self.chunk_id,
               "depth": depth, "parent_call_id": parent, "iteration": iteration, **values,
               "at": datetime.now(UTC).replace(tzinfo=None)}
        self.store.insert_rows("rlm_iterations", [row])
        self.trajectory.append({"id": row_id, **row})
