"""Semantic checks: every problem in a parsed spec, collected at once (the ``CHECKS`` tuple).

Each check is a small pure function ``Context -> Iterable[Diagnostic]`` over the AST and its
:class:`~rlm_dsl.compiler.scope.Scope`; the driver runs them all, sorts what they report by
position and raises one :class:`CompileError`. This module holds the recipe-level checks (header,
names, references, LMs, params, outputs, cycles); the per-step checks (strategies, options, type
flow, templates) live in :mod:`rlm_dsl.compiler.step_checks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import networkx as nx

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.diagnostics import Diagnostic, did_you_mean
from rlm_dsl.compiler.options import LM_OPTIONS, literal_problem
from rlm_dsl.compiler.prompt_checks import check_param_names, check_prompts
from rlm_dsl.compiler.scope import defined_name
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.sql_checks import check_sql
from rlm_dsl.compiler.step_checks import STEP_CHECKS, check_kwargs
from rlm_dsl.compiler.trust_checks import TRUST_CHECKS


def check_header(ctx: Context) -> Iterator[Diagnostic]:
    if ctx.scope.header is None:
        first = ctx.spec.statements[0].span if ctx.spec.statements else ctx.spec.end
        yield Diagnostic(Span(first.file, first.line, first.col, first.line, first.col + 1),
                         "missing 'recipe' header",
                         'start the spec with: recipe <name> "what it does"')


def check_outputs(ctx: Context) -> Iterator[Diagnostic]:
    outputs = ctx.scope.outputs
    if not outputs:
        yield Diagnostic(ctx.spec.end, "the recipe has no 'output'",
                         "add 'output <value>' naming what a run returns")
    for extra in outputs[1:]:
        yield Diagnostic(extra.span, "a recipe has one 'output' statement",
                         f"list every value on line {outputs[0].span.line}: output a, b")
    seen: set[str] = set()
    for decl in outputs:
        for name in decl.names:
            if name.value in seen:
                yield Diagnostic(name.span, f"'{name.value}' is already an output")
            seen.add(name.value)
            if name.value not in ctx.scope.bindings:
                yield _unknown_value(ctx, name)


def _unknown_value(ctx: Context, name: ast.Name) -> Diagnostic:
    scope = ctx.scope
    if name.value in scope.params:
        hint = "params are template variables ({{ " + name.value + " }}), not values"
    elif name.value in scope.lms or name.value in scope.uses:
        hint = f"'{name.value}' is {'an lm' if name.value in scope.lms else 'a used recipe'}"
    else:
        defined = {n for n, chain in scope.bindings.items()
                   if any(not isinstance(b, ast.FilterStmt) for b in chain)}
        hint = did_you_mean(name.value, defined - {name.value})
    return Diagnostic(name.span, f"unknown name '{name.value}'", hint)


def check_references(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.flows():
        if isinstance(stmt, ast.FilterStmt):
            chain = ctx.scope.bindings[stmt.target.value]
            definition = next((b for b in chain if not isinstance(b, ast.FilterStmt)), None)
            if definition is None:
                yield _unknown_value(ctx, stmt.target)
            elif ctx.scope.index(definition) > ctx.scope.index(stmt):
                yield Diagnostic(stmt.target.span,
                                 f"filter of '{stmt.target.value}' before it is defined",
                                 f"move it below line {definition.span.line}")
        elif stmt.source.value not in ctx.scope.bindings:
            yield _unknown_value(ctx, stmt.source)


def _lm_refs(stmt: ast.Statement) -> Iterator[ast.Name]:
    match stmt:
        case ast.FilterStmt(lm=lm) | ast.MapStmt(lm=lm) | ast.ReduceStmt(lm=lm) if lm:
            yield lm
        case ast.RlmStmt(lm=lm, sub_lm=sub):
            yield from (n for n in (lm, sub) if n)


def check_lm_names(ctx: Context) -> Iterator[Diagnostic]:
    for stmt in ctx.spec.statements:
        for name in _lm_refs(stmt):
            if name.value not in ctx.scope.lms:
                yield Diagnostic(name.span, f"unknown lm '{name.value}'",
                                 did_you_mean(name.value, ctx.scope.lms)
                                 or "declare it: lm <name> = \"<model id>\"")
        recipe = stmt.recipe if isinstance(stmt, ast.MapStmt) else None
        if recipe and recipe.value not in ctx.scope.uses:
            yield Diagnostic(recipe.span, f"unknown recipe '{recipe.value}'",
                             did_you_mean(recipe.value, ctx.scope.uses)
                             or 'declare it: use "other.rlm" as <name>')


def check_lm_decls(ctx: Context) -> Iterator[Diagnostic]:
    for decl in ctx.scope.lms.values():
        yield from check_kwargs(decl.options, LM_OPTIONS, "lm bindings")
        if decl.model is not None and not decl.model.value.strip():
            yield Diagnostic(decl.model.span, "empty model id",
                             'use a LiteLLM model id such as "openai/gpt-4o-mini", or "local"')
        if decl.env is not None and not decl.env.value.strip():
            yield Diagnostic(decl.env.span, "empty environment variable name")


def check_params(ctx: Context) -> Iterator[Diagnostic]:
    for decl in ctx.scope.params.values():
        declared = ctx.scope.declared.get(id(decl))
        if decl.default is None or declared is None:
            continue
        problem = literal_problem(decl.default.value, declared)
        if problem:
            yield Diagnostic(decl.default.span,
                             f"default of param '{decl.name.value}' {problem}")


def check_cycles(ctx: Context) -> Iterator[Diagnostic]:
    graph = nx.DiGraph()
    for stmt in ctx.flows():
        name = stmt.target if isinstance(stmt, ast.FilterStmt) else stmt.source
        source = ctx.scope.resolve(name.value, stmt)
        if source is not None and not (source is stmt and isinstance(stmt, ast.FilterStmt)):
            graph.add_edge(ctx.scope.index(source), ctx.scope.index(stmt))
    statements = ctx.spec.statements
    for component in nx.strongly_connected_components(graph):
        if len(component) > 1 or graph.has_edge(*[next(iter(component))] * 2):
            first = statements[min(component)]
            names = [defined_name(statements[i]).value for i in sorted(component)]
            names = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
            yield Diagnostic(defined_name(first).span,
                             f"values depend on each other in a cycle: "
                             f"{' -> '.join([*names, names[0]])}",
                             "a step can only read values that do not depend on it")


def check_uses(ctx: Context) -> Iterator[Diagnostic]:
    for alias, decl in ctx.scope.uses.items():
        plan = ctx.sub_plans.get(alias)
        if plan is None:
            continue  # reading or compiling it failed; reported by the driver
        if len(plan.outputs) != 1:
            yield Diagnostic(decl.path.span,
                             f"used recipe '{plan.recipe}' must have exactly one output "
                             f"(it has {len(plan.outputs)})")
        inputs = [s for s in plan.steps() if s.kind == "input"]
        if len(inputs) != 1:
            yield Diagnostic(decl.path.span,
                             f"used recipe '{plan.recipe}' must have exactly one input "
                             f"(it has {len(inputs)}); each row is passed to it as that input")


Check = Callable[[Context], Iterable[Diagnostic]]

CHECKS: tuple[Check, ...] = (
    check_header,
    check_outputs,
    check_references,
    check_lm_names,
    check_lm_decls,
    check_params,
    check_uses,
    check_param_names,
    *STEP_CHECKS,
    *TRUST_CHECKS,
    check_prompts,
    check_sql,
    check_cycles,
)
