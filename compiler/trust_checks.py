"""Checks of the options that keep unverifiable text out of answers: ``grounded`` and ``empty``.

Part of the ``CHECKS`` pipeline (:mod:`rlm_dsl.compiler.checks`). ``map … with grounded=[f, …]``
names output fields whose values must occur in the row's text (the runtime re-asks, then nulls
them): each name must be the map's value itself (when it is ``str`` or ``list[str]``) or a
``str`` / ``list[str]`` field of its record output (of each element for ``list[Record]``); every
wrong name is reported at its own position. ``reduce … with empty=…`` is the value of a reduce
over no item (no LM is called) and must be a literal of the reduce's output type.
"""

from __future__ import annotations

from collections.abc import Iterator

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.diagnostics import Diagnostic, did_you_mean
from rlm_dsl.compiler.options import literal_problem
from rlm_dsl.compiler.types import ListOf, Optional, Prim, Record, Type


def _strip(t: Type) -> Type:
    return t.item if isinstance(t, Optional) else t


def is_text(t: Type) -> bool:
    """``str``, ``str?``, ``list[str]`` (or optional forms): the types a grounded value may have."""
    inner = _strip(t)
    if isinstance(inner, ListOf):
        inner = _strip(inner.item)
    return inner == Prim("str")


def output_record(t: Type) -> Record | None:
    """The record whose fields ``grounded`` names: the output, or its list's element type."""
    inner = _strip(t)
    if isinstance(inner, ListOf):
        inner = _strip(inner.item)
    return inner if isinstance(inner, Record) else None


def grounded_problem(out: Type, value: str, name: str) -> tuple[str, str | None] | None:
    """None when ``name`` can be grounded in a map to ``value: out``; else (message, hint)."""
    record = output_record(out)
    if record is None:
        if name != value:
            return (f"'{name}' is not the map's value '{value}'",
                    f"the map returns {out}: write grounded=[{value}]")
        if not is_text(out):
            return (f"grounded needs text: '{value}' is {out}",
                    "only str and list[str] values can be found in the row's text")
        return None
    found = record.field(name)
    if found is None:
        names = [f.name for f in record.fields]
        return (f"{record.name} has no field '{name}'",
                did_you_mean(name, names) or f"fields: {', '.join(names)}")
    if not is_text(found.type):
        return (f"grounded needs text: {record.name}.{name} is {found.type}",
                "only str and list[str] fields can be found in the row's text")
    return None


def check_grounded(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if not isinstance(stmt, ast.MapStmt) or stmt.recipe is not None:
            continue
        out = ctx.scope.declared.get(id(stmt)) or Prim("str")
        for kw in stmt.options:
            if kw.name.value != "grounded" or not isinstance(kw.value.value, list):
                continue
            for item in kw.value.items:
                if not isinstance(item.value, str):
                    continue  # the option rule reports it
                problem = grounded_problem(out, stmt.target.value, item.value)
                if problem is not None:
                    yield Diagnostic(item.span, problem[0], problem[1])


def check_empty(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if not isinstance(stmt, ast.ReduceStmt):
            continue
        kwargs = [*stmt.options, *(stmt.strategy.kwargs if stmt.strategy else ())]
        given = next((kw for kw in kwargs if kw.name.value == "empty"), None)
        out = ctx.scope.value_type(stmt)
        if given is None or given.value.value is None or out is None:
            continue
        if problem := literal_problem(given.value.value, out):
            yield Diagnostic(given.value.span,
                             f"empty {problem} (the value of '{stmt.target.value}' is {out})")


TRUST_CHECKS = (check_grounded, check_empty)
