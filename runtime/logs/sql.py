"""SQL text helpers shared by the log format table: literals and a bound sub-expression."""

from __future__ import annotations

from rlm_dsl.runtime.store.store import quote_literal as sql_str  # the log modules' short name

__all__ = ["sql_str", "with_struct"]


def with_struct(struct: str, name: str, expr: str) -> str:
    """``expr`` with ``name`` bound to the value of ``struct``, which is computed once.

    A one-element list and a lambda: DuckDB has no ``let``, and repeating a ``regexp_extract``
    in every branch that reads it would run the regex once per branch.
    """
    return f"list_transform([{struct}], lambda {name}: {expr})[1]"
