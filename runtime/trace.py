"""Tracing stage: rebuild one run's recursion tree from its DuckDB store.

:func:`load_trace` reads the system tables of the store contract (``runs``, ``step_status``,
``lm_calls``, ``failures``, ``rlm_iterations``) and builds a tree of :class:`Node` s:
run → steps → chunks (tree reduces: levels → batches) → LM calls, and for ``rlm`` steps
REPL iterations → sub-calls (``llm_query`` / ``rlm_query``) → the child's iterations, at every
depth. REPL rows have no id column: a row's id is ``<parent_call_id or "root">.<iteration>``
(see :mod:`rlm_dsl.runtime.repl.invocation`), so the REPL tree is the prefix tree of those ids.
An LM call whose ``parent_id`` names an ``llm_query`` row hangs under that row; the calls of an
invocation (``parent_id`` NULL for the root, the ``rlm_query`` row id for a child) are handed
to its iterations by time, since each iteration row is written when its turn ends. Every node
carries its own and its subtree's calls, tokens, cost, latency, cache hits, errors and failures.
:meth:`Trace.filter` applies ``--step``, ``--failed`` and ``--depth``; :meth:`Node.to_json`
is the ``--json`` form.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import Any

from rlm_dsl.runtime.store import Store

from rlm_dsl.errors import InputError

TOOL_PREFIXES = ("llm_query:", "llm_query_batched:", "rlm_query:")


@dataclass
class Stats:
    """Totals of a node's subtree."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    cached: int = 0
    errors: int = 0
    failures: int = 0

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Stats) -> None:
        self.calls += other.calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        if other.cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + other.cost_usd
        self.latency_s += other.latency_s
        self.cached += other.cached
        self.errors += other.errors
        self.failures += other.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "tokens": self.tokens,
            "cost_usd": self.cost_usd, "latency_s": round(self.latency_s, 6),
            "cached": self.cached, "errors": self.errors, "failures": self.failures,
        }


@dataclass
class Node:
    """One node of the trace: ``kind`` is run, step, level, chunk, call, iteration or subcall."""

    kind: str
    id: str
    label: str
    depth: int | None = None
    own: Stats = field(default_factory=Stats)
    children: list[Node] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)

    def total(self) -> Stats:
        """Recompute :attr:`stats` (own + children) bottom-up and return it."""
        stats = Stats()
        stats.add(self.own)
        for child in self.children:
            stats.add(child.total())
        self.stats = stats
        return stats

    @property
    def failed(self) -> bool:
        return bool(self.stats.errors or self.stats.failures)

    def walk(self) -> list[Node]:
        """This node and every descendant, depth first."""
        out = [self]
        for child in self.children:
            out.extend(child.walk())
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "id": self.id, "label": self.label, "depth": self.depth,
            "stats": self.stats.to_json(), "detail": self.detail,
            "children": [child.to_json() for child in self.children],
        }


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
    if depth is not None and node.depth is not None and node.depth > depth:
        return None
    children = [c for c in (_prune(child, failed, depth) for child in node.children) if c]
    own_failed = bool(node.own.errors or node.own.failures)
    if failed and not own_failed and not children:
        return None
    copy = Node(node.kind, node.id, node.label, node.depth, node.own, children, node.detail)
    copy.total()
    return copy


def load_trace(store: Store, run_id: str | None = None) -> Trace:
    """The trace of ``run_id`` (default: the latest run) in ``store``."""
    run = _run_row(store, run_id)
    rid = run.get("run_id")
    calls = _rows(store, "lm_calls", rid, "started_at, call_id")
    failures = _rows(store, "failures", rid, '"at"')
    iterations = _rows(store, "rlm_iterations", rid, '"at", iteration')
    status = _rows(store, "step_status", rid, "started_at")
    order = _step_order(status, calls, failures, iterations)
    by_step = {s: _step_node(s, calls, failures, iterations, status) for s in order}
    title = f"run {rid[:12]}" if rid else "run (no runs row)"
    if run.get("recipe"):
        title += f" · {run['recipe']}"
    root = Node("run", rid or "run", title, None, children=list(by_step.values()),
                detail={"status": run.get("status")})
    root.total()
    steps = [_step_summary(by_step[s], status) for s in order]
    return Trace(root, _jsonable(run), steps, _edges(run, order))


def open_trace(path: str, run_id: str | None = None) -> Trace:
    """Open the store file at ``path`` read-only enough for tracing and load its trace."""
    import os

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    store = Store.open(path)
    try:
        return load_trace(store, run_id)
    finally:
        store.close()


def _run_row(store: Store, run_id: str | None) -> dict[str, Any]:
    sql = "SELECT * FROM runs"
    params: list[Any] = []
    if run_id is not None:
        sql += " WHERE run_id = ? OR starts_with(run_id, ?)"
        params = [run_id, run_id]
    cursor = store.con.execute(sql + " ORDER BY started_at DESC NULLS LAST LIMIT 1", params)
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    if row is None:
        if run_id is not None:
            raise InputError(f"no run '{run_id}' in this database")
        if not store.scalar("SELECT count(*) FROM lm_calls"):
            raise InputError("this database holds no run (its runs and lm_calls tables are empty)")
        return {}
    out = dict(zip(names, row, strict=True))
    for key in ("params", "inputs", "summary"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


def _rows(store: Store, table: str, run_id: str | None, order: str) -> list[dict[str, Any]]:
    where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
    cursor = store.con.execute(f"SELECT * FROM {table} {where} ORDER BY {order}", params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


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
    node.detail["failures"] = [_failure(f) for f in fails if f["chunk_id"] is None]
    if rows or step.startswith("rlm-"):
        node.children = _rlm_chunks(step, mine, fails, rows)
    elif step.startswith("reduce-") and len({c["depth"] for c in mine}) > 1:
        node.children = _levels(step, mine, fails)
    else:
        node.children = _chunks(step, mine, fails, "chunk")
    return node


def _chunks(prefix: str, calls: list[dict], fails: list[dict], word: str) -> list[Node]:
    groups: dict[int | None, list[dict]] = defaultdict(list)
    for call in calls:
        groups[call["chunk_id"]].append(call)
    failed: dict[int | None, list[dict]] = defaultdict(list)
    for f in fails:
        if f["chunk_id"] is not None:
            failed[f["chunk_id"]].append(f)
    out = []
    for chunk_id in sorted(set(groups) | set(failed), key=lambda c: (c is None, c or 0)):
        node = Node("chunk", f"{prefix}.{word}-{chunk_id}", f"{word} {chunk_id}", None,
                    children=[_call_node(c) for c in groups.get(chunk_id, [])],
                    detail={"chunk_id": chunk_id,
                            "failures": [_failure(f) for f in failed.get(chunk_id, [])]})
        node.own.failures = len(failed.get(chunk_id, []))
        out.append(node)
    return out


def _levels(prefix: str, calls: list[dict], fails: list[dict]) -> list[Node]:
    """A tree reduce: one node per level (``depth``), batches (``chunk_id``) under it."""
    out = []
    for level in sorted({c["depth"] or 0 for c in calls}):
        name = f"{prefix}.level-{level}"
        batches = _chunks(name, [c for c in calls if (c["depth"] or 0) == level],
                          fails if level == 0 else [], "batch")
        out.append(Node("level", name, f"level {level}", level, children=batches))
    return out


def _call_node(call: dict[str, Any]) -> Node:
    messages = call.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    own = Stats(calls=1, prompt_tokens=call["prompt_tokens"] or 0,
                completion_tokens=call["completion_tokens"] or 0, cost_usd=call["cost_usd"],
                latency_s=call["latency_s"] or 0.0, cached=int(bool(call["cached"])),
                errors=int(call["error"] is not None))
    label = f"call {call['call_id']}"
    if call.get("depth"):
        label += f" (depth {call['depth']})"
    return Node("call", f"call-{call['call_id']}", label, call.get("depth") or 0, own, detail={
        "call_id": call["call_id"], "model": call["model"], "chunk_id": call["chunk_id"],
        "parent_id": call["parent_id"], "messages": messages or [],
        "response": call["response"], "error": call["error"],
        "started_at": _iso(call["started_at"]),
    })


def _rlm_chunks(prefix: str, calls: list[dict], fails: list[dict],
                rows: list[dict]) -> list[Node]:
    """An rlm step: per chunk, the REPL prefix tree with the LM calls hung on it."""
    chunks = _chunks(prefix, [], fails, "chunk")
    by_id = {n.detail["chunk_id"]: n for n in chunks}
    for chunk_id in sorted({r["chunk_id"] for r in rows} | {c["chunk_id"] for c in calls},
                           key=lambda c: (c is None, c or 0)):
        node = by_id.get(chunk_id)
        if node is None:
            node = by_id[chunk_id] = Node("chunk", f"{prefix}.chunk-{chunk_id}",
                                          f"chunk {chunk_id}", None,
                                          detail={"chunk_id": chunk_id, "failures": []})
            chunks.append(node)
        node.children = _repl_tree(node.id, [c for c in calls if c["chunk_id"] == chunk_id],
                                   [r for r in rows if r["chunk_id"] == chunk_id])
    return sorted(chunks, key=lambda n: (n.detail["chunk_id"] is None, n.detail["chunk_id"] or 0))


def _repl_tree(prefix: str, calls: list[dict], rows: list[dict]) -> list[Node]:
    nodes: dict[str, Node] = {}
    kids: dict[str | None, list[Node]] = defaultdict(list)
    ends: dict[str, Any] = {}
    for row in rows:
        rid = f"{row['parent_call_id'] or 'root'}.{row['iteration']}"
        nodes[rid] = _row_node(prefix, rid, row)
        ends[rid] = row["at"]
        kids[row["parent_call_id"]].append(nodes[rid])
    loose: list[Node] = []
    for call in calls:
        node = _call_node(call)
        owner = _owner(call, nodes, kids, ends)
        (owner.children if owner is not None else loose).append(node)
    for rid, node in nodes.items():
        node.children.extend(kids.get(rid, []))
        node.children.sort(key=_when)
    return loose + kids.get(None, [])


def _owner(call: dict, nodes: dict[str, Node], kids: dict[str | None, list[Node]],
           ends: dict[str, Any]) -> Node | None:
    """The REPL row an LM call belongs to (see the module docstring)."""
    parent = call["parent_id"]
    turns = [n for n in kids.get(parent, []) if n.kind == "iteration"]
    if turns:
        started = call["started_at"]
        for turn in turns:
            end = ends[turn.detail["row_id"]]
            if started is None or end is None or started <= end:
                return turn
        return turns[-1]
    return nodes.get(parent) if parent is not None else None


def _row_node(prefix: str, rid: str, row: dict[str, Any]) -> Node:
    code = row["code"] or ""
    tool = code.partition(":")[0] if code.startswith(TOOL_PREFIXES) else None
    own = Stats(errors=int(row["error"] is not None))
    detail = {"row_id": rid, "iteration": row["iteration"], "reasoning": row["reasoning"],
              "code": code, "output": row["output"], "error": row["error"],
              "at": _iso(row["at"])}
    if tool:
        detail["tool"] = tool
        return Node("subcall", f"{prefix}.{rid}", f"{tool} {rid}", row["depth"], own,
                    detail=detail)
    return Node("iteration", f"{prefix}.{rid}", f"iteration {row['iteration']} ({rid})",
                row["depth"], own, detail=detail)


def _when(node: Node) -> str:
    return str(node.detail.get("started_at") or node.detail.get("at") or "")


def _failure(row: dict[str, Any]) -> dict[str, Any]:
    return {"chunk_id": row["chunk_id"], "error": row["error"], "attempts": row["attempts"],
            "resolved": row["resolved"], "raw_response": row["raw_response"]}


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


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _iso(v) for k, v in row.items()}
