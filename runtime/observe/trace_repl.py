"""Tracing stage, REPL part: the prefix tree of an ``rlm`` step's iterations and sub-calls.

Used by :mod:`rlm_dsl.runtime.observe.trace`; the nodes are those of
:mod:`rlm_dsl.runtime.observe.nodes`. ``rlm_iterations`` rows carry no id of their own: a row's id
is ``<parent_call_id or "root">.<iteration>`` (:mod:`rlm_dsl.runtime.repl.invocation`), so the
children of a row are the rows whose ``parent_call_id`` is its id: a REPL iteration's children are
its ``llm_query`` / ``rlm_query`` sub-calls, an ``rlm_query`` row's children are the sub-agent's
iterations. An LM call whose ``parent_id`` names an ``llm_query`` row hangs under it; the action
calls of an invocation (``parent_id`` NULL for the root, the ``rlm_query`` row id for a child) are
handed to its iterations by time, since each iteration row is written when its turn ends.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rlm_dsl.runtime.observe.nodes import Node, Stats, call_node, chunk_nodes, iso

TOOL_PREFIXES = ("llm_query:", "llm_query_batched:", "rlm_query:")


def rlm_chunks(prefix: str, calls: list[dict], fails: list[dict],
                rows: list[dict]) -> list[Node]:
    """An rlm step: per chunk, the REPL prefix tree with the LM calls hung on it."""
    chunks = chunk_nodes(prefix, [], fails, "chunk")
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
        node = call_node(call)
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
              "at": iso(row["at"])}
    if tool:
        detail["tool"] = tool
        return Node("subcall", f"{prefix}.{rid}", f"{tool} {rid}", row["depth"], own,
                    detail=detail)
    return Node("iteration", f"{prefix}.{rid}", f"iteration {row['iteration']} ({rid})",
                row["depth"], own, detail=detail)


def _when(node: Node) -> str:
    return str(node.detail.get("started_at") or node.detail.get("at") or "")
