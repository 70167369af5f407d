"""Name resolution: a spec's symbol tables, its resolved types and the binding each use reads.

:func:`build_scope` walks the statements once, records every declaration (reporting duplicates),
resolves type expressions to :mod:`rlm_dsl.compiler.types` values (reporting unknown names), and
answers the questions the checks and lowering share: which statement a value reference reads
(the latest earlier binding, else the final one of a later definition), what type a value has
and which table columns a step's rows carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlm_dsl.compiler import ast
from rlm_dsl.compiler.diagnostics import Diagnostic, did_you_mean
from rlm_dsl.compiler.types import PRIMITIVES, Enum, ListOf, Optional, Prim, Record, Type
from rlm_dsl.compiler.types import Field as TypeField

LINE_COLUMNS = ("id", "source", "line_no", "byte_offset", "text")
LOG_COLUMNS = ("id", "source", "line_no", "end_line_no", "byte_offset", "ts", "level", "host",
               "process", "pid", "component", "message", "text", "format", "parse_error",
               "client", "method", "path", "status", "bytes", "referrer", "user_agent", "fields")
DEDUP_COLUMNS = ("template", "count", "last_ts")  # log inputs with dedup=true only
CHUNK_COLUMNS = ("id", "source", "first_line", "last_line", "start_byte", "end_byte", "n_rows",
                 "n_tokens", "key", "text")
INPUT_COLUMNS: dict[str, tuple[str, ...] | None] = {
    "text": LINE_COLUMNS, "lines": LINE_COLUMNS, "stdin": LINE_COLUMNS, "log": LOG_COLUMNS,
    "jsonl": None, "csv": None, "parquet": None, "files": ("id", "source", "size", "text"),
}
GROUNDED_MAP_COLUMNS = ("source", "first_line", "last_line", "line", "grounded", "line_text")
RESERVED_TABLES = frozenset(["lm_calls", "failures", "rlm_iterations", "runs", "step_status"])

Binder = ast.InputDecl | ast.Flow


def defined_name(stmt: Binder) -> ast.Name:
    """The value name a statement binds (a filter rebinds its target)."""
    return stmt.name if isinstance(stmt, ast.InputDecl) else stmt.target


@dataclass(slots=True)
class Scope:
    spec: ast.Spec
    header: ast.RecipeHeader | None = None
    params: dict[str, ast.ParamDecl] = field(default_factory=dict)
    lms: dict[str, ast.LmDecl] = field(default_factory=dict)
    uses: dict[str, ast.UseDecl] = field(default_factory=dict)
    outputs: list[ast.OutputDecl] = field(default_factory=list)
    type_decls: dict[str, ast.RecordDecl | ast.AliasDecl] = field(default_factory=dict)
    types: dict[str, Type | None] = field(default_factory=dict)
    bindings: dict[str, list[Binder]] = field(default_factory=dict)  # in statement order
    order: dict[int, int] = field(default_factory=dict)  # id(stmt) -> statement index
    declared: dict[int, Type | None] = field(default_factory=dict)  # id(stmt) -> its `: T`
    sub_outputs: dict[str, TypeField | None] = field(default_factory=dict)  # alias -> output

    def index(self, stmt: object) -> int:
        return self.order[id(stmt)]

    def resolve(self, name: str, at: object) -> Binder | None:
        """The binding of value ``name`` that the statement ``at`` reads."""
        chain = self.bindings.get(name)
        if not chain:
            return None
        here = self.index(at)
        earlier = sorted((b for b in chain if self.index(b) < here), key=self.index)
        return earlier[-1] if earlier else chain[-1]

    def definition(self, binder: Binder) -> Binder:
        """The statement that first defined the value ``binder`` binds (skipping filters)."""
        return self.bindings[defined_name(binder).value][0]

    def columns(self, binder: Binder) -> tuple[str, ...] | None:
        """Columns of the table ``binder`` writes; None when they depend on the data."""
        origin = self.definition(binder)
        match origin:
            case ast.InputDecl(kind=ast.Name("log")) if _dedup(origin):
                return LOG_COLUMNS + DEDUP_COLUMNS
            case ast.InputDecl(kind=kind):
                return INPUT_COLUMNS.get(kind.value)
            case ast.ChunkStmt():
                return CHUNK_COLUMNS
            case ast.ReduceStmt(strategy=ast.Call(name=ast.Name("sql")), type=None):
                return None  # the query's own columns
            case ast.MapStmt() if _grounded(origin):
                return ("id", origin.target.value, *GROUNDED_MAP_COLUMNS)
            case ast.MapStmt() | ast.ReduceStmt() | ast.RlmStmt():
                return ("id", origin.target.value)
        return None

    def column_hints(self, binder: Binder) -> dict[str, str]:
        """Hints for columns the rows of ``binder`` lack but another option would give."""
        origin = self.definition(binder)
        if isinstance(origin, ast.InputDecl) and origin.kind.value == "log" and not _dedup(origin):
            name = origin.name.value
            return {column: f"only deduplicated logs have '{column}': declare "
                            f"input {name}: log with dedup=true" for column in DEDUP_COLUMNS}
        return {}

    def value_type(self, binder: Binder, seen: frozenset[int] = frozenset()) -> Type | None:
        """The type of the value column of a map/reduce/rlm table (None for row tables)."""
        origin = self.definition(binder)
        if id(origin) in seen:  # a cycle; reported by the cycle check
            return None
        declared = self.declared.get(id(origin))
        match origin:
            case ast.MapStmt(recipe=ast.Name(alias)) if declared is None:
                output = self.sub_outputs.get(alias)
                return output.type if output else None
            case ast.MapStmt() | ast.RlmStmt():
                return declared or Prim("str")
            case ast.ReduceStmt(strategy=ast.Call(name=ast.Name("sql"))):
                return declared  # None: the query's own columns
            case ast.ReduceStmt(strategy=ast.Call(name=ast.Name("vote"))) if declared is None:
                return self.reduce_item_type(origin, seen | {id(origin)})
            case ast.ReduceStmt():
                return declared or Prim("str")
        return None

    def reduce_item_type(
        self, stmt: ast.ReduceStmt, seen: frozenset[int] = frozenset()
    ) -> Type | None:
        """The type of one item a reduce reads (the source value, or its projected field)."""
        source = self.resolve(stmt.source.value, stmt)
        if source is None:
            return None
        item = self.value_type(source, seen)
        if stmt.field is None or item is None:
            return item
        inner = item.item if isinstance(item, Optional) else item
        found = inner.field(stmt.field.value) if isinstance(inner, Record) else None
        return found.type if found else None


def _dedup(decl: ast.InputDecl) -> bool:
    return any(kw.name.value == "dedup" and kw.value.value is True for kw in decl.options)


def _grounded(stmt: ast.MapStmt) -> bool:
    """A map ``with grounded=[…]``: its rows also carry provenance, ``grounded``, ``line_text``."""
    return stmt.recipe is None and any(kw.name.value == "grounded" for kw in stmt.options)


def build_scope(spec: ast.Spec) -> tuple[Scope, list[Diagnostic]]:
    """Collect the declarations of ``spec``; report duplicates and unknown type names."""
    scope = Scope(spec)
    diags: list[Diagnostic] = []
    for index, stmt in enumerate(spec.statements):
        scope.order[id(stmt)] = index
        diags.extend(_declare(scope, stmt))
    resolver = _TypeResolver(scope, diags)
    for name in scope.type_decls:
        scope.types[name] = resolver.named(name)
    for stmt in spec.statements:
        declared = getattr(stmt, "type", None)
        if isinstance(stmt, ast.Flow | ast.ParamDecl) and declared is not None:
            scope.declared[id(stmt)] = resolver.resolve(declared)
    return scope, diags


def _duplicate(kind: str, name: ast.Name, first: object) -> Diagnostic:
    line = first.span.line if hasattr(first, "span") else "?"
    return Diagnostic(name.span, f"duplicate {kind} '{name.value}' (first defined on line {line})")


def _declare(scope: Scope, stmt: ast.Statement) -> list[Diagnostic]:
    tables = {"param": scope.params, "lm": scope.lms, "recipe alias": scope.uses}
    match stmt:
        case ast.RecipeHeader():
            if scope.header is not None:
                return [Diagnostic(stmt.span, "a spec has one 'recipe' header",
                                   f"the header is on line {scope.header.span.line}")]
            scope.header = stmt
        case ast.ParamDecl() | ast.LmDecl() | ast.UseDecl():
            kind = {ast.ParamDecl: "param", ast.LmDecl: "lm", ast.UseDecl: "recipe alias"}
            table = tables[kind[type(stmt)]]
            name = stmt.alias if isinstance(stmt, ast.UseDecl) else stmt.name
            if name.value in table:
                return [_duplicate(kind[type(stmt)], name, table[name.value])]
            table[name.value] = stmt
        case ast.RecordDecl() | ast.AliasDecl():
            if stmt.name.value in scope.type_decls or stmt.name.value in PRIMITIVES:
                return [Diagnostic(stmt.name.span, f"duplicate type '{stmt.name.value}'")]
            scope.type_decls[stmt.name.value] = stmt
        case ast.OutputDecl():
            scope.outputs.append(stmt)
        case ast.FilterStmt():
            scope.bindings.setdefault(stmt.target.value, []).append(stmt)
        case _:
            return _declare_value(scope, stmt)
    return []


def _declare_value(scope: Scope, stmt: Binder) -> list[Diagnostic]:
    name = defined_name(stmt)
    chain = scope.bindings.setdefault(name.value, [])
    if any(not isinstance(b, ast.FilterStmt) for b in chain):
        return [_duplicate("value", name, chain[0])]
    chain.insert(0, stmt)  # the definition heads the chain even after an early filter
    if name.value in RESERVED_TABLES:
        return [Diagnostic(name.span, f"'{name.value}' is reserved for the run's store",
                           "choose another name")]
    return []


class _TypeResolver:
    """Turns type expressions into types; reports unknown and self-referencing names."""

    def __init__(self, scope: Scope, diags: list[Diagnostic]) -> None:
        self.scope = scope
        self.diags = diags
        self.visiting: set[str] = set()

    def named(self, name: str) -> Type | None:
        if name in self.scope.types:
            return self.scope.types[name]
        decl = self.scope.type_decls[name]
        self.visiting.add(name)
        if isinstance(decl, ast.RecordDecl):
            resolved: Type | None = self._record(decl)
        else:
            resolved = self.resolve(decl.type)
            if isinstance(resolved, Enum):
                resolved = Enum(resolved.values, name)
        self.visiting.discard(name)
        self.scope.types[name] = resolved
        return resolved

    def _record(self, decl: ast.RecordDecl) -> Record | None:
        fields, seen = [], set()
        for f in decl.fields:
            if f.name.value in seen:
                self.diags.append(Diagnostic(f.name.span, f"duplicate field '{f.name.value}'"))
            seen.add(f.name.value)
            fields.append(TypeField(f.name.value, self.resolve(f.type) or Prim("str")))
        return Record(decl.name.value, tuple(fields))

    def resolve(self, expr: ast.TypeExpr) -> Type | None:
        match expr:
            case ast.ListType(item):
                inner = self.resolve(item)
                return ListOf(inner) if inner else None
            case ast.OptionalType(item):
                inner = self.resolve(item)
                return Optional(inner) if inner else None
            case ast.EnumType(values):
                return self._enum(values)
            case ast.TypeRef(name):
                return self._ref(name)
        raise TypeError(f"unhandled type expression {expr!r}")

    def _enum(self, values: tuple[ast.Name, ...]) -> Enum:
        seen: list[str] = []
        for v in values:
            if v.value in seen:
                self.diags.append(Diagnostic(v.span, f"duplicate enum label '{v.value}'"))
            else:
                seen.append(v.value)
        return Enum(tuple(seen))

    def _ref(self, name: ast.Name) -> Type | None:
        if name.value in PRIMITIVES:
            return Prim(name.value)
        if name.value in self.visiting:
            self.diags.append(Diagnostic(name.span, f"type '{name.value}' refers to itself"))
            return None
        if name.value in self.scope.type_decls:
            return self.named(name.value)
        hint = did_you_mean(name.value, [*PRIMITIVES, *self.scope.type_decls])
        self.diags.append(Diagnostic(name.span, f"unknown type '{name.value}'", hint))
        return None
