"""Grounded fields: a map value the row's text does not contain is re-asked once, then nulled.

Step-handler stage (``map … with grounded=[field, …]``, checked by
:mod:`rlm_dsl.compiler.trust_checks`). After a row's answer, every named field — the map's value
itself when it is text, else a ``str`` / ``list[str]`` field of its record (of each record of a
list) — must occur in the row's text, compared case- and whitespace-insensitively as whole
words (surrounding quotes and punctuation of the value ignored); a list is checked per element.
When one does not, the model is asked once more with the offending values named; whatever is
still not in the text is set to null (a list loses those elements). :class:`Grounder` says
whether the row's answer was grounded as first given, so the map table records it in its
``grounded`` column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from rlm_dsl.compiler.trust_checks import output_record
from rlm_dsl.compiler.types import Type

GROUNDED_COLUMN = "grounded"
_SPACE = re.compile(r"\s+")
_EDGES = " \t\r\n.,;:!?'\"`()[]{}<>"
Keep = Callable[[str, str], "str | None"]  # (field, string) -> the string kept, or None


def normalise(text: str) -> str:
    """Case-folded, whitespace runs collapsed to one space."""
    return _SPACE.sub(" ", text).casefold().strip()


def row_text(row: dict[str, Any]) -> str:
    """The text a row's values must come from: its ``text``, else every value of the row."""
    text = row.get("text")
    if isinstance(text, str):
        return text
    return json.dumps({k: v for k, v in row.items() if k != "id"}, default=str)


class Grounder:
    """Checks and repairs the grounded fields of one map's answers."""

    def __init__(self, out: Type, value_name: str, fields: list[str]) -> None:
        self.record = output_record(out)
        self.fields = [f for f in fields if self.record is not None or f == value_name]

    def missing(self, value: Any, text: str) -> list[tuple[str, str]]:
        """(field, value) for every grounded string in ``value`` that ``text`` does not contain."""
        haystack = normalise(text)
        found: list[tuple[str, str]] = []

        def note(field: str, s: str) -> str:
            if not occurs(s, haystack):
                found.append((field, s))
            return s

        self._map(value, note)
        return found

    def strip(self, value: Any, text: str) -> Any:
        """``value`` with every grounded string not in ``text`` nulled (dropped from lists)."""
        haystack = normalise(text)
        return self._map(value, lambda _field, s: s if occurs(s, haystack) else None)

    def values(self, value: Any) -> list[str]:
        """Every grounded string of ``value``, in order."""
        found: list[str] = []

        def note(_field: str, s: str) -> str:
            found.append(s)
            return s

        self._map(value, note)
        return found

    def feedback(self, missing: list[tuple[str, str]]) -> str:
        named = "; ".join(f"{field} = {json.dumps(s)}" for field, s in missing[:8])
        return ("\n\nYour previous answer gave " + named + ", which does not occur in the text "
                "above. Copy every such value exactly from the text; if the text does not "
                "contain it, leave it empty (null).")

    def _map(self, value: Any, keep: Keep) -> Any:
        """``value`` with ``keep(field, s)`` applied to each grounded string."""
        if value is None:
            return None
        if self.record is None:
            return _text(value, keep, self.fields[0])
        if isinstance(value, list):
            return [self._map(item, keep) for item in value]
        if not isinstance(value, dict):
            return value
        fixed = dict(value)
        for field in self.fields:
            if field in fixed:
                fixed[field] = _text(fixed[field], keep, field)
        return fixed


def _text(value: Any, keep: Keep, field: str) -> Any:
    """``keep`` over a str, or over each str of a list (the nulled ones dropped)."""
    if isinstance(value, str):
        return keep(field, value)
    if isinstance(value, list):
        kept = [keep(field, v) if isinstance(v, str) else v for v in value]
        return [v for v in kept if v is not None]
    return value


def occurs(value: str, haystack: str) -> bool:
    """Whether ``value`` is in the normalised ``haystack`` as whole words: "10" is not in "2010"
    (a small model's made-up number is often a piece of one in the text)."""
    needle = normalise(value).strip(_EDGES)
    if not needle:
        return True
    pattern = re.escape(needle)
    if needle[0].isalnum():
        pattern = r"(?<!\w)" + pattern
    if needle[-1].isalnum():
        pattern += r"(?!\w)"
    return re.search(pattern, haystack) is not None
