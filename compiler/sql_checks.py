"""SQL checks: every SQL text in a spec is parsed by DuckDB's own parser at check time.

Part of the ``CHECKS`` pipeline. Filter predicates are parsed as ``SELECT * FROM t WHERE (...)``;
``chunk ... by sql`` and ``reduce ... by sql`` queries are rendered (``{{ input }}`` and params as
placeholder names) and must be one statement that reads ``{{ input }}``. Only parsing happens —
no tables, no binding — so a check never touches data. DuckDB's "syntax error at or near X" is
pointed at X inside the spec's string.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import cache

import duckdb
from jinja2 import TemplateError, meta

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.diagnostics import Diagnostic
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.templates import environment

_NEAR = re.compile(r'at or near "([^"]+)"')
_PLACEHOLDER = "rlm_placeholder"


@cache
def _connection() -> duckdb.DuckDBPyConnection:
    return duckdb.connect(":memory:")


def _sql_texts(stmt: ast.Flow) -> Iterator[tuple[ast.Lit, str]]:
    """(literal, role) for each SQL text of ``stmt``: role is 'predicate' or 'query'."""
    match stmt:
        case ast.FilterStmt(how=ast.Name("sql"), arg=ast.Lit(value=str()) as lit):
            yield lit, "predicate"
        case ast.ChunkStmt(strategy=call) | ast.ReduceStmt(strategy=ast.Call() as call):
            match call:
                case ast.Call(name=ast.Name("sql"), args=(ast.Lit(value=str()) as query,)):
                    yield query, "query"


def check_sql(ctx: Context) -> Iterator[Diagnostic]:
    lines = ctx.text.split("\n")
    params = list(ctx.scope.params)
    for stmt in ctx.flows():
        for lit, role in _sql_texts(stmt):
            if not lit.value.strip():
                continue  # reported as an empty predicate / argument elsewhere
            if role == "predicate":
                yield from _parse(f"SELECT * FROM t WHERE ({lit.value}\n)", lit, lines, 1)
            else:
                diags = list(_query(lit, params, lines))
                yield from diags
                if not diags and isinstance(stmt, ast.ChunkStmt):
                    yield from _chunk_columns(ctx, stmt, lit, params, lines)


def _query(lit: ast.Lit, params: Sequence[str], lines: Sequence[str]) -> Iterator[Diagnostic]:
    env = environment()
    try:
        template = env.parse(lit.value)
        names = meta.find_undeclared_variables(template)
        rendered = env.from_string(lit.value).render(
            {name: _PLACEHOLDER for name in [*params, "input"]})
    except (TemplateError, RecursionError):
        return  # reported by the template check
    if "input" not in names:
        yield Diagnostic(_first_line(lit, lines), "the query never reads its source table",
                         "select from {{ input }}, e.g. SELECT ... FROM {{ input }}")
    yield from _parse(rendered, lit, lines, 1)


def _chunk_columns(ctx: Context, stmt: ast.ChunkStmt, lit: ast.Lit, params: Sequence[str],
                   lines: Sequence[str]) -> Iterator[Diagnostic]:
    """A ``chunk ... by sql`` query must yield ``text``: checked when DuckDB can describe it.

    The source's columns are known for inputs and chunk tables; the query is described against
    an empty table of those columns (``id`` BIGINT, the rest VARCHAR). Anything DuckDB cannot
    bind that way (a param used as a value, a numeric comparison) is left to run time.
    """
    binder = ctx.scope.resolve(stmt.source.value, stmt)
    columns = ctx.scope.columns(binder) if binder is not None else None
    if not columns:
        return
    rendered = environment().from_string(lit.value).render(
        {name: _PLACEHOLDER for name in [*params, "input"]})
    typed = ", ".join(f'"{c}" {"BIGINT" if c == "id" else "VARCHAR"}' for c in columns)
    with duckdb.connect(":memory:") as con:
        con.execute(f"CREATE TABLE {_PLACEHOLDER} ({typed})")
        try:
            names = [row[0] for row in con.execute(f"DESCRIBE {rendered}").fetchall()]
        except duckdb.Error:
            return
    if "text" not in names:
        yield Diagnostic(_first_line(lit, lines),
                         f"the chunk query yields no 'text' column (it yields: {', '.join(names)})",
                         "name the chunk's text column text, e.g. "
                         "SELECT string_agg(text, '\\n') AS text FROM {{ input }} GROUP BY ...")


def _parse(sql: str, lit: ast.Lit, lines: Sequence[str], expected: int) -> Iterator[Diagnostic]:
    try:
        statements = _connection().extract_statements(sql)
    except duckdb.Error as exc:
        message = str(exc).split("\n", 1)[0].removeprefix("Parser Error: ")
        near = _NEAR.search(message)
        span = _find(lit, lines, near.group(1)) if near else None
        if span is None:  # DuckDB points past the user's text (e.g. an unclosed parenthesis)
            message = "syntax error: the text is incomplete"
        yield Diagnostic(span or _first_line(lit, lines), f"SQL {message}")
        return
    if len(statements) != expected:
        yield Diagnostic(_first_line(lit, lines),
                         f"expected one SQL statement, found {len(statements)}")


def _first_line(lit: ast.Lit, lines: Sequence[str]) -> Span:
    s = lit.span
    end = s.end_col if s.end_line == s.line else len(lines[s.line - 1]) + 1
    return Span(s.file, s.line, s.col, s.line, max(end, s.col + 1))


def _find(lit: ast.Lit, lines: Sequence[str], word: str) -> Span | None:
    """The first occurrence of ``word`` inside the string literal ``lit`` in the spec."""
    s = lit.span
    for line_no in range(s.line, s.end_line + 1):
        line = lines[line_no - 1]
        start = s.col - 1 if line_no == s.line else 0
        stop = s.end_col - 1 if line_no == s.end_line else len(line)
        col = line.find(word, start, stop)
        if col >= 0:
            return Span(s.file, line_no, col + 1, line_no, col + 1 + len(word))
    return None
