"""What a spec the LM wrote itself may do: read the question's files, and nothing else.

Planner stage (``rlm ask --write-spec``). A written spec is untrusted input: it compiled, but it
could still name other files, other models or other recipes. :func:`problems` holds it to the
example it was written from — one input, ``docs``, declared exactly as the example declares it
(its files are the user's paths); no ``use`` of other recipes; no ``lm`` bindings (every step runs
on the model ``rlm ask`` was given, so no binding can send the input to another endpoint); an
``answer`` output — and checks every SQL text of the plan with the REPL's own parse-tree rule
(:func:`~rlm_dsl.runtime.repl.tools.check_tree`): it may read only the plan's tables and its
CTEs, no file, URL, extension or host variable. Prompts need no check here: every spec's
templates render in the compiler's sandboxed Jinja environment. The problems go back to the LM
for repair like compiler diagnostics.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache

import duckdb
from jinja2 import TemplateError

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.compiler.templates import environment
from rlm_dsl.runtime.repl.tools import SqlRefused, check_tree

_PLACEHOLDER = "rlm_placeholder"  # what {{ input }} and params render as in a checked query
_PREDICATE_TABLE = "rlm_rows"


def problems(plan: Plan, example: Plan) -> list[str]:
    """Why ``plan`` (written by the LM) may not run, as messages for the LM; [] when it may."""
    found: list[str] = []
    inputs = [step for step in plan.steps() if step.kind == "input"]
    wanted = next(step for step in example.steps() if step.kind == "input")
    if [(s.name, s.strategy, s.options) for s in inputs] != \
            [(wanted.name, wanted.strategy, wanted.options)]:
        found.append("keep exactly the example's input line (`input docs: ...`): a written "
                     "spec reads only the question's files")
    if plan.uses:
        found.append("do not `use` other recipes: write every step in this spec")
    if plan.lms:
        found.append("do not bind LMs (`lm NAME = ...`): every step runs on the model rlm ask "
                     "was given")
    if "answer" not in plan.outputs:
        found.append("output the answer as a value named answer (`output answer`)")
    tables = {step.table for step in plan.steps()} | {step.name for step in plan.steps()}
    params = [param.name for param in plan.params]
    for step, sql in _sql_texts(plan):
        refusal = _refusal(sql, tables | {_PLACEHOLDER, _PREDICATE_TABLE}, params)
        if refusal:
            found.append(f"step {step.id}: its SQL {refusal}")
    return found


def _sql_texts(plan: Plan) -> Iterator[tuple[Step, str]]:
    for step in plan.steps():
        if step.strategy != "sql" or not step.args:
            continue
        text = str(step.args[0])
        yield step, (f"SELECT * FROM {_PREDICATE_TABLE} WHERE ({text}\n)"
                     if step.kind == "filter" else text)


def _refusal(sql: str, tables: set[str], params: list[str]) -> str | None:
    try:
        rendered = environment().from_string(sql).render(
            {name: _PLACEHOLDER for name in [*params, "input"]})
    except TemplateError as error:
        return f"is not a valid template ({error})"
    tree = json.loads(_connection().execute("SELECT json_serialize_sql(?)", [rendered])
                      .fetchone()[0])
    if tree.get("error"):
        return f"is not one SELECT statement ({tree.get('error_message', 'cannot parse it')})"
    try:
        check_tree(tree, tables, "memory")
    except SqlRefused as refused:
        return f"is refused: {str(refused).replace('sql()', 'a written spec')}"
    return None


@cache
def _connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")
