"""Parse stage: `.rlm` text -> Lark tree -> AST (:mod:`rlm_dsl.compiler.ast`).

The grammar is ``rlm_dsl/grammar/rlm.lark`` (LALR, positions propagated), loaded once. The tree is
turned into frozen dataclasses by a Transformer run *after* parsing so every node keeps its span.
Lark's exceptions never leave this module: syntax errors become a :class:`CompileError` with the
expected tokens and, for common slips, a hint (:mod:`rlm_dsl.compiler.syntax_errors`).
"""

from __future__ import annotations

import textwrap
from functools import cache
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.diagnostics import CompileError, Diagnostic, end_span
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.syntax_errors import syntax_errors

MAX_DEPTH = 64  # list[list[...]] and [[...]] nesting; deeper specs are refused with a message


@cache
def grammar() -> Lark:
    """The LALR parser of the `.rlm` language (built once per process)."""
    return Lark.open_from_package(
        "rlm_dsl.grammar",
        "rlm.lark",
        ("",),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
    )


def parse(text: str, path: str) -> ast.Spec:
    """Parse ``text`` (the contents of ``path``) into a :class:`Spec` or raise CompileError."""
    parser = grammar()
    try:
        tree = parser.parse(text)
    except UnexpectedInput as exc:
        raise CompileError(syntax_errors(exc, parser, text, path), {path: text}) from None
    too_deep = _too_deep(tree, path)
    if too_deep is not None:
        raise CompileError([too_deep], {path: text})
    try:
        statements = _ToAst(path).transform(tree)
    except VisitError as exc:  # a bug in a transformer method; surface the original error
        raise exc.orig_exc from None
    return ast.Spec(path, tuple(statements), end_span(path, text))


def _too_deep(tree: Tree, path: str) -> Diagnostic | None:
    """A diagnostic when types or literals nest deeper than MAX_DEPTH (found without recursion)."""
    stack = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            meta = node.meta
            span = Span(path, meta.line, meta.column, meta.line, meta.column + 1)
            return Diagnostic(span, f"nesting is deeper than {MAX_DEPTH} levels")
        stack.extend((child, depth + 1) for child in node.children if isinstance(child, Tree))
    return None


def _unescape(body: str) -> str:
    """Decode ``\\"``, ``\\\\``, ``\\n``, ``\\t``; keep other backslashes (regexes need them)."""
    out, i = [], 0
    simple = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] in simple:
            out.append(simple[body[i + 1]])
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def _long_string(raw: str) -> tuple[str, int]:
    """Body of a triple-quoted string, dedented; and how many leading lines were dropped."""
    body = raw[3:-3].replace("\r\n", "\n")  # CRLF specs give the same prompts
    skipped = 0
    if body.startswith("\n"):
        body = body.split("\n", 1)[1]
        skipped = 1
    return textwrap.dedent(body).rstrip(), skipped


@v_args(inline=True, meta=True)
class _ToAst(Transformer):
    """Lark tree -> AST; method names are the grammar's rule names and aliases."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.first_lines: dict[Span, int] = {}

    def _span(self, meta: Any) -> Span:
        if getattr(meta, "empty", True):
            return Span(self.path, 1, 1, 1, 2)
        return Span(self.path, meta.line, meta.column, meta.end_line, meta.end_column)

    def _name(self, tok: Token) -> ast.Name:
        span = Span(self.path, tok.line, tok.column, tok.end_line, tok.end_column)
        return ast.Name(str(tok), span)

    @staticmethod
    def _opts(options: tuple[ast.Kwarg, ...] | None) -> tuple[ast.Kwarg, ...]:
        return options or ()

    def start(self, meta: Any, *statements: Any) -> list[Any]:
        return list(statements)

    # --- literals --------------------------------------------------------------------------
    def string(self, meta: Any, tok: Token) -> ast.Lit:
        span = Span(self.path, tok.line, tok.column, tok.end_line, tok.end_column)
        if tok.type == "LONG_STRING":
            value, skipped = _long_string(str(tok))
            self.first_lines[span] = tok.line + skipped
            return ast.Lit(value, span)
        self.first_lines[span] = tok.line
        return ast.Lit(_unescape(str(tok)[1:-1]), span)

    def number(self, meta: Any, tok: Token) -> ast.Lit:
        text = str(tok)
        value = float(text) if any(c in text for c in ".eE") else int(text)
        return ast.Lit(value, self._span(meta))

    def true(self, meta: Any) -> ast.Lit:
        return ast.Lit(True, self._span(meta))

    def false(self, meta: Any) -> ast.Lit:
        return ast.Lit(False, self._span(meta))

    def none(self, meta: Any) -> ast.Lit:
        return ast.Lit(None, self._span(meta))

    def list_lit(self, meta: Any, *items: ast.Lit | None) -> ast.Lit:
        kept = tuple(i for i in items if i is not None)
        return ast.Lit([i.value for i in kept], self._span(meta), kept)

    def bare_name(self, meta: Any, tok: Token) -> ast.Lit:
        return ast.Lit(str(tok), self._name(tok).span)

    def dict_lit(self, meta: Any, *pairs: tuple[str, ast.Lit] | None) -> ast.Lit:
        return ast.Lit({k: v.value for k, v in (p for p in pairs if p)}, self._span(meta))

    def pair(self, meta: Any, key: Token | ast.Lit, value: ast.Lit) -> tuple[str, ast.Lit]:
        return (key.value if isinstance(key, ast.Lit) else str(key), value)

    def prompt(self, meta: Any, lit: ast.Lit) -> ast.Prompt:
        return ast.Prompt(lit.value, lit.span, self.first_lines.get(lit.span, lit.span.line))

    # --- small pieces ----------------------------------------------------------------------
    def kwarg(self, meta: Any, name: Token, value: ast.Lit) -> ast.Kwarg:
        return ast.Kwarg(self._name(name), value, self._span(meta))

    def options(self, meta: Any, *kwargs: ast.Kwarg) -> tuple[ast.Kwarg, ...]:
        return kwargs

    def call_args(self, meta: Any, *args: ast.Lit | ast.Kwarg | None) -> tuple[Any, ...]:
        return tuple(a for a in args if a is not None)

    def strategy(self, meta: Any, name: Token, args: tuple[Any, ...] | None) -> ast.Call:
        args = args or ()
        positional = tuple(a for a in args if isinstance(a, ast.Lit))
        keywords = tuple(a for a in args if isinstance(a, ast.Kwarg))
        return ast.Call(self._name(name), positional, keywords, self._span(meta))

    def sql_strategy(self, meta: Any, query: ast.Lit) -> ast.Call:
        span = self._span(meta)
        sql = ast.Name("sql", Span(self.path, span.line, span.col, span.line, span.col + 3))
        return ast.Call(sql, (query,), (), span)

    def using(self, meta: Any, name: Token) -> ast.Name:
        return self._name(name)

    def sub(self, meta: Any, name: Token) -> ast.Name:
        return self._name(name)

    def recipe_using(self, meta: Any, name: Token) -> tuple[str, ast.Name]:
        return ("recipe", self._name(name))

    # --- types -----------------------------------------------------------------------------
    def type_ref(self, meta: Any, name: Token) -> ast.TypeRef:
        return ast.TypeRef(self._name(name), self._span(meta))

    def list_type(self, meta: Any, item: ast.TypeExpr) -> ast.ListType:
        return ast.ListType(item, self._span(meta))

    def optional_type(self, meta: Any, item: ast.TypeExpr) -> ast.OptionalType:
        return ast.OptionalType(item, self._span(meta))

    def enum_type(self, meta: Any, *names: Token) -> ast.EnumType:
        return ast.EnumType(tuple(self._name(n) for n in names), self._span(meta))

    # --- declarations ----------------------------------------------------------------------
    def recipe(self, meta: Any, name: Token, description: ast.Lit | None) -> ast.RecipeHeader:
        return ast.RecipeHeader(self._name(name), description, self._span(meta))

    def param(self, meta: Any, name: Token, type_: Any, default: Any) -> ast.ParamDecl:
        return ast.ParamDecl(self._name(name), type_, default, self._span(meta))

    def model_id(self, meta: Any, model: ast.Lit) -> tuple[ast.Lit | None, ast.Lit | None]:
        return (model, None)

    def model_env(self, meta: Any, env: ast.Lit, fallback: ast.Lit | None) -> tuple[Any, Any]:
        return (fallback, env)

    def lm(self, meta: Any, name: Token, model: tuple[Any, Any], options: Any) -> ast.LmDecl:
        return ast.LmDecl(self._name(name), *model, self._opts(options), self._span(meta))

    def input(self, meta: Any, name: Token, kind: Token, options: Any) -> ast.InputDecl:
        span = self._span(meta)
        return ast.InputDecl(self._name(name), self._name(kind), self._opts(options), span)

    def field(self, meta: Any, name: Token, type_: ast.TypeExpr) -> ast.FieldDecl:
        return ast.FieldDecl(self._name(name), type_, self._span(meta))

    def record_decl(self, meta: Any, name: Token, *fields: Any) -> ast.RecordDecl:
        kept = tuple(f for f in fields if isinstance(f, ast.FieldDecl))
        return ast.RecordDecl(self._name(name), kept, self._span(meta))

    def alias_decl(self, meta: Any, name: Token, type_: ast.TypeExpr) -> ast.AliasDecl:
        return ast.AliasDecl(self._name(name), type_, self._span(meta))

    def use(self, meta: Any, path: ast.Lit, alias: Token) -> ast.UseDecl:
        return ast.UseDecl(path, self._name(alias), self._span(meta))

    def output(self, meta: Any, *names: Token) -> ast.OutputDecl:
        return ast.OutputDecl(tuple(self._name(n) for n in names), self._span(meta))

    # --- dataflow --------------------------------------------------------------------------
    def chunk(self, meta: Any, source: Token, target: Token, strategy: ast.Call) -> ast.ChunkStmt:
        span = self._span(meta)
        return ast.ChunkStmt(self._name(source), self._name(target), strategy, span)

    def sql_pred(self, meta: Any, arg: ast.Lit) -> tuple[str, Any, Any, Any, Any]:
        return ("sql", self._span(meta), arg, None, None)

    def regex_pred(self, meta: Any, arg: ast.Lit) -> tuple[str, Any, Any, Any, Any]:
        return ("regex", self._span(meta), arg, None, None)

    def lm_pred(self, meta: Any, lm: Any, options: Any, prompt: Any) -> tuple[Any, ...]:
        return ("lm", self._span(meta), None, lm, (self._opts(options), prompt))

    def filter(self, meta: Any, target: Token, pred: tuple[Any, ...]) -> ast.FilterStmt:
        how, pspan, arg, lm, rest = pred
        options, prompt = rest or ((), None)
        kw = ast.Name(how, Span(self.path, pspan.line, pspan.col, pspan.line, pspan.col + len(how)))
        return ast.FilterStmt(
            self._name(target), kw, arg, lm, options, prompt, self._span(meta)
        )

    def map(self, meta: Any, src: Token, dst: Token, type_: Any, *rest: Any) -> ast.MapStmt:
        how, options, prompt = rest
        lm, recipe = (None, how[1]) if isinstance(how, tuple) else (how, None)
        return ast.MapStmt(
            self._name(src), self._name(dst), type_, lm, recipe, self._opts(options), prompt,
            self._span(meta),
        )

    def reduce(self, meta: Any, src: Token, field: Any, dst: Token, *rest: Any) -> ast.ReduceStmt:
        type_, strategy, lm, options, prompt = rest
        return ast.ReduceStmt(
            self._name(src), self._name(field) if field else None, self._name(dst), type_,
            strategy, lm, self._opts(options), prompt, self._span(meta),
        )

    def rlm(self, meta: Any, src: Token, dst: Token, type_: Any, *rest: Any) -> ast.RlmStmt:
        lm, sub, options, prompt = rest
        return ast.RlmStmt(
            self._name(src), self._name(dst), type_, lm, sub, self._opts(options), prompt,
            self._span(meta),
        )
