"""Evidence: where each map row came from, and which rows a reduced value rests on.

Step-handler stage. A map row keeps its chunk id (the row ``id``), ``source`` and line range
(``first_line``, ``last_line``) from the row it read (a chunk, an input line, another map's row),
plus ``line``: the line of the row's text holding its first grounded value, when it has one;
a grounded map also keeps that line's text in ``line_text`` (what a later check step reads).
A ``concat`` / ``tree`` / ``fold`` / ``vote`` reduce writes, beside its value, an ``evidence``
list of those rows: for ``vote`` the rows that voted for the winner; for an LM reduce the rows
whose value occurs in the answer, else every row it read. :func:`citation` renders one as
``source:line`` (or ``source:first-last``).
"""

from __future__ import annotations

import json
from typing import Any

from rlm_dsl.runtime.steps.grounding import normalise, occurs

PROVENANCE = {"source": "VARCHAR", "first_line": "BIGINT", "last_line": "BIGINT",
              "line": "BIGINT"}
EVIDENCE_TYPE = ("STRUCT(id BIGINT, source VARCHAR, first_line BIGINT, last_line BIGINT, "
                 "line BIGINT)[]")
EVIDENCE_COLUMN = "evidence"
LINE_TEXT_COLUMN = "line_text"


def provenance(row: dict[str, Any], values: list[str] | None = None) -> dict[str, Any]:
    """Source and line range of a source row; ``line`` where the first of ``values`` is, and
    that line's text."""
    first = row.get("first_line", row.get("line_no"))
    last = row.get("last_line", row.get("end_line_no", first))
    found, line_text = row.get("line"), row.get(LINE_TEXT_COLUMN)
    text = row.get("text")
    if values and isinstance(text, str) and isinstance(first, int):
        hit = _line_of(text, values)
        if hit is not None:
            found, line_text = first + hit[0], hit[1]
    return {"source": row.get("source"), "first_line": first, "last_line": last, "line": found,
            LINE_TEXT_COLUMN: line_text}


def _line_of(text: str, values: list[str]) -> tuple[int, str] | None:
    """(offset, text) of the first line of ``text`` holding one of ``values``, tried in order."""
    lines = text.split("\n")
    for value in values:
        if not normalise(value):
            continue
        for offset, line in enumerate(lines):
            if occurs(value, normalise(line)):
                return offset, line
    return None


def says_nothing(item: Any) -> bool:
    """A reduce item that carries nothing: null (not found, not grounded) or an empty list (a
    list map's row that found none)."""
    return item is None or item == []


def supporting(rows: list[dict[str, Any]], items: list[Any], value: Any,
               strategy: str) -> list[dict[str, Any]]:
    """The evidence rows of a reduced ``value`` (``rows[i]`` is the row of ``items[i]``)."""
    if value is None:
        return []
    kept = [(row, item) for row, item in zip(rows, items, strict=True) if not says_nothing(item)]
    if strategy == "vote":
        return [row for row, item in kept if item == value]
    answer = normalise(value if isinstance(value, str) else json.dumps(value, default=str))
    named = [row for row, item in kept if any(t and t in answer for t in _texts(item))]
    return named or [row for row, _ in kept]


def _texts(item: Any) -> list[str]:
    """The normalised strings of an item (a record's or list's string parts)."""
    if isinstance(item, str):
        return [normalise(item)]
    if isinstance(item, dict):
        return [t for v in item.values() for t in _texts(v)]
    if isinstance(item, list):
        return [t for v in item for t in _texts(v)]
    return [] if item is None or isinstance(item, bool) else [normalise(str(item))]


def citation(row: dict[str, Any]) -> str:
    """``source:line``, ``source:first-last`` or ``row <id>``."""
    source = row.get("source") or f"row {row.get('id')}"
    line, first, last = row.get("line"), row.get("first_line"), row.get("last_line")
    if line is not None:
        return f"{source}:{line}"
    if first is not None:
        return f"{source}:{first}" if last in (None, first) else f"{source}:{first}-{last}"
    return source
