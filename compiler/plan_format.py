"""Plan renderings: the readable text dump (golden tests, ``rlm plan``), JSON, DOT and Mermaid.

Pure functions of a :class:`~rlm_dsl.compiler.plan.Plan`, exposed as its ``dumps()``,
``to_json()``, ``to_dot()`` and ``to_mermaid()`` methods. Every rendering walks the steps in the
plan's deterministic topological order and encodes literals as JSON, so output is stable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import networkx as nx

from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.types import Enum, ListOf, Optional, Record, Type, type_to_json

if TYPE_CHECKING:
    from rlm_dsl.compiler.plan import Plan, Step


def type_text(t: Type) -> str:
    """The spec syntax of ``t`` with records written out: ``list[Incident {at: str, ...}]``."""
    match t:
        case ListOf(item):
            return f"list[{type_text(item)}]"
        case Optional(item):
            inner = type_text(item)
            return f"({inner})?" if isinstance(item, Enum) and not item.name else f"{inner}?"
        case Record(name, fields):
            return f"{name} {{{', '.join(f'{f.name}: {type_text(f.type)}' for f in fields)}}}"
        case Enum(values, name):
            labels = " | ".join(values)
            return f"{name} = {labels}" if name else labels
    return str(t)


def _lit(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def dumps(plan: Plan) -> str:
    """The text dump: header, params, lms, uses, one block per step, outputs."""
    out = [f"recipe {plan.recipe}", f"  {_lit(plan.description)}"]
    if plan.params:
        out.append("params")
        for p in plan.params:
            default = "  (required)" if p.required else f" = {_lit(p.default)}"
            out.append(f"  {p.name}: {type_text(p.type)}{default}")
    if plan.lms:
        out.append("lms")
        for lm in plan.lms:
            model = f"env({_lit(lm.env)}, {_lit(lm.model)})" if lm.env else _lit(lm.model)
            out.append(f"  {lm.name} = {model}{_options(lm.options)}")
    if plan.uses:
        out.append("uses")
        out.extend(f"  {alias} = recipe {sub.recipe} ({sub.path})"
                   for alias, sub in sorted(plan.uses.items()))
    out.append("steps")
    for step in plan.steps():
        out.extend(_step_lines(step))
    out.append(f"outputs {', '.join(plan.outputs)}")
    for alias, sub in sorted(plan.uses.items()):
        out.append(f"\n# used recipe '{alias}'")
        out.append(dumps(sub).rstrip("\n"))
    return "\n".join(out) + "\n"


def _options(options: dict[str, Any]) -> str:
    return "".join(f" {k}={_lit(v)}" for k, v in options.items())


def _step_lines(step: Step) -> list[str]:
    strategy = step.strategy or ""
    if step.args:
        strategy += f"({', '.join(_lit(a) for a in step.args)})"
    lines = [f"  {step.id}  [{step.kind} {strategy}]  @{step.span.line}:{step.span.col}"]
    lines.append(f"    {step.source or '-'} -> {step.table}")
    for label, value in (("lm", step.lm), ("sub_lm", step.sub_lm), ("recipe", step.recipe)):
        if value:
            lines.append(f"    {label} {value}")
    if step.options:
        lines.append(f"    options{_options(step.options)}")
    if step.output is not None:
        lines.append(f"    output {step.output.name}: {type_text(step.output.type)}")
    if step.prompt is not None:
        lines.append("    prompt")
        lines.extend(f"      | {line}".rstrip() for line in step.prompt.split("\n"))
    return lines


def span_json(span: Span) -> dict[str, Any]:
    return {"file": span.file, "line": span.line, "col": span.col,
            "end_line": span.end_line, "end_col": span.end_col}


def step_json(step: Step) -> dict[str, Any]:
    return {
        "kind": step.kind, "name": step.name, "table": step.table, "source": step.source,
        "strategy": step.strategy, "args": list(step.args), "options": dict(step.options),
        "prompt": step.prompt, "lm": step.lm, "sub_lm": step.sub_lm, "recipe": step.recipe,
        "output": None if step.output is None
        else {"name": step.output.name, "type": type_to_json(step.output.type)},
        "span": span_json(step.span),
    }


def to_json(plan: Plan) -> dict[str, Any]:
    """A JSON-able dict; ``graph`` is networkx node-link data with one node per step."""
    graph = nx.DiGraph()
    for step in plan.steps():
        graph.add_node(step.id, **step_json(step))
    graph.add_edges_from(plan.graph.edges)
    return {
        "recipe": plan.recipe,
        "description": plan.description,
        "path": plan.path,
        "params": [{"name": p.name, "type": type_to_json(p.type), "default": p.default,
                    "required": p.required, "span": span_json(p.span)} for p in plan.params],
        "lms": [{"name": b.name, "model": b.model, "env": b.env, "options": dict(b.options),
                 "span": span_json(b.span)} for b in plan.lms],
        "outputs": list(plan.outputs),
        "uses": {alias: to_json(sub) for alias, sub in sorted(plan.uses.items())},
        "graph": nx.node_link_data(graph, edges="edges"),
    }


def _label(step: Step) -> str:
    detail = step.strategy or step.kind
    if step.output is not None:
        detail += f" -> {step.output.name}: {step.output.type}"
    return f"{step.id}\n{detail}"


_SHAPES = {"input": "cylinder", "chunk": "box3d", "filter": "invhouse", "map": "box",
           "reduce": "trapezium", "rlm": "doubleoctagon"}


def to_dot(plan: Plan) -> str:
    """Graphviz DOT source of the step graph."""
    out = [f"digraph {json.dumps(plan.recipe)} {{", "  rankdir=LR;",
           '  node [shape=box, fontname="Helvetica"];']
    for step in plan.steps():
        out.append(f"  {json.dumps(step.id)} [label={json.dumps(_label(step))}, "
                   f"shape={_SHAPES[step.kind]}];")
    out.extend(f"  {json.dumps(a)} -> {json.dumps(b)};" for a, b in sorted(plan.graph.edges))
    out.append("}")
    return "\n".join(out) + "\n"


def to_mermaid(plan: Plan) -> str:
    """Mermaid flowchart source of the step graph."""
    def node(step_id: str) -> str:
        return step_id.replace("-", "_")

    out = ["flowchart LR"]
    for step in plan.steps():
        label = _label(step).replace('"', "#quot;").replace("\n", "<br/>")
        out.append(f'  {node(step.id)}["{label}"]')
    out.extend(f"  {node(a)} --> {node(b)}" for a, b in sorted(plan.graph.edges))
    return "\n".join(out) + "\n"
