"""Template check: every Jinja2 prompt is parsed and its variables checked at compile time.

A prompt may use the recipe's params plus the variables its step provides (docs/architecture.md:
``chunk`` in map / filter-lm, ``items``/``state``/``level`` in reduces, ``input`` in SQL). Unknown
variables and filters are errors with a did-you-mean hint, found with ``jinja2.meta``; ``chunk.x``
is checked against the columns of the rows the step reads when those are known; a private
attribute (``x.__init__``, ``x['_y']``) is an error, since specs may be written by a model. Jinja's
own line numbers are mapped back to the spec line and the variable's column on it. Prompts are
checked and rendered in a :class:`PromptEnvironment`: Jinja's ``SandboxedEnvironment`` with
render limits (loop iterations, output size, time in loops, size of ``*``/``**`` results).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

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


MAX_LOOP_ITEMS = 1_000_000  # iterations of all `for` loops of one render together
MAX_LOOP_SECONDS = 10.0  # time one render may spend in its loops
MAX_RENDER_CHARS = 4_000_000  # characters one render may produce (and one `*` result may hold)
MAX_POWER_BITS = 4096  # size of an `**` result


class PromptEnvironment(SandboxedEnvironment):
    """Jinja's sandbox (no ``__globals__``/``__subclasses__`` and the like) plus render limits.

    Every ``for`` loop's iterable is wrapped, when a template is compiled, in a counter shared by
    the render; the rendered text is concatenated with a size check; ``*`` and ``**`` refuse
    results that would be too large before computing them. Breaking a limit raises
    :class:`jinja2.sandbox.SecurityError`, which the runtime reports as a template error.
    """

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(undefined=StrictUndefined, autoescape=False, **options)
        self.globals["_rlm_loop"] = _bounded_loop

    def from_string(self, source: Any, globals: Any = None, template_class: Any = None) -> Any:
        tree = self.parse(source) if isinstance(source, str) else source
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("_rlm_loop", "load"), [loop.iter], [], None, None)
        return super().from_string(tree, globals, template_class)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _power_bits(left, right) > MAX_POWER_BITS:
            raise SecurityError(f"{left!r} ** {right!r} is too large for a template")
        if operator == "*" and _repeat_size(left, right) > MAX_RENDER_CHARS:
            raise SecurityError(f"a repetition of more than {MAX_RENDER_CHARS:,} items in a "
                                "template")
        return super().call_binop(context, operator, left, right)

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]
        out, size = [], 0
        for piece in pieces:
            size += len(piece)
            if size > MAX_RENDER_CHARS:
                raise SecurityError(f"the template rendered more than {MAX_RENDER_CHARS:,} "
                                    "characters")
            out.append(piece)
        return "".join(out)


@pass_context
def _bounded_loop(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    budget = context.__dict__.setdefault(
        "_rlm_budget", [MAX_LOOP_ITEMS, time.monotonic() + MAX_LOOP_SECONDS])
    for item in iterable:
        budget[0] -= 1
        if budget[0] < 0:
            raise SecurityError(f"the template's loops ran more than {MAX_LOOP_ITEMS:,} times")
        if budget[0] % 1024 == 0 and time.monotonic() > budget[1]:
            raise SecurityError(f"the template's loops ran longer than {MAX_LOOP_SECONDS:g} s")
        yield item


def _power_bits(base: Any, exponent: Any) -> float:
    if not isinstance(base, int) or not isinstance(exponent, int) or exponent <= 0:
        return 0.0
    return exponent * math.log2(abs(base)) if abs(base) > 1 else 0.0


def _repeat_size(left: Any, right: Any) -> int:
    for items, times in ((left, right), (right, left)):
        if isinstance(times, int) and isinstance(items, str | list | tuple):
            return len(items) * times
    return 0


@cache
def environment() -> PromptEnvironment:
    """The one Jinja2 environment of prompts and SQL texts: the compiler checks templates with
    it and every runtime renderer (steps, chunk queries, the estimator) renders with it.

    Sandboxed with render limits (:class:`PromptEnvironment`); undefined names are errors;
    nothing is escaped; ``tojson`` keeps key order and writes what JSON lacks (dates) as text.
    """
    env = PromptEnvironment(keep_trailing_newline=True)
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
    diags = [*_unknown_filters(prompt, lines, tree), *_private_attributes(prompt, lines, tree)]
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


def _private_attributes(
    prompt: Prompt, lines: Sequence[str], tree: nodes.Template
) -> Iterator[Diagnostic]:
    """``x.__init__``, ``x['_y']``, ``x|attr('_z')``: the sandbox would refuse it at run time."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem):
            name = getattr(node.arg, "value", None)
        else:  # `x | attr('__init__')`
            name = getattr(node.args[0], "value", None) if node.name == "attr" and node.args \
                else None
        if isinstance(name, str) and name.startswith("_"):
            span = _word_span(prompt, lines, node.lineno, name)
            yield Diagnostic(span, f"template reads the private attribute '{name}'",
                             "prompts run in a sandbox: attributes starting with '_' are refused")


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
