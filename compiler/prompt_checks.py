"""Prompt checks: which template variables each step provides (docs/architecture.md), validated.

Part of the ``CHECKS`` pipeline. Every template may use the recipe's params; a map or an LM filter
adds ``chunk`` (the current row; its columns are checked when known), concat/tree reduces add
``items`` and ``level``, a fold adds ``items`` and ``state``, and SQL texts (``chunk ... by sql``,
``reduce ... by sql``) add ``input``, the source table's name. An rlm step sees params only.
"""

from __future__ import annotations

from collections.abc import Iterator

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.diagnostics import Diagnostic
from rlm_dsl.compiler.scope import Binder
from rlm_dsl.compiler.templates import check_template
from rlm_dsl.compiler.types import Prim, Type

REDUCE_VARIABLES = {"concat": ("items", "level"), "tree": ("items", "level"),
                    "fold": ("items", "state")}
RESERVED = frozenset(["chunk", "items", "level", "state", "input"])


def _row_columns(ctx: Context, source: Binder | None) -> dict[str, Type | None] | None:
    if source is None:
        return None
    columns = ctx.scope.columns(source)
    if columns is None:
        return None
    value = ctx.scope.value_type(source)
    value_column = columns[1] if value is not None else None  # a step's value follows its id
    return {c: value if c == value_column else Prim("int") if c == "id" else None
            for c in columns}


def _templates(ctx: Context, stmt: ast.Flow) -> Iterator[tuple[ast.Prompt, tuple[str, ...],
                                                                 ast.Name]]:
    """(template, step variables, name of the value the rows come from) per template of ``stmt``."""
    match stmt:
        case ast.MapStmt(prompt=ast.Prompt() as p):
            yield p, ("chunk",), stmt.source
        case ast.FilterStmt(prompt=ast.Prompt() as p):
            yield p, ("chunk",), stmt.target
        case ast.ReduceStmt(strategy=ast.Call(name=ast.Name("sql"), args=(ast.Lit() as q,))):
            yield _as_prompt(q), ("input",), stmt.source
        case ast.ReduceStmt(prompt=ast.Prompt() as p):
            strategy = stmt.strategy.name.value if stmt.strategy else "concat"
            yield p, REDUCE_VARIABLES.get(strategy, ("items",)), stmt.source
        case ast.ChunkStmt(strategy=ast.Call(name=ast.Name("sql"), args=(ast.Lit() as q,))):
            yield _as_prompt(q), ("input",), stmt.source
        case ast.RlmStmt(prompt=ast.Prompt() as p):
            yield p, (), stmt.source


def _as_prompt(lit: ast.Lit) -> ast.Prompt:
    text = lit.value if isinstance(lit.value, str) else ""
    return ast.Prompt(text, lit.span, lit.span.line)


def check_prompts(ctx: Context) -> Iterator[Diagnostic]:
    params = ctx.scope.params
    lines = ctx.text.split("\n")
    for stmt in ctx.flows():
        for prompt, provided, rows in _templates(ctx, stmt):
            variables = {**{p: "param" for p in params}, **{v: "step" for v in provided}}
            columns, hints = None, None
            if "chunk" in provided and rows.value in ctx.scope.bindings:
                source = ctx.scope.resolve(rows.value, stmt)
                columns = _row_columns(ctx, source)
                hints = ctx.scope.column_hints(source) if source else None
            yield from check_template(prompt, lines, variables, columns, hints)


def check_param_names(ctx: Context) -> Iterator[Diagnostic]:
    for name, decl in ctx.scope.params.items():
        if name in RESERVED:
            yield Diagnostic(decl.name.span,
                             f"param '{name}' would hide the template variable of the same name",
                             "choose another name")
