"""Per-step semantic checks: strategies, arguments, options, type flow and prompt templates.

Part of the ``CHECKS`` pipeline (:mod:`rlm_dsl.compiler.checks`). Strategy and option vocabularies
come from :mod:`rlm_dsl.compiler.options`; templates are validated by
:mod:`rlm_dsl.compiler.templates`. Type flow means a step only reads what its source provides:
a reduce over a record field the map does not produce, a vote over non-label values, a regex
filter over rows without text, or a chunk over LM results are all reported here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.diagnostics import Diagnostic, did_you_mean
from rlm_dsl.compiler.options import (
    ARGS,
    INPUT_OPTIONS,
    OPTIONS,
    Rule,
    literal_problem,
    strategies,
)
from rlm_dsl.compiler.scope import Binder
from rlm_dsl.compiler.types import Enum, Optional, Prim, Record, Type


def check_kwargs(kwargs: Iterable[ast.Kwarg], rules: Mapping[str, Rule],
                 owner: str) -> Iterator[Diagnostic]:
    """Unknown, repeated and invalid ``name=value`` options of ``owner`` (named in messages)."""
    seen: set[str] = set()
    for kw in kwargs:
        name = kw.name.value
        if name in seen:
            yield Diagnostic(kw.name.span, f"option '{name}' is given twice")
        seen.add(name)
        rule = rules.get(name)
        if rule is None:
            known = ", ".join(sorted(rules)) or "none"
            yield Diagnostic(kw.name.span, f"unknown option '{name}' for {owner}",
                             did_you_mean(name, rules) or f"allowed: {known}")
        elif problem := rule.problem(kw.value.value):
            yield Diagnostic(kw.value.span, f"{name} {problem}")


def _regex(lit: ast.Lit) -> Iterator[Diagnostic]:
    try:
        re.compile(lit.value)
    except re.error as exc:
        yield Diagnostic(lit.span, f"invalid regular expression: {exc}")


def check_inputs(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.spec.statements:
        if not isinstance(stmt, ast.InputDecl):
            continue
        rules = INPUT_OPTIONS.get(stmt.kind.value)
        if rules is None:
            yield Diagnostic(stmt.kind.span, f"unknown input kind '{stmt.kind.value}'",
                             did_you_mean(stmt.kind.value, INPUT_OPTIONS)
                             or f"kinds: {', '.join(INPUT_OPTIONS)}")
        else:
            yield from check_kwargs(stmt.options, rules, f"{stmt.kind.value} inputs")


def _strategy(kind: str, call: ast.Call) -> Iterator[Diagnostic]:
    """Known strategy, right positional arguments, valid keyword options."""
    name = call.name.value
    spec = ARGS.get((kind, name))
    if spec is None:
        yield Diagnostic(call.name.span, f"unknown {kind} strategy '{name}'",
                         did_you_mean(name, strategies(kind))
                         or f"strategies: {', '.join(strategies(kind))}")
        return
    if len(call.args) != len(spec):
        wanted = ", ".join(n for n, _ in spec) or "no arguments"
        yield Diagnostic(call.span, f"{name} takes {len(spec)} positional argument"
                         f"{'s' if len(spec) != 1 else ''} ({wanted}), got {len(call.args)}")
    for (arg_name, rule), lit in zip(spec, call.args, strict=False):
        if problem := rule.problem(lit.value):
            yield Diagnostic(lit.span, f"{arg_name} {problem}")
    yield from check_kwargs(call.kwargs, OPTIONS.get((kind, name), {}), f"{kind} by {name}")


def check_chunks(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if not isinstance(stmt, ast.ChunkStmt):
            continue
        call = stmt.strategy
        yield from _strategy("chunk", call)
        values = {kw.name.value: kw.value for kw in call.kwargs}
        if "overlap" in values and call.args and isinstance(call.args[0].value, int):
            overlap = values["overlap"]
            if isinstance(overlap.value, int) and overlap.value >= call.args[0].value:
                yield Diagnostic(overlap.span,
                                 f"overlap ({overlap.value}) must be smaller than the chunk size "
                                 f"({call.args[0].value})")
        if call.name.value == "regex" and call.args and isinstance(call.args[0].value, str):
            yield from _regex(call.args[0])
        yield from _chunk_source(ctx, stmt)


def _chunk_source(ctx: Context, stmt: ast.ChunkStmt) -> Iterator[Diagnostic]:
    source = ctx.scope.resolve(stmt.source.value, stmt)
    if source is None:
        return
    if ctx.scope.value_type(source) is not None:
        yield Diagnostic(stmt.source.span,
                         f"'{stmt.source.value}' holds LM results; chunk an input or chunks",
                         "map or reduce it instead")
        return
    columns = ctx.scope.columns(source)
    call = stmt.strategy
    wanted = [lit for lit in call.args if call.name.value == "column"]
    wanted += [kw.value for kw in call.kwargs if kw.name.value == "column"]
    for lit in wanted:
        if columns is not None and isinstance(lit.value, str) and lit.value not in columns:
            yield Diagnostic(lit.span, f"'{stmt.source.value}' has no column '{lit.value}'",
                             did_you_mean(lit.value, columns) or f"columns: {', '.join(columns)}")


def check_filters(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if not isinstance(stmt, ast.FilterStmt):
            continue
        if stmt.how.value == "lm":
            yield from check_kwargs(stmt.options, OPTIONS[("filter", "lm")], "lm filters")
            continue
        assert stmt.arg is not None
        if not stmt.arg.value.strip():
            yield Diagnostic(stmt.arg.span, f"empty {stmt.how.value} predicate")
        elif stmt.how.value == "regex":
            yield from _regex(stmt.arg)
            source = ctx.scope.resolve(stmt.target.value, stmt)
            columns = ctx.scope.columns(source) if source else None
            if columns is not None and "text" not in columns:
                yield Diagnostic(stmt.how.span,
                                 f"regex filters match the 'text' column; '{stmt.target.value}' "
                                 f"has columns {', '.join(columns)}",
                                 "use: filter ... where sql \"<column> SIMILAR TO '...'\"")


def check_maps(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if not isinstance(stmt, ast.MapStmt):
            continue
        if stmt.recipe is None:
            yield from check_kwargs(stmt.options, OPTIONS[("map", "predict")], "map")
            if stmt.prompt is None:
                yield Diagnostic(stmt.target.span, f"map to '{stmt.target.value}' needs a prompt",
                                 'end the statement with """<prompt using {{ chunk.text }}>"""')
            continue
        yield from check_kwargs(stmt.options, OPTIONS[("map", "recipe")], "recipe maps")
        if stmt.prompt is not None:
            yield Diagnostic(stmt.prompt.span, "a map that runs a recipe takes no prompt")
        yield from _recipe_map(ctx, stmt)


def _recipe_map(ctx: Context, stmt: ast.MapStmt) -> Iterator[Diagnostic]:
    plan = ctx.sub_plans.get(stmt.recipe.value) if stmt.recipe else None
    if plan is None:
        return
    params = {p.name: p for p in plan.params}
    for kw in stmt.options:
        if kw.name.value != "params" or not isinstance(kw.value.value, dict):
            continue
        for key, value in kw.value.value.items():
            if key not in params:
                yield Diagnostic(kw.value.span, f"recipe '{plan.recipe}' has no param '{key}'",
                                 did_you_mean(key, params))
            elif problem := literal_problem(value, params[key].type):
                yield Diagnostic(kw.value.span, f"param '{key}' {problem}")
    declared = ctx.scope.declared.get(id(stmt))
    output = ctx.scope.sub_outputs.get(stmt.recipe.value) if stmt.recipe else None
    if declared is not None and output is not None and output.type != declared:
        yield Diagnostic(stmt.type.span if stmt.type else stmt.target.span,
                         f"recipe '{plan.recipe}' returns {output.type}, not {declared}")


def _is_label(t: Type | None) -> bool:
    inner = t.item if isinstance(t, Optional) else t
    return isinstance(inner, Enum) or (isinstance(inner, Prim) and inner.name != "float")


def check_reduces(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if isinstance(stmt, ast.ReduceStmt):
            yield from _reduce(ctx, stmt)


def _reduce(ctx: Context, stmt: ast.ReduceStmt) -> Iterator[Diagnostic]:
    call = stmt.strategy
    name = call.name.value if call else "concat"
    if call is not None:
        yield from _strategy("reduce", call)
    if ("reduce", name) not in ARGS:
        return
    rules = OPTIONS.get(("reduce", name), {})
    yield from check_kwargs(stmt.options, rules, f"reduce by {name}")
    given = {kw.name.value for kw in call.kwargs} if call else set()
    for kw in stmt.options:
        if kw.name.value in given:
            yield Diagnostic(kw.name.span, f"option '{kw.name.value}' is given twice")
    if name in ("sql", "vote"):
        yield from _no_lm(stmt, name)
    elif stmt.prompt is None:
        yield Diagnostic(stmt.target.span, f"reduce by {name} needs a prompt",
                         'end the statement with """<prompt using {{ items }}>"""')
    source = ctx.scope.resolve(stmt.source.value, stmt)
    if source is not None and name != "sql":
        yield from _reduce_items(ctx, stmt, source, name)


def _no_lm(stmt: ast.ReduceStmt, name: str) -> Iterator[Diagnostic]:
    where = "in DuckDB" if name == "sql" else "without an LM"
    if stmt.lm is not None:
        yield Diagnostic(stmt.lm.span, f"reduce by {name} runs {where} and takes no LM",
                         f"remove 'using {stmt.lm.value}'")
    if stmt.prompt is not None:
        yield Diagnostic(stmt.prompt.span, f"reduce by {name} runs {where} and takes no prompt")
    if name == "sql" and stmt.field is not None:
        yield Diagnostic(stmt.field.span, "reduce by sql reads whole rows; '.field' has no effect",
                         f"select it in the query: SELECT {stmt.source.value}.{stmt.field.value} "
                         "FROM {{ input }} ...")


def _reduce_items(ctx: Context, stmt: ast.ReduceStmt, source: Binder,
                  name: str) -> Iterator[Diagnostic]:
    value = ctx.scope.value_type(source)
    src = stmt.source
    if value is None:
        yield Diagnostic(src.span, f"'{src.value}' is a table of rows, not LM results",
                         f"map it first, or use: reduce {src.value} -> ... by sql \"...\"")
        return
    if stmt.field is not None:
        record = value.item if isinstance(value, Optional) else value
        if not isinstance(record, Record):
            yield Diagnostic(stmt.field.span, f"'{src.value}' is {value}, which has no fields")
            return
        if record.field(stmt.field.value) is None:
            names = [f.name for f in record.fields]
            yield Diagnostic(stmt.field.span,
                             f"'{src.value}' ({record.name}) has no field '{stmt.field.value}'",
                             did_you_mean(stmt.field.value, names) or f"fields: {', '.join(names)}")
            return
    item = ctx.scope.reduce_item_type(stmt)
    if name == "vote" and not _is_label(item):
        yield Diagnostic(src.span, f"vote needs labels (an enum, str, int or bool), "
                         f"but the items are {item}",
                         "vote over one field: reduce <value>.<field> -> ... by vote")


def check_rlms(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if not isinstance(stmt, ast.RlmStmt):
            continue
        yield from check_kwargs(stmt.options, OPTIONS[("rlm", "rlm")], "rlm")
        if stmt.prompt is None:
            yield Diagnostic(stmt.target.span, f"rlm step '{stmt.target.value}' needs a prompt",
                             'end the statement with """<the task>"""')
        values = {kw.name.value: kw.value for kw in stmt.options}
        tools, depth = values.get("tools"), values.get("depth")
        depth_n = depth.value if depth is not None else 1
        wants_sub = tools and isinstance(tools.value, list) and "rlm_query" in tools.value
        if wants_sub and isinstance(depth_n, int) and depth_n < 2:
            yield Diagnostic(tools.span, "the rlm_query tool needs depth=2 or more",
                             "add depth=2 (each level may call the next)")


STEP_CHECKS = (check_inputs, check_chunks, check_filters, check_maps, check_reduces, check_rlms)
