"""Tracing stage: rebuild one run's recursion tree from its DuckDB store.

:func:`load_trace` reads the system tables of the store contract (``runs``, ``step_status``,
``lm_calls``, ``failures``, ``rlm_iterations``) and builds a tree of :class:`Node` s:
run → steps → chunks (tree reduces: levels → batches) → LM calls, and for ``rlm`` steps
REPL iterations → sub-calls (``llm_query`` / ``rlm_query``) → the child's iterations, at every
depth (built by :mod:`rlm_dsl.runtime.observe.trace_repl`), a map row the map split as its tree of
pieces (:mod:`rlm_dsl.runtime.observe.splits`); the steps of a ``use``d recipe
(``<map step>__<row>__<step>``) nest under their map step, one node per row. A call answered
from the store's cache is shown but not counted as a call. Every node
carries its own and its subtree's calls, tokens, cost, latency, cache hits, errors and failures.
:meth:`Trace.filter` applies ``--step``, ``--failed`` and ``--depth``; :meth:`Node.to_json`
is the ``--json`` form.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from rlm_dsl.errors import InputError
from rlm_dsl.runtime.observe.nodes import Node, chunk_nodes, failure_row, iso
from rlm_dsl.runtime.observe.splits import split_tree
from rlm_dsl.runtime.observe.trace_repl import rlm_chunks
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import Store

_SUB_STEP = re.compile(r"^(.+)__(\d+)__((?:(?!__).)+)$")


@dataclass
class Trace:
    """A run's tree plus what the report needs beside it (the run row, step order and edges)."""

    root: Node
    run: dict[str, Any]
    steps: list[dict[str, Any]]
    edges: list[tuple[str, str]]

    def step_nodes(self) -> list[Node]:
        return [n for n in self.root.children if n.kind == "step"]

    def filter(self, step: str | None = None, failed: bool = False,
               depth: int | None = None) -> Trace:
        """A copy keeping one step (id or value name), failed branches, or nodes to ``depth``."""
        children = self.root.children
        if step is not None:
            children = [n for n in children if step in (n.id, n.id.partition("-")[2])]
            if not children:
                known = ", ".join(n.id for n in self.root.children) or "none"
                raise InputError(f"no step '{step}' in this run (steps: {known})")
        root = Node(self.root.kind, self.root.id, self.root.label, None, self.root.own,
                    [c for c in (_prune(n, failed, depth) for n in children) if c is not None],
                    self.root.detail)
        root.total()
        return Trace(root, self.run, self.steps, self.edges)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "steps": self.steps, "edges": [list(e) for e in self.edges],
                "tree": self.root.to_json()}


def _prune(node: Node, failed: bool, depth: int | None) -> Node | None:
    """``node`` cut to ``depth``; with ``failed``, only failed nodes, their ancestors and their
    whole subtrees (the calls that led to a failure)."""
    if depth is not None and node.depth is not None and node.depth > depth:
        return None
    own_failed = bool(node.own.errors or node.own.failures)
    keep_all = failed and own_failed
    children = [c for c in (_prune(child, failed and not keep_all, depth)
                            for child in node.children) if c]
    if failed and not own_failed and not children:
        return None
    copy = Node(node.kind, node.id, node.label, node.depth, node.own, children, node.detail)
    copy.total()
    return copy


def load_trace(store: Store, run_id: str | None = None) -> Trace:
    """The trace of ``run_id`` (default: the latest run) in ``store``."""
    run = _run_row(store, run_id)
    rid = run.get("run_id")
    calls = queries.run_rows(store, "lm_calls", rid)
    failures = queries.run_rows(store, "failures", rid)
    iterations = queries.run_rows(store, "rlm_iterations", rid)
    status = queries.run_rows(store, "step_status", rid)
    order = _step_order(status, calls, failures, iterations)
    by_step = {s: _step_node(s, calls, failures, iterations, status) for s in order}
    title = f"run {rid[:12]}" if rid else "run (no runs row)"
    if run.get("recipe"):
        title += f" · {run['recipe']}"
    top = _nest(list(by_step.values()))
    root = Node("run", rid or "run", title, None, children=top,
                detail={"status": run.get("status"),
                        "elapsed_s": _elapsed(run.get("started_at"), run.get("finished_at"))})
    root.total()
    steps = [_step_summary(node, status) for node in top]
    return Trace(root, _jsonable(run), steps, _edges(run, [n.id for n in top]))


def open_trace(path: str, run_id: str | None = None) -> Trace:
    """Open the store file at ``path`` read-only enough for tracing and load its trace."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    store = Store.open(path)
    try:
        return load_trace(store, run_id)
    finally:
        store.close()


def _run_row(store: Store, run_id: str | None) -> dict[str, Any]:
    row = queries.run_row(store, run_id)
    if row is None:
        if run_id is not None:
            raise InputError(f"no run '{run_id}' in this database")
        if not queries.has_lm_calls(store):
            raise InputError("this database holds no run (its runs and lm_calls tables are empty)")
        return {}
    return row


def _nest(nodes: list[Node]) -> list[Node]:
    """Put ``<map step>__<row>__<step>`` (a ``use``d recipe's step) under its map step, in a
    ``row`` node per row; returns the top-level steps."""
    by_id = {node.id: node for node in nodes}
    rows: dict[tuple[str, str], Node] = {}
    top = []
    for node in nodes:
        match = _SUB_STEP.match(node.id)
        if match is None or match.group(1) not in by_id:
            top.append(node)
            continue
        parent, row, inner = match.groups()
        if (parent, row) not in rows:
            rows[parent, row] = Node("chunk", f"{parent}.row-{row}", f"row {row}",
                                     detail={"chunk_id": int(row), "failures": []})
            by_id[parent].children.append(rows[parent, row])
        node.label = inner
        rows[parent, row].children.append(node)
    return top


def _step_order(status: list[dict], *tables: list[dict]) -> list[str]:
    """Steps in the order they ran: ``step_status`` first, then any seen only in other tables."""
    seen = [r["step"] for r in status]
    for rows in tables:
        seen.extend(r["step"] for r in rows)
    return [s for s in dict.fromkeys(seen) if s is not None]


def _step_node(step: str, calls: list[dict], failures: list[dict], iterations: list[dict],
               status: list[dict]) -> Node:
    mine = [c for c in calls if c["step"] == step]
    fails = [f for f in failures if f["step"] == step]
    rows = [r for r in iterations if r["step"] == step]
    state = next((s for s in reversed(status) if s["step"] == step), {})
    node = Node("step", step, step, 0, detail={
        "status": state.get("status"), "rows": state.get("rows"),
        "elapsed_s": _elapsed(state.get("started_at"), state.get("finished_at")),
    })
    node.own.failures = sum(1 for f in fails if f["chunk_id"] is None)
    node.detail["failures"] = [failure_row(f) for f in fails if f["chunk_id"] is None]
    if rows or step.startswith("rlm-"):
        node.children = rlm_chunks(step, mine, fails, rows)
    elif step.startswith("reduce-") and len({c["depth"] for c in mine}) > 1:
        node.children = _levels(step, mine, fails)
    else:
        node.children = [split_tree(chunk) for chunk in chunk_nodes(step, mine, fails, "chunk")]
    return node


def _levels(prefix: str, calls: list[dict], fails: list[dict]) -> list[Node]:
    """A tree reduce: one node per level (``depth``), batches (``chunk_id``) under it."""
    out = []
    for level in sorted({c["depth"] or 0 for c in calls}):
        name = f"{prefix}.level-{level}"
        batches = chunk_nodes(name, [c for c in calls if (c["depth"] or 0) == level],
                          fails if level == 0 else [], "batch")
        out.append(Node("level", name, f"level {level}", level, children=batches))
    return out


def _step_summary(node: Node, status: list[dict]) -> dict[str, Any]:
    return {"step": node.id, "status": node.detail.get("status"),
            "rows": node.detail.get("rows"), "elapsed_s": node.detail.get("elapsed_s"),
            **node.stats.to_json()}


def _edges(run: dict[str, Any], order: list[str]) -> list[tuple[str, str]]:
    """Plan edges from ``summary.plan`` (node-link JSON) when the run stored it, else the
    execution order as a chain (the executor walks the plan in topological order)."""
    plan = (run.get("summary") or {}).get("plan") if isinstance(run.get("summary"), dict) else None
    links = (plan or {}).get("graph", {}).get("links") or (plan or {}).get("graph", {}).get("edges")
    if links:
        return [(e["source"], e["target"]) for e in links
                if e["source"] in order and e["target"] in order]
    return list(pairwise(order))


def _elapsed(start: Any, end: Any) -> float | None:
    if isinstance(start, datetime) and isinstance(end, datetime):
        return round((end - start).total_seconds(), 6)
    return None


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) for k, v in row.items()}
