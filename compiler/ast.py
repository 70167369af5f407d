"""The AST of a `.rlm` spec: frozen, slotted dataclasses that each carry a source :class:`Span`.

Built by :mod:`rlm_dsl.compiler.parser` from the Lark tree (one class per grammar rule or alias),
read by the checks and by lowering. Child sequences are tuples; nothing here is ever mutated. A
statement's ``span`` covers the whole statement; names, literals and prompts carry their own spans
so diagnostics can point at exactly the part that is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlm_dsl.compiler.source import Span


@dataclass(frozen=True, slots=True)
class Name:
    value: str
    span: Span


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: str, int, float, bool, None, or a list/dict of literals (plain Python values);
    a list literal also keeps its elements (``items``) for messages that point at one."""

    value: Any
    span: Span
    items: tuple[Lit, ...] = ()


@dataclass(frozen=True, slots=True)
class Prompt:
    """A Jinja2 template; ``first_line`` is the spec line of the template's line 1."""

    text: str
    span: Span
    first_line: int


@dataclass(frozen=True, slots=True)
class Kwarg:
    name: Name
    value: Lit
    span: Span


@dataclass(frozen=True, slots=True)
class Call:
    """A strategy such as ``lines(400, overlap=20)``, ``file`` or ``sql "SELECT ..."``."""

    name: Name
    args: tuple[Lit, ...]
    kwargs: tuple[Kwarg, ...]
    span: Span


# --- type expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeRef:
    name: Name
    span: Span


@dataclass(frozen=True, slots=True)
class ListType:
    item: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class OptionalType:
    item: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class EnumType:
    values: tuple[Name, ...]
    span: Span


TypeExpr = TypeRef | ListType | OptionalType | EnumType


# --- declarations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RecipeHeader:
    name: Name
    description: Lit | None
    span: Span


@dataclass(frozen=True, slots=True)
class ParamDecl:
    name: Name
    type: TypeExpr
    default: Lit | None
    span: Span


@dataclass(frozen=True, slots=True)
class LmDecl:
    name: Name
    model: Lit | None  # the literal model id (or the env fallback)
    env: Lit | None  # environment variable to read first
    options: tuple[Kwarg, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class InputDecl:
    name: Name
    kind: Name
    options: tuple[Kwarg, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class FieldDecl:
    name: Name
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class RecordDecl:
    name: Name
    fields: tuple[FieldDecl, ...]
    span: Span


@dataclass(frozen=True, slots=True)
class AliasDecl:
    name: Name
    type: TypeExpr
    span: Span


@dataclass(frozen=True, slots=True)
class UseDecl:
    path: Lit
    alias: Name
    span: Span


@dataclass(frozen=True, slots=True)
class OutputDecl:
    names: tuple[Name, ...]
    span: Span


# --- dataflow statements ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkStmt:
    source: Name
    target: Name
    strategy: Call
    span: Span


@dataclass(frozen=True, slots=True)
class FilterStmt:
    """``filter windows where sql "..."`` / ``regex "..."`` / ``lm [using x] [with ...] "..."``."""

    target: Name
    how: Name  # sql | regex | lm
    arg: Lit | None  # the predicate or pattern (sql, regex)
    lm: Name | None
    options: tuple[Kwarg, ...]
    prompt: Prompt | None
    span: Span


@dataclass(frozen=True, slots=True)
class MapStmt:
    source: Name
    target: Name
    type: TypeExpr | None
    lm: Name | None
    recipe: Name | None  # `using recipe alias`
    options: tuple[Kwarg, ...]
    prompt: Prompt | None
    span: Span


@dataclass(frozen=True, slots=True)
class ReduceStmt:
    source: Name
    field: Name | None  # `reduce results.label -> ...`
    target: Name
    type: TypeExpr | None
    strategy: Call | None  # None means concat
    lm: Name | None
    options: tuple[Kwarg, ...]
    prompt: Prompt | None
    span: Span


@dataclass(frozen=True, slots=True)
class RlmStmt:
    source: Name
    target: Name
    type: TypeExpr
    lm: Name | None
    sub_lm: Name | None
    options: tuple[Kwarg, ...]
    prompt: Prompt | None
    span: Span


Decl = RecipeHeader | ParamDecl | LmDecl | InputDecl | RecordDecl | AliasDecl | UseDecl | OutputDecl
Flow = ChunkStmt | FilterStmt | MapStmt | ReduceStmt | RlmStmt
Statement = Decl | Flow


@dataclass(frozen=True, slots=True)
class Spec:
    path: str
    statements: tuple[Statement, ...]
    end: Span  # the position just past the last character (for "missing ..." diagnostics)
