"""REPL host tools over the store: read-only ``sql()`` and the lazy ``context`` source.

Model code in the sandbox reaches the run's DuckDB store only through these functions, which run
in the host. :func:`readonly_sql` runs on a :class:`~rlm_dsl.runtime.repl.snapshot.SqlSnapshot`
(a DuckDB instance of its own: no file access, configuration locked) and first lets one statement
through only if it reads: SELECT/WITH/DESCRIBE/SHOW/SUMMARIZE or ``PRAGMA table_info``; the
statement's parse tree (``json_serialize_sql``) must name only tables and views of the store (so
no file paths, URLs or host variables) and only table functions from a short allow-list (so no
``read_csv``/``read_text``/``glob``). COPY, ATTACH, INSTALL/LOAD, SET and every write are refused
with a message saying what is allowed; the checker gives clear messages, the snapshot's settings
are the boundary. :class:`TableSource` and :class:`TextSource` serve the worker's ``context`` one
page at a time, with fixed host-written queries on the run's own connection.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

import duckdb

from rlm_dsl.runtime.repl.snapshot import SqlSnapshot
from rlm_dsl.runtime.store.store import Store, quote_ident

ALLOWED_TABLE_FUNCTIONS = frozenset(
    {"range", "generate_series", "unnest", "pragma_table_info", "duckdb_tables",
     "duckdb_columns", "duckdb_views", "regexp_split_to_table"}
)
DENIED_FUNCTIONS = frozenset({"getenv", "current_setting", "read_text", "read_blob"})
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog"})
SHOW_SPECIALS = frozenset({'"tables"', '"databases"', '"schemas"', "tables", "databases"})
PRAGMA_OK = re.compile(r"(?is)^\s*pragma\s+(table_info\s*\(|show_tables\b|show_tables_expanded\b)")
ALLOWED_HELP = "use one SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE or PRAGMA table_info statement"
MAX_PAGE_ROWS = 10_000


class SqlRefused(ValueError):
    """A statement ``sql()`` will not run; the message is shown to the model."""


def readonly_sql(
    snapshot: SqlSnapshot, query: str, max_rows: int = MAX_PAGE_ROWS, timeout_s: float = 60.0
) -> dict[str, Any]:
    """Run one read-only statement; return ``{"columns", "rows", "truncated"}`` (rows as dicts)."""
    cursor = snapshot.cursor()
    try:
        check_readonly(cursor, query)
        timer = threading.Timer(timeout_s, cursor.interrupt)
        timer.start()
        try:
            result = cursor.execute(query)
            columns = [d[0] for d in result.description or []]
            rows = result.fetchmany(max_rows + 1)
        except duckdb.InterruptException:
            raise SqlRefused(f"the query ran longer than {timeout_s:g} s and was stopped") from None
        except duckdb.Error as exc:
            raise SqlRefused(_first_line(exc)) from None
        finally:
            timer.cancel()
    finally:
        cursor.close()
    return {
        "columns": columns,
        "rows": [dict(zip(columns, row, strict=True)) for row in rows[:max_rows]],
        "truncated": len(rows) > max_rows,
    }


def check_readonly(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Raise :class:`SqlRefused` unless ``query`` is one statement that only reads the store."""
    if not isinstance(query, str) or not query.strip():
        raise SqlRefused(f"sql() needs a query string: {ALLOWED_HELP}")
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlRefused(_first_line(exc)) from None
    if len(statements) != 1:
        raise SqlRefused(f"sql() runs exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind == duckdb.StatementType.PRAGMA and PRAGMA_OK.match(query):
        return
    if kind != duckdb.StatementType.SELECT:
        raise SqlRefused(f"sql() is read-only: {kind.name} statements are refused; {ALLOWED_HELP}")
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
    if tree.get("error"):
        raise SqlRefused(tree.get("error_message", "cannot parse the query"))
    known = {name for (name,) in con.execute(
        "SELECT table_name FROM duckdb_tables() UNION ALL SELECT view_name FROM duckdb_views()"
    ).fetchall()}
    check_tree(tree, known, con.execute("SELECT current_database()").fetchone()[0])


def check_tree(tree: dict[str, Any], known: set[str], database: str) -> None:
    """Raise :class:`SqlRefused` unless the parse tree ``tree`` (``json_serialize_sql``) reads
    only the tables ``known`` (and its own CTEs), allowed table functions and no denied
    function: the same rule for ``sql()`` and for a spec ``rlm ask``'s LM wrote itself."""
    known = {name.lower() for name in known} | {name.lower() for name in _cte_names(tree)}
    for node in _nodes(tree):
        _check_node(node, known, database)


def _check_node(node: dict[str, Any], known: set[str], database: str) -> None:
    kind = node.get("type")
    if kind == "BASE_TABLE":
        schema, name = node.get("schema_name", ""), node.get("table_name", "")
        if node.get("catalog_name") not in ("", database, "system", "temp"):
            raise SqlRefused(f"sql() reads only this run's database, not {node['catalog_name']!r}")
        if schema.lower() not in SYSTEM_SCHEMAS and name.lower() not in known:
            raise SqlRefused(f"unknown table {name!r}: sql() reads only the run's tables "
                             "(SHOW TABLES lists them)")
    elif kind == "TABLE_FUNCTION":
        name = node.get("function", {}).get("function_name", "")
        if name.lower() not in ALLOWED_TABLE_FUNCTIONS:
            raise SqlRefused(f"table function {name}() is refused: sql() reads only the run's "
                             "tables (no files, URLs or extensions)")
    elif kind == "SHOW_REF" and node.get("query") is None:
        name = node.get("table_name", "")
        if name not in SHOW_SPECIALS and name.strip('"').lower() not in known:
            raise SqlRefused(f"unknown table {name!r}")
    elif node.get("class") == "FUNCTION" and node.get("function_name", "").lower() in \
            DENIED_FUNCTIONS:
        raise SqlRefused(f"function {node['function_name']}() is refused in sql()")


def _nodes(value: Any):
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _nodes(item)


def _cte_names(tree: Any) -> set[str]:
    return {
        entry["key"]
        for node in _nodes(tree)
        for entry in (node.get("cte_map") or {}).get("map", [])
    }


class _Source:
    """A ``context`` the sandbox calls as ``source(op, *args)``: ``info``, ``rows``, ``lines``
    or ``search``, each a method of the subclass."""

    OPS = ("info", "rows", "lines", "search")

    def __call__(self, op: str, *args: Any) -> Any:
        if op not in self.OPS:
            raise ValueError(f"unknown context operation {op!r}")
        return getattr(self, op)(*args)


class TableSource(_Source):
    """``context`` over a store table: rows in ``id`` order, ``text`` per row."""

    def __init__(self, store: Store, table: str) -> None:
        self.store, self.table = store, table
        columns = [name for name, _ in store.columns(table)]
        self.columns = columns
        self._order = "id" if "id" in columns else "rowid"
        if "text" in columns:
            self._text = "CAST(text AS VARCHAR)"
        else:
            payload = ", ".join(f"{quote_ident(c)} := {quote_ident(c)}"
                                for c in columns if c != "id")
            self._text = f"CAST(to_json(struct_pack({payload})) AS VARCHAR)"
        self._info: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        if self._info is None:
            n_rows, n_chars = self.store.con.execute(
                f"SELECT count(*), coalesce(sum(length({self._text})), 0) FROM {self._from()}"
            ).fetchone()
            self._info = {"table": self.table, "columns": self.columns, "n_rows": int(n_rows),
                          "n_chars": int(n_chars)}
        return self._info

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        offset, limit = _page(start, stop, self.info()["n_rows"])
        select = "*" if "text" in self.columns else f"*, {self._text} AS text"
        cursor = self.store.con.execute(
            f"SELECT {select} FROM {self._from()} ORDER BY {self._order} LIMIT ? OFFSET ?",
            [limit, offset])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def lines(self, start: int = 0, stop: int | None = None) -> str:
        offset, limit = _page(start, stop, self.info()["n_rows"])
        texts = self.store.con.execute(
            f"SELECT {self._text} FROM {self._from()} ORDER BY {self._order} LIMIT ? OFFSET ?",
            [limit, offset]).fetchall()
        return "\n".join(text or "" for (text,) in texts)

    def search(self, pattern: str, limit: int = 100) -> list[dict[str, Any]]:
        try:
            found = self.store.con.execute(
                f"SELECT {self._order} AS id, {self._text} AS text FROM {self._from()} "
                f"WHERE regexp_matches({self._text}, ?) ORDER BY {self._order} LIMIT ?",
                [pattern, min(int(limit), MAX_PAGE_ROWS)]).fetchall()
        except duckdb.Error as exc:
            raise ValueError(f"bad search pattern {pattern!r}: {_first_line(exc)}") from None
        return [{"id": row_id, "text": text} for row_id, text in found]

    def _from(self) -> str:
        return quote_ident(self.table)


class TextSource(_Source):
    """``context`` over literal text held by the host (a child RLM's ``sub_context``)."""

    def __init__(self, rows: list[str], name: str = "sub_context") -> None:
        self._rows, self.name = rows, name

    def info(self) -> dict[str, Any]:
        return {"table": self.name, "columns": ["id", "text"], "n_rows": len(self._rows),
                "n_chars": sum(len(r) for r in self._rows)}

    def rows(self, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        offset, limit = _page(start, stop, len(self._rows))
        return [{"id": i, "text": self._rows[i]} for i in range(offset, offset + limit)]

    def lines(self, start: int = 0, stop: int | None = None) -> str:
        offset, limit = _page(start, stop, len(self._rows))
        return "\n".join(self._rows[offset:offset + limit])

    def search(self, pattern: str, limit: int = 100) -> list[dict[str, Any]]:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"bad search pattern {pattern!r}: {exc}") from None
        hits = ({"id": i, "text": t} for i, t in enumerate(self._rows) if regex.search(t))
        return [hit for hit, _ in zip(hits, range(min(int(limit), MAX_PAGE_ROWS)), strict=False)]


def _page(start: int, stop: int | None, n_rows: int) -> tuple[int, int]:
    """(offset, limit) for rows ``start``..``stop - 1``, clamped like a Python slice."""
    begin, end, _ = slice(start, stop).indices(n_rows)
    if end - begin > MAX_PAGE_ROWS:
        raise ValueError(f"at most {MAX_PAGE_ROWS:,} rows per call (asked for {end - begin:,}); "
                         "use context.chunks(n), sql() or context.search()")
    return begin, max(end - begin, 0)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
