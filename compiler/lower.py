"""Lowering: a checked spec (AST + scope) -> the :class:`~rlm_dsl.compiler.plan.Plan`.

Runs only after every check passed, so it may assume names resolve and options are valid. It
follows docs/architecture.md exactly: step ids ``<kind>-<name>`` (a second one gets ``-2``), a
filter writes ``<name>_filtered`` (then ``_filtered_2``), args are the strategy's positional
literals, options are the keyword literals plus the documented defaults, and every step keeps the
span of its statement.
"""

from __future__ import annotations

import os
from typing import Any

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.options import DEFAULTS
from rlm_dsl.compiler.plan import LmBinding, Param, Plan, Step
from rlm_dsl.compiler.scope import Binder
from rlm_dsl.compiler.types import Field, Optional, Prim


def lower(ctx: Context) -> Plan:
    """Build the plan of a spec that passed every check."""
    scope = ctx.scope
    assert scope.header is not None
    plan = Plan(
        recipe=scope.header.name.value,
        description=scope.header.description.value if scope.header.description else "",
        path=ctx.spec.path,
        params=tuple(_param(ctx, p) for p in scope.params.values()),
        lms=tuple(_lm(d) for d in scope.lms.values()),
        outputs=tuple(n.value for out in scope.outputs for n in out.names),
        uses=dict(ctx.sub_plans),
    )
    ids: dict[int, str] = {}  # id(stmt) -> step id
    tables: dict[int, str] = {}
    steps = [s for s in ctx.spec.statements if isinstance(s, ast.InputDecl | ast.Flow)]
    for stmt in steps:  # ids first: forward references need the producer's id and table
        ids[id(stmt)], tables[id(stmt)] = _names(stmt, ids.values(), tables.values())
    for stmt in steps:
        source = _source(ctx, stmt)
        step = _step(ctx, stmt, ids[id(stmt)], tables[id(stmt)],
                     tables[id(source)] if source else None)
        plan.graph.add_node(step.id, step=step)
        if source is not None:
            plan.graph.add_edge(ids[id(source)], step.id)
    return plan


def _names(stmt: Binder, ids: Any, tables: Any) -> tuple[str, str]:
    kind = "input" if isinstance(stmt, ast.InputDecl) else _KIND[type(stmt)]
    name = (stmt.name if isinstance(stmt, ast.InputDecl) else stmt.target).value
    step_id, table = f"{kind}-{name}", name
    if isinstance(stmt, ast.FilterStmt):
        table = f"{name}_filtered"
    taken_ids, taken_tables = set(ids), set(tables)
    n = 2
    base_id, base_table = step_id, table
    while step_id in taken_ids or table in taken_tables:
        step_id, table = f"{base_id}-{n}", f"{base_table}_{n}"
        n += 1
    return step_id, table


_KIND = {ast.ChunkStmt: "chunk", ast.FilterStmt: "filter", ast.MapStmt: "map",
         ast.ReduceStmt: "reduce", ast.RlmStmt: "rlm"}


def _source(ctx: Context, stmt: Binder) -> Binder | None:
    if isinstance(stmt, ast.InputDecl):
        return None
    name = stmt.target if isinstance(stmt, ast.FilterStmt) else stmt.source
    return ctx.scope.resolve(name.value, stmt)


def _beside_spec(spec_path: str, path: Any) -> Any:
    """A ``path=`` written in a spec is relative to the spec's folder, like a ``use`` path (an
    ``--input`` on the command line is relative to the working directory)."""
    if isinstance(path, list):
        return [_beside_spec(spec_path, p) for p in path]
    if not isinstance(path, str) or os.path.isabs(os.path.expanduser(path)):
        return path
    return os.path.normpath(os.path.join(os.path.dirname(spec_path), path))


def _kwargs(kwargs: tuple[ast.Kwarg, ...]) -> dict[str, Any]:
    return {kw.name.value: kw.value.value for kw in kwargs}


def _step(ctx: Context, stmt: Binder, step_id: str, table: str, source: str | None) -> Step:
    common: dict[str, Any] = {"id": step_id, "table": table, "span": stmt.span, "source": source}
    match stmt:
        case ast.InputDecl():
            options = _kwargs(stmt.options)
            if "path" in options:
                options["path"] = _beside_spec(ctx.spec.path, options["path"])
            return Step(kind="input", name=stmt.name.value, strategy=stmt.kind.value,
                        options=options, **common)
        case ast.ChunkStmt(strategy=call):
            options = {**DEFAULTS.get(("chunk", call.name.value), {}), **_kwargs(call.kwargs)}
            return Step(kind="chunk", name=stmt.target.value, strategy=call.name.value,
                        args=tuple(a.value for a in call.args), options=options, **common)
        case ast.FilterStmt():
            return Step(kind="filter", name=stmt.target.value, strategy=stmt.how.value,
                        args=(stmt.arg.value,) if stmt.arg else (),
                        options=_kwargs(stmt.options), prompt=_text(stmt.prompt),
                        lm=_lm_name(stmt.lm), **common)
        case ast.MapStmt():
            return _map(ctx, stmt, common)
        case ast.ReduceStmt():
            return _reduce(ctx, stmt, common)
        case ast.RlmStmt():
            options = {**DEFAULTS[("rlm", "rlm")], **_kwargs(stmt.options)}
            return Step(kind="rlm", name=stmt.target.value, strategy="rlm", options=options,
                        prompt=_text(stmt.prompt), output=_output(ctx, stmt),
                        lm=_lm_name(stmt.lm), sub_lm=_lm_name(stmt.sub_lm), **common)
    raise TypeError(f"cannot lower {type(stmt).__name__}")


def _map(ctx: Context, stmt: ast.MapStmt, common: dict[str, Any]) -> Step:
    return Step(kind="map", name=stmt.target.value, strategy="predict",
                options=_kwargs(stmt.options), prompt=_text(stmt.prompt),
                output=_output(ctx, stmt), lm=_lm_name(stmt.lm),
                recipe=stmt.recipe.value if stmt.recipe else None, **common)


def _reduce(ctx: Context, stmt: ast.ReduceStmt, common: dict[str, Any]) -> Step:
    call = stmt.strategy
    strategy = call.name.value if call else "concat"
    options = {**DEFAULTS.get(("reduce", strategy), {}),
               **(_kwargs(call.kwargs) if call else {}), **_kwargs(stmt.options)}
    if stmt.field is not None:
        options["field"] = stmt.field.value
    # an untyped `reduce … by sql` keeps the query's own columns; a typed one is checked
    output = None if strategy == "sql" and stmt.type is None else _output(ctx, stmt)
    return Step(kind="reduce", name=stmt.target.value, strategy=strategy,
                args=tuple(a.value for a in call.args) if call else (), options=options,
                prompt=_text(stmt.prompt), output=output, lm=_lm_name(stmt.lm), **common)


def _output(ctx: Context, stmt: ast.MapStmt | ast.ReduceStmt | ast.RlmStmt) -> Field:
    value = ctx.scope.value_type(stmt) or Prim("str")
    return Field(stmt.target.value, value)


def _text(prompt: ast.Prompt | None) -> str | None:
    return prompt.text if prompt else None


def _lm_name(name: ast.Name | None) -> str | None:
    return name.value if name else None


def _param(ctx: Context, decl: ast.ParamDecl) -> Param:
    t = ctx.scope.declared.get(id(decl)) or Prim("str")
    default = decl.default.value if decl.default else None
    required = decl.default is None and not isinstance(t, Optional)
    return Param(decl.name.value, t, default, decl.span, required)


def _lm(decl: ast.LmDecl) -> LmBinding:
    return LmBinding(decl.name.value, decl.model.value if decl.model else None,
                     decl.env.value if decl.env else None, _kwargs(decl.options), decl.span)
