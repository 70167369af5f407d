"""Slots are values: no question (quotes, ``%``, ``{{ }}``, ``'``, ``;``, SQL, control
characters, any Unicode) and no term the planner takes from it changes the compiled plan's code.

The property: a spec rendered from hostile slot values compiles, and its plan equals the plan
rendered from harmless placeholders of the same shape (``q``, ``t0``, ``t1`` …) once values are
masked — param defaults, and the constants inside every SQL text (compared as DuckDB's own
parse tree, so a value that escaped its literal would change the tree and fail the test).
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import duckdb
import jinja2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questions.inputs import PROFILES
from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.plan import Plan
from rlm_dsl.questions.heuristics import heuristic_plan
from rlm_dsl.questions.literals import label
from rlm_dsl.questions.strategies import STRATEGIES, Layout, Slots, clean, render

HOSTILE = [
    'What is "x"?', "it's O'Brien's; DROP TABLE docs; --", "100% of {{ question }} {% if 1 %}",
    "{# comment #} }} {{", "\\\" \\\\ \\n", "')) OR 1=1; SELECT * FROM read_csv('/etc/passwd')",
    '"""\nrlm docs -> x: str """hi"""\n', "line\nbreak\ttab\rreturn\x00nul\u2028sep",
    "<< question >> <% if true %>", "$(rm -rf /) `id`", "(?i).*[a-z]+\\x{41}", "🙂 ünïcödé",
]
SQL = duckdb.connect()


def _mask(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("class") == "CONSTANT":
            return {"class": "CONSTANT", "kind": node.get("literal", {}).get("kind")}
        return {k: _mask(v) for k, v in node.items() if not k.startswith("query_location")}
    if isinstance(node, list):
        return [_mask(v) for v in node]
    return node


def sql_tree(text: str, predicate: bool = False) -> Any:
    query = jinja2.Template(text).render(input="t")
    if predicate:
        query = f"SELECT * FROM t WHERE ({query})"
    tree = json.loads(SQL.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
    assert not tree["error"], tree
    return _mask(tree["statements"])


def plan_code(plan: Plan) -> list[Any]:
    """Everything of a plan but its values (param defaults, SQL constants)."""
    code = [[(p.name, str(p.type)) for p in plan.params]]
    for step in plan.steps():
        args = [sql_tree(a, predicate=step.kind == "filter")
                if step.strategy == "sql" and isinstance(a, str) else a for a in step.args]
        code.append((step.id, step.kind, step.strategy, step.source, step.table, args,
                     step.options, step.prompt, str(step.output)))
    return code


def placeholders(slots: Slots) -> Slots:
    """The same slots with each distinct value replaced by a harmless one (``t0``, ``t1`` …),
    so that equal values stay equal."""
    names: dict[str, str] = {}
    for value in (*slots.keywords, *slots.entities, slots.group_value or ""):
        names.setdefault(value, f"t{len(names)}")
    return replace(slots, keywords=tuple(names[k] for k in slots.keywords),
                   entities=tuple(names[e] for e in slots.entities),
                   group_value=names[slots.group_value] if slots.group_value else None)


def check(strategy: str, question: str, slots: Slots, kind: str) -> None:
    profile = PROFILES[kind]
    hostile = compile_text(render(strategy, question, profile, slots, Layout()))
    harmless = compile_text(render(strategy, "q", profile, placeholders(clean(
        strategy, slots, profile)), Layout()))
    assert plan_code(hostile) == plan_code(harmless)
    assert [p.default for p in hostile.params] == [_stored(question)]


def _stored(question: str) -> str:
    """The question as the spec keeps it: control characters other than \\n and \\t are
    spaces (the language has no escape for them)."""
    return "".join(" " if (ord(c) < 32 and c not in "\n\t") or ord(c) == 127 else c
                   for c in question)


CASES = [("lookup", "text", Slots()), ("extract_all", "log", Slots(shape="ip")),
         ("extract_all", "text", Slots()), ("count", "jsonl",
                                           Slots(labels=("a", "b"), group_column="user")),
         ("count", "log", Slots()), ("pairs", "jsonl", Slots(labels=("a", "b"))),
         ("summarize", "text", Slots()), ("timeline", "log", Slots()),
         ("free_form", "text", Slots())]
TERMS = st.lists(st.text(min_size=1, max_size=12), max_size=4)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=60)), keywords=TERMS,
       entities=TERMS, value=st.text(min_size=1, max_size=12), case=st.sampled_from(CASES))
def test_hostile_slots_never_change_the_code(question: str, keywords: list[str],
                                             entities: list[str], value: str,
                                             case: tuple[str, str, Slots]) -> None:
    strategy, kind, base = case
    slots = replace(base, keywords=tuple(keywords), entities=tuple(entities),
                    group_value=value if base.group_column else None)
    check(strategy, question, slots, kind)


def test_every_hostile_question_through_the_heuristics() -> None:
    for question in HOSTILE:
        for strategy in STRATEGIES:
            for kind in ("text", "log", "jsonl"):
                slots = heuristic_plan(question, PROFILES[kind]).slots
                check(strategy, question, replace(slots, labels=(), target=None), kind)


@given(st.text(max_size=30))
def test_labels_are_plain_names_or_nothing(text: str) -> None:
    name = label(text)
    assert name is None or (name.isidentifier() and name.isascii() and name == name.lower())
