"""Template check: every Jinja2 prompt is parsed and its variables checked at compile time.

A prompt may use the recipe's params plus the variables its step provides (docs/architecture.md:
``chunk`` in map / filter-lm, ``items``/``state``/``level`` in reduces, ``input`` in SQL). Unknown
variables and filters are errors with a did-you-mean hint, found with ``jinja2.meta``; ``chunk.x``
is checked against the columns of the rows the step reads when those are known. Jinja's own line
numbers are mapped back to the spec line and the variable's column on it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cache

from jinja2 import Environment, StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from rlm_dsl.compiler.ast import Prompt
from rlm_dsl.compiler.diagnostics import Diagnostic, did_you_mean
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.types import Optional, Record, Type

# Why a step variable is missing where it was used (see docs/architecture.md).
ELSEWHERE = {
    "chunk": "'chunk' (the current row) exists only in map and lm-filter prompts",
    "items": "'items' exists only in concat, tree and fold reduce prompts",
    "state": "'state' exists only in fold reduce prompts",
    "level": "'level' exists only in concat and tree reduce prompts",
    "input": "'input' (the source table) exists only in SQL texts",
    "context": "an rlm step reaches its input from the REPL as `context`, not in the prompt",
}


@cache
def environment() -> Environment:
    """The one Jinja2 environment of prompts and SQL texts: the compiler checks templates with
    it and every runtime renderer (steps, chunk queries, the estimator) renders with it.

    Sandboxed (a template reaches no Python internals); undefined names are errors; nothing is
    escaped; ``tojson`` keeps key order and writes what JSON lacks (dates) as text. Settings that
    limit rendering belong here, so that checks and runs agree.
    """
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                               keep_trailing_newline=True)
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "default": str}
    return env


def check_template(
    prompt: Prompt,
    lines: Sequence[str],
    variables: Mapping[str, object],
    chunk_columns: Mapping[str, Type | None] | None = None,
    column_hints: Mapping[str, str] | None = None,
) -> list[Diagnostic]:
    """Diagnostics for ``prompt``, a template inside the spec whose lines are ``lines``.

    ``variables`` are the names it may use; ``chunk_columns`` (column -> type, None if untyped)
    enables the ``chunk.<column>`` check when the rows' columns are known; ``column_hints`` gives
    the hint for a missing column that another option would provide.
    """
    try:
        tree = environment().parse(prompt.text)
    except TemplateSyntaxError as exc:
        span = _line_span(prompt, lines, exc.lineno or 1)
        return [Diagnostic(span, f"template syntax error: {exc.message}")]
    except RecursionError:
        return [Diagnostic(_line_span(prompt, lines, 1), "template is nested too deeply")]
    diags = list(_unknown_filters(prompt, lines, tree))
    if diags:  # Jinja's variable tracker would stop at the first unknown filter
        return diags
    try:
        undeclared = _undeclared(tree, variables)
    except TemplateSyntaxError as exc:  # e.g. an unknown test: `is nonsense`
        return [Diagnostic(_line_span(prompt, lines, exc.lineno or 1), f"template error: {exc}")]
    diags = [_unknown(prompt, lines, tree, name, variables)
             for name in sorted(undeclared) if name not in variables]
    if chunk_columns is not None and "chunk" in variables:
        diags.extend(_chunk_attributes(prompt, lines, tree, chunk_columns, column_hints or {}))
    return diags


def _undeclared(tree: nodes.Template, variables: Mapping[str, object]) -> set[str]:
    """Jinja's undeclared variables; skips its (slow) code-generating tracker when every name
    the template reads is a known variable, since undeclared names are a subset of those."""
    loaded = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    if loaded <= variables.keys():
        return set()
    return meta.find_undeclared_variables(tree)


def _unknown(prompt: Prompt, lines: Sequence[str], tree: nodes.Template, name: str,
             variables: Mapping[str, object]) -> Diagnostic:
    lineno = next((n.lineno for n in tree.find_all(nodes.Name) if n.name == name), 1)
    span = _word_span(prompt, lines, lineno, name)
    hint = (did_you_mean(name, variables) or ELSEWHERE.get(name)
            or f"available: {', '.join(sorted(variables)) or 'none'}")
    return Diagnostic(span, f"unknown template variable '{name}'", hint)


def _unknown_filters(
    prompt: Prompt, lines: Sequence[str], tree: nodes.Template
) -> Iterator[Diagnostic]:
    known = environment().filters
    for node in tree.find_all(nodes.Filter):
        if node.name not in known:
            span = _word_span(prompt, lines, node.lineno, node.name)
            yield Diagnostic(span, f"unknown template filter '{node.name}'",
                             did_you_mean(node.name, known))


def _chunk_attributes(prompt: Prompt, lines: Sequence[str], tree: nodes.Template,
                      columns: Mapping[str, Type | None],
                      hints: Mapping[str, str]) -> Iterator[Diagnostic]:
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "chunk":
            if node.attr not in columns:
                span = _word_span(prompt, lines, node.lineno, node.attr)
                yield Diagnostic(span, f"the rows have no column '{node.attr}'",
                                 hints.get(node.attr) or did_you_mean(node.attr, columns)
                                 or f"columns: {', '.join(columns)}")
        elif _is_chunk_column(node.node):
            yield from _record_field(prompt, lines, node, columns)


def _is_chunk_column(node: nodes.Node) -> bool:
    return (isinstance(node, nodes.Getattr) and isinstance(node.node, nodes.Name)
            and node.node.name == "chunk")


def _record_field(prompt: Prompt, lines: Sequence[str], node: nodes.Getattr,
                  columns: Mapping[str, Type | None]) -> Iterator[Diagnostic]:
    column = node.node.attr  # type: ignore[attr-defined]
    value = columns.get(column)
    record = value.item if isinstance(value, Optional) else value
    if isinstance(record, Record) and record.field(node.attr) is None:
        span = _word_span(prompt, lines, node.lineno, node.attr)
        names = [f.name for f in record.fields]
        yield Diagnostic(span, f"'{column}' ({record.name}) has no field '{node.attr}'",
                         did_you_mean(node.attr, names) or f"fields: {', '.join(names)}")


def _spec_line(prompt: Prompt, lineno: int) -> int:
    return min(max(prompt.first_line + lineno - 1, prompt.span.line), prompt.span.end_line)


def _line_span(prompt: Prompt, lines: Sequence[str], lineno: int) -> Span:
    line_no = _spec_line(prompt, lineno)
    line = lines[line_no - 1]
    start = prompt.span.col if line_no == prompt.span.line else len(line) - len(line.lstrip()) + 1
    end = prompt.span.end_col if line_no == prompt.span.end_line else len(line) + 1
    return Span(prompt.span.file, line_no, start, line_no, max(end, start + 1))


def _word_span(prompt: Prompt, lines: Sequence[str], lineno: int, word: str) -> Span:
    """Span of ``word`` on the spec line of template line ``lineno`` (else the prompt start)."""
    line_no = _spec_line(prompt, lineno)
    line = lines[line_no - 1] if line_no <= len(lines) else ""
    start = prompt.span.col - 1 if line_no == prompt.span.line else 0
    found = re.compile(rf"\b{re.escape(word)}\b").search(line, start)
    if not found:
        s = prompt.span
        return Span(s.file, s.line, s.col, s.line, s.col + 3)
    return Span(prompt.span.file, line_no, found.start() + 1, line_no, found.end() + 1)
