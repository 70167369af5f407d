"""The compiler driver: spec text -> parse -> scope -> CHECKS -> lowering -> Plan.

:func:`compile_source` runs the whole front end on one spec and, recursively, on every recipe it
``use``s (paths relative to the spec's folder). Every diagnostic of the spec and of its used
recipes (under their own paths) is collected and raised once as a :class:`CompileError`;
``use`` cycles are reported, not followed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.checks import CHECKS
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.diagnostics import CompileError, Diagnostic
from rlm_dsl.compiler.lower import lower
from rlm_dsl.compiler.parser import parse
from rlm_dsl.compiler.plan import Plan
from rlm_dsl.compiler.scope import build_scope
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.types import Field

MAX_SPEC_CHARS = 1_000_000  # specs are short programs; bigger texts are refused, not parsed


@dataclass(slots=True)
class _Found:
    """What compiling the used recipes produced."""

    plans: dict[str, Plan] = field(default_factory=dict)
    diags: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)


def compile_source(text: str, path: str, _stack: tuple[str, ...] = ()) -> Plan:
    """Compile the spec ``text`` read from ``path`` (used in messages) into a Plan."""
    head = Span(path, 1, 1, 1, 2)
    if len(text) > MAX_SPEC_CHARS:
        raise CompileError([Diagnostic(head, f"spec is too large ({len(text):,} characters; "
                                              f"the limit is {MAX_SPEC_CHARS:,})")], {})
    if not text.strip():
        raise CompileError([Diagnostic(head, "spec is empty",
                                       'start with: recipe <name> "what it does"')], {})
    spec = parse(text, path)
    if not spec.statements:
        raise CompileError([Diagnostic(head, "spec is empty (it has only comments)",
                                       'start with: recipe <name> "what it does"')], {})
    found = _compile_uses(spec, (*_stack, os.path.abspath(path)))
    scope, diags = build_scope(spec)
    scope.sub_outputs.update({alias: _single_output(p) for alias, p in found.plans.items()})
    ctx = Context(spec, scope, text, found.plans)
    diags.extend(found.diags)
    for check in CHECKS:
        diags.extend(check(ctx))
    if diags:
        raise CompileError(diags, {**found.sources, path: text}, primary=path)
    return lower(ctx)


def _single_output(plan: Plan) -> Field | None:
    if len(plan.outputs) != 1:
        return None
    step = plan.producer(plan.outputs[0])
    return step.output


def _compile_uses(spec: ast.Spec, stack: tuple[str, ...]) -> _Found:
    found = _Found()
    base = os.path.dirname(spec.path)
    for stmt in spec.statements:
        if isinstance(stmt, ast.UseDecl) and isinstance(stmt.path.value, str):
            _compile_use(stmt, os.path.normpath(os.path.join(base, stmt.path.value)), stack, found)
    return found


def _compile_use(stmt: ast.UseDecl, sub_path: str, stack: tuple[str, ...], found: _Found) -> None:
    span = stmt.path.span
    if os.path.abspath(sub_path) in stack:
        chain = " -> ".join(os.path.basename(p) for p in (*stack, sub_path))
        found.diags.append(Diagnostic(span, f"recipes use each other in a cycle: {chain}"))
        return
    try:
        with open(sub_path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        found.diags.append(Diagnostic(span, f"cannot read used recipe '{sub_path}': {reason}"))
        return
    try:
        found.plans[stmt.alias.value] = compile_source(text, sub_path, stack)
    except CompileError as exc:
        count = len(exc.diagnostics)
        found.diags.append(Diagnostic(span, f"used recipe '{sub_path}' has {count} "
                                            f"error{'s' if count != 1 else ''}"))
        found.diags.extend(exc.diagnostics)
        found.sources.update(exc.sources)
