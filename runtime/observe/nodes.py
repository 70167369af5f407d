"""Tracing stage, the tree's parts: :class:`Node` and :class:`Stats`, and the nodes of chunks and
LM calls that both :mod:`rlm_dsl.runtime.observe.trace` (steps, reduce levels) and
:mod:`rlm_dsl.runtime.observe.trace_repl` (REPL iterations) hang calls on.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


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


def chunk_nodes(prefix: str, calls: list[dict], fails: list[dict], word: str) -> list[Node]:
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
                    children=[call_node(c) for c in groups.get(chunk_id, [])],
                    detail={"chunk_id": chunk_id,
                            "failures": [failure_row(f) for f in failed.get(chunk_id, [])]})
        node.own.failures = len(failed.get(chunk_id, []))
        out.append(node)
    return out


def call_node(call: dict[str, Any]) -> Node:
    messages = call.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    cached = bool(call["cached"])  # answered from the store: no LM call was sent
    own = Stats(calls=int(not cached), prompt_tokens=call["prompt_tokens"] or 0,
                completion_tokens=call["completion_tokens"] or 0, cost_usd=call["cost_usd"],
                latency_s=call["latency_s"] or 0.0, cached=int(cached),
                errors=int(call["error"] is not None))
    label = f"call {call['call_id']}"
    if call.get("depth"):
        label += f" (depth {call['depth']})"
    if cached:
        label += " (cached)"
    return Node("call", f"call-{call['call_id']}", label, call.get("depth") or 0, own, detail={
        "call_id": call["call_id"], "model": call["model"], "chunk_id": call["chunk_id"],
        "parent_id": call["parent_id"], "messages": messages or [],
        "response": call["response"], "error": call["error"],
        "started_at": iso(call["started_at"]),
    })


def failure_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"chunk_id": row["chunk_id"], "error": row["error"], "attempts": row["attempts"],
            "resolved": row["resolved"], "raw_response": row["raw_response"]}


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
