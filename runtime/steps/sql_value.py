"""Typed ``reduce … by sql``: the query's rows shaped into the declared value, or a clear error.

Step-handler stage. An untyped SQL reduce keeps the query's own columns (``outputs`` shows its
rows as a list of records). With a declared type the result must fit it: a scalar (``int``,
``str``, an enum, …) is one row of one column (no row is ``null``), a record one row whose
columns are its fields, a ``list[record]`` any rows with those columns, a ``list[scalar]`` one
column. Values are validated and converted with pydantic; anything else is a
:class:`~rlm_dsl.errors.SpecError` (the executor's ``StepFailed`` names the step) saying the
declared type and what the query gave.
"""

from __future__ import annotations

from typing import Any

import pydantic

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.types import ListOf, Optional, Record, Type
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.lm.signatures import annotation, to_plain


def typed_value(step: Step, columns: list[str], rows: list[tuple[Any, ...]]) -> Any:
    """The declared value of SQL reduce ``step`` from its query's ``columns`` and ``rows``."""
    assert step.output is not None
    t = step.output.type
    inner = t.item if isinstance(t, Optional) else t
    item = inner.item if isinstance(inner, ListOf) else None
    if isinstance(inner, Record):
        _need(t, len(rows) <= 1, f"{len(rows)} rows")
        value = _record(t, inner, columns, rows[0]) if rows else None
    elif isinstance(item, Record):
        value = [_record(t, item, columns, row) for row in rows]
    elif item is not None:
        _need(t, len(columns) == 1, f"{len(columns)} columns ({', '.join(columns)})")
        value = [row[0] for row in rows]
    else:
        _need(t, len(columns) == 1, f"{len(columns)} columns ({', '.join(columns)})")
        _need(t, len(rows) <= 1, f"{len(rows)} rows")
        value = rows[0][0] if rows else None
    if value is None:
        return None
    try:
        return to_plain(pydantic.TypeAdapter(annotation(t)).validate_python(value))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        place = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"the query's value does not fit the declared type {t}: "
                        f"{place + ': ' if place else ''}{first['msg']}") from None


def _record(t: Type, record: Record, columns: list[str], row: tuple[Any, ...]
            ) -> dict[str, Any]:
    fields = [f.name for f in record.fields]
    _need(t, sorted(columns) == sorted(fields),
          f"columns ({', '.join(columns)}), not the fields ({', '.join(fields)})")
    return dict(zip(columns, row, strict=True))


def _need(t: Type, ok: bool, got: str) -> None:
    if not ok:
        raise SpecError(f"reduce by sql declares {t} but the query returned {got}")
