"""Tracing stage: a run's answers with their evidence rows and the text those rows came from.

:func:`load_answers` reads, for each output of the run's plan (kept in ``runs.summary``), the
value and — where its step wrote one — the ``evidence`` column (rows with ``id``, ``source``,
``first_line``, ``last_line``, ``line``), each with the ``source:line`` citation ``rlm run``
prints. Each row is joined to the text it was read from: the row of an upstream ``chunk`` step
(same source and first line) or ``input`` step (same source and line number). The HTML report
shows answer → rows → chunk text from this. The tables hold the store's latest run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from rlm_dsl.runtime.steps.evidence import EVIDENCE_COLUMN, citation
from rlm_dsl.runtime.store.store import Store, quote_ident


@dataclass
class Passage:
    """The text an evidence row was read from: one row of a chunk or input table."""

    anchor: str
    source: str | None
    first_line: int | None
    last_line: int | None
    text: str


@dataclass
class Cited:
    """One evidence row: its citation and, when found, the passage it came from."""

    row: dict[str, Any]
    cite: str
    passage: Passage | None


@dataclass
class Answer:
    name: str
    value: Any
    rows: list[Cited] = field(default_factory=list)


def load_answers(store: Store, run: dict[str, Any]) -> list[Answer]:
    """The outputs of ``run`` (its ``runs`` row) with their cited rows and passages."""
    plan = _plan(run)
    if not plan or "graph" not in plan:
        return []
    nodes = {n["id"]: n for n in plan["graph"].get("nodes", [])}
    graph = nx.DiGraph([(e["source"], e["target"]) for e in plan["graph"].get("edges", [])])
    graph.add_nodes_from(nodes)
    passages: dict[tuple[str, int], Passage] = {}
    answers = []
    for name in plan.get("outputs") or []:
        producer = next((n for n in nodes.values() if n["name"] == name), None)
        if producer is None or not store.table_exists(producer["table"]):
            answers.append(Answer(name, None))
            continue
        table = producer["table"]
        rows = store.rows(table, order_by=None)
        columns = {c for c, _ in store.columns(table)}
        answer = Answer(name, _value(producer, rows))
        if EVIDENCE_COLUMN in columns and rows:
            texts = _text_steps(graph, nodes, producer["id"])
            for row in rows[0][EVIDENCE_COLUMN] or []:
                found = _passage(store, texts, row, passages)
                answer.rows.append(Cited(row, citation(row), found))
        answers.append(answer)
    return answers


def _plan(run: dict[str, Any]) -> dict[str, Any] | None:
    summary = run.get("summary")
    if isinstance(summary, str):
        summary = json.loads(summary)
    return (summary or {}).get("plan")


def _text_steps(graph: nx.DiGraph, nodes: dict[str, dict[str, Any]],
                producer: str) -> list[dict[str, Any]]:
    """The chunk and input steps upstream of ``producer``, nearest first (a chunk's row holds
    the whole passage a map read; its input's row only the first line)."""
    distance = nx.shortest_path_length(graph.reverse(copy=False), producer)
    return [nodes[step] for step in sorted(distance, key=distance.__getitem__)
            if nodes[step]["kind"] in ("chunk", "input")]


def _value(producer: dict[str, Any], rows: list[dict[str, Any]]) -> Any:
    output = (producer.get("output") or {}).get("name")
    if output is None:
        return rows
    if producer["kind"] == "map":
        return [row.get(output) for row in rows]
    return rows[0].get(output) if rows else None


def _passage(store: Store, steps: list[dict[str, Any]], row: dict[str, Any],
             seen: dict[tuple[str, int], Passage]) -> Passage | None:
    """The chunk (or input line) row with the evidence row's source and first line."""
    first = row.get("first_line")
    if first is None:
        return None
    for step in steps:
        table = step["table"]
        if not store.table_exists(table):
            continue
        columns = {c for c, _ in store.columns(table)}
        line = "first_line" if "first_line" in columns else "line_no"
        if not {"id", "source", "text", line} <= columns:
            continue
        found = store.con.execute(
            f"SELECT id, text, {line} FROM {quote_ident(table)} "
            f"WHERE source IS NOT DISTINCT FROM ? AND {line} = ? LIMIT 1",
            [row.get("source"), first]).fetchone()
        if found is None:
            continue
        key = (table, found[0])
        if key not in seen:
            text = found[1] or ""
            seen[key] = Passage(f"text-{table}-{found[0]}", row.get("source"), found[2],
                                found[2] + text.count("\n"), text)
        return seen[key]
    return None
