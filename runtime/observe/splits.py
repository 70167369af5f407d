"""Tracing stage, split rows: the exact tree of pieces a map cut a row into.

A map row whose prompt does not fit the LM's window is cut in halves, recursively
(:mod:`rlm_dsl.runtime.steps.map`); every call made for a piece carries the piece's path of
halves in ``lm_calls.parent_id`` (``0`` the first half, ``0.1`` the second half of it) and its
split depth in ``depth``. :func:`split_tree` rebuilds the row's chunk node as that tree: a
``piece`` node per piece (those that did not fit and made no call too), its calls first, then its
two halves. Every piece and the row itself get a ``status`` — ``split`` (cut further), ``ok``
(answered) or ``failed`` — and ``elapsed_s``, the wall time from its first call's start to its
last call's end. Calls of a store written before pieces were recorded (no path) are grouped under
one ``split N`` node per depth instead.
"""

from __future__ import annotations

from datetime import datetime

from rlm_dsl.runtime.observe.nodes import Node


def split_tree(chunk: Node) -> Node:
    """``chunk`` (a map row's node, its calls as children) with its split calls as a tree."""
    calls = chunk.children
    if not any(call.depth for call in calls):
        return chunk
    if any(call.depth and call.detail.get("parent_id") is None for call in calls):
        return _by_level(chunk)
    top = [call for call in calls if not call.depth]
    pieces: dict[str, Node] = {}

    def piece(path: str) -> Node:
        node = pieces.get(path)
        if node is None:
            node = Node("piece", f"{chunk.id}.piece-{path}", f"piece {path}",
                        path.count(".") + 1)
            pieces[path] = node
            parent = path.rpartition(".")[0]
            (piece(parent).children if parent else top).append(node)
        return node

    for call in calls:
        if call.depth:
            piece(str(call.detail["parent_id"])).children.append(call)
    chunk.children = top
    _settle(chunk)
    chunk.detail["status"] = "failed" if chunk.own.failures else "ok"
    return chunk


def _settle(node: Node) -> tuple[float, float] | None:
    """Order ``node``'s children (calls, then pieces by path), set each piece's status and wall
    time; returns the (start, end) timestamps its calls span."""
    node.children.sort(key=lambda c: (c.kind == "piece", c.label if c.kind == "piece" else ""))
    spans = [span for span in (_span(child) for child in node.children) if span]
    if node.kind == "piece":
        calls = [c for c in node.children if c.kind == "call"]
        cut = any(c.kind == "piece" for c in node.children)
        node.detail["status"] = ("split" if cut else
                                 "failed" if not calls or calls[-1].own.errors else "ok")
    if not spans:
        return None
    span = (min(s for s, _ in spans), max(e for _, e in spans))
    node.detail["elapsed_s"] = round(span[1] - span[0], 6)
    return span


def _span(node: Node) -> tuple[float, float] | None:
    if node.kind != "call":
        return _settle(node)
    started = node.detail.get("started_at")
    if not isinstance(started, str):
        return None
    start = datetime.fromisoformat(started).timestamp()
    return start, start + node.own.latency_s


def _by_level(chunk: Node) -> Node:
    """Calls without a piece path: one ``split N`` node per split depth."""
    levels = sorted({c.depth or 0 for c in chunk.children})
    kept = [c for c in chunk.children if not c.depth]
    for level in (d for d in levels if d):
        calls = [c for c in chunk.children if c.depth == level]
        kept.append(Node("level", f"{chunk.id}.split-{level}",
                         f"split {level} ({len(calls)} piece call{'s' * (len(calls) != 1)})",
                         level, children=calls))
    chunk.children = kept
    return chunk
