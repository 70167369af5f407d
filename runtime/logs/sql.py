"""SQL text helpers shared by the log format table: literals and a bound sub-expression."""

from __future__ import annotations


def sql_str(text: str) -> str:
    """Quote ``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def with_struct(struct: str, name: str, expr: str) -> str:
    """``expr`` with ``name`` bound to the value of ``struct``, which is computed once.

    A one-element list and a lambda: DuckDB has no ``let``, and repeating a ``regexp_extract``
    in every branch that reads it would run the regex once per branch.
    """
    return f"list_transform([{struct}], lambda {name}: {expr})[1]"
