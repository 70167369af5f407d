"""Lenient output parsing (runtime stage: LM back ends) for what small models actually write.

Small models drift from DSPy's ``[[ ## field ## ]]`` format: they wrap JSON in code fences, put
prose around it, leave trailing commas, write ``Answer: HIGH`` or ``**severity**: "High"``, or
just answer with the bare value. :func:`lenient_fields` recovers the output fields from such
text; :func:`coerce` turns one raw value into the field's type, normalising choices (case,
whitespace, quotes, a unique prefix), bare numbers and yes/no. Anything still ambiguous raises
``ValueError`` — guessing would hide a wrong answer, so the caller records a failure instead.
"""

from __future__ import annotations

import enum
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin

import json_repair
from dspy.adapters.utils import parse_value

_FENCE = re.compile(r"```[\w-]*\s*\n?(.*?)```", re.DOTALL)
_NUMBER = re.compile(r"[-+]?\d[\d,_]*(?:\.\d+)?(?:[eE][-+]?\d+)?")
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}
_STRIP = " \t\r\n\"'`*.,;:!()[]{}"


def lenient_fields(output_fields: Mapping[str, Any], text: str) -> dict[str, Any]:
    """Parse ``text`` into ``{field: value}`` for ``output_fields`` (name → pydantic FieldInfo)."""
    names = list(output_fields)
    raw = _sections(names, text) or _json_object(names, text)
    if not raw and len(names) == 1:
        raw = {names[0]: _unwrap(text)}
    missing = [n for n in names if n not in raw and output_fields[n].is_required()]
    if missing:
        raise ValueError(f"no value found for field(s) {', '.join(missing)}")
    return {name: coerce(value, output_fields[name].annotation) for name, value in raw.items()}


def coerce(raw: Any, annotation: Any) -> Any:
    """Turn one raw value into ``annotation``'s type, forgiving the usual small-model slips."""
    options = choice_options(annotation)
    if options is not None:
        return normalize_choice(raw, options, annotation)
    if isinstance(raw, str):
        raw = _unwrap(raw)
        if annotation is bool:
            return _boolean(raw)
        if annotation in (int, float):
            return _number(raw, annotation)
    return parse_value(raw, annotation)


def choice_options(annotation: Any) -> tuple[Any, ...] | None:
    """The allowed values of a ``Literal`` or ``Enum`` annotation (through ``Optional``)."""
    if isinstance(annotation, enum.EnumMeta):
        return tuple(annotation)
    if get_origin(annotation) is Literal:
        return get_args(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        if len(inner) == 1:
            return choice_options(inner[0])
    return None


def normalize_choice(raw: Any, options: Sequence[Any], annotation: Any = None) -> Any:
    """The one option ``raw`` names: exactly (ignoring case, spaces, quotes), by a unique prefix,
    or as the only option named anywhere in the text."""
    text = _choice_text(raw)
    keys = {_key(_option_value(o)): o for o in options}
    if text in keys:
        return keys[text]
    prefixed = {o for key, o in keys.items() if text and key.startswith(text)}
    named = {o for key, o in keys.items() if key and re.search(rf"\b{re.escape(key)}\b", text)}
    for found in (prefixed, named):
        if len(found) == 1:
            return found.pop()
    allowed = ", ".join(str(_option_value(o)) for o in options)
    raise ValueError(f"{raw!r} is not one of: {allowed}")


def _option_value(option: Any) -> Any:
    return option.value if isinstance(option, enum.Enum) else option


def _choice_text(raw: Any) -> str:
    text = _unwrap(str(raw)) if isinstance(raw, str) else str(raw)
    for prefix in ("Literal[", "str["):
        if text.startswith(prefix) and text.endswith("]"):
            text = text[len(prefix):-1]
    return _key(text)


def _key(value: Any) -> str:
    return re.sub(r"[\s_-]+", " ", str(value).strip(_STRIP)).casefold().strip()


def _unwrap(text: str) -> str:
    """Drop code fences, a trailing completion marker and a leading ``Answer:`` style label."""
    fenced = _FENCE.search(text)
    body = fenced.group(1) if fenced else text
    body = re.sub(r"\[\[\s*#*\s*completed\s*#*\s*\]\]", "", body, flags=re.IGNORECASE)
    return body.strip()


def _boolean(text: str) -> bool:
    words = re.findall(r"[a-z]+|\d", text.casefold())
    if words and (words[0] in _TRUE or words[0] in _FALSE):
        return words[0] in _TRUE
    found = {w in _TRUE for w in words if w in _TRUE | _FALSE}
    if len(found) == 1:
        return found.pop()
    raise ValueError(f"cannot read yes/no from {text[:80]!r}")


def _number(text: str, annotation: type) -> int | float:
    numbers = _NUMBER.findall(text)
    if len(numbers) != 1:
        raise ValueError(f"expected one number, found {len(numbers)} in {text[:80]!r}")
    value = float(numbers[0].replace(",", "").replace("_", ""))
    if annotation is int:
        if not value.is_integer():
            raise ValueError(f"{numbers[0]} is not a whole number")
        return int(value)
    return value


def _sections(names: Sequence[str], text: str) -> dict[str, str]:
    """Fields marked by header lines: ``[[ ## x ## ]]``, ``## x``, ``**x**:``, ``x:``."""
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    header = re.compile(
        rf"^\s*(?:\[\[\s*#*\s*|#+\s*|\*\*)?({alternatives})(?:\s*#*\s*\]\]|\*\*)?\s*:?\*{{0,2}}"
        rf"(?=\s|$)(.*)$",
        re.IGNORECASE,
    )
    by_key = {n.casefold(): n for n in names}
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        match = header.match(line)
        if match and by_key[match.group(1).casefold()] not in found:
            current = found.setdefault(by_key[match.group(1).casefold()], [])
            rest = match.group(2).strip()
            current.extend([rest] if rest else [])
        elif re.match(r"^\s*\[\[\s*#*\s*completed", line, re.IGNORECASE):
            current = None
        elif current is not None:
            current.append(line)
    return {name: "\n".join(lines).strip() for name, lines in found.items()}


def _json_object(names: Sequence[str], text: str) -> dict[str, Any]:
    """Fields from the first JSON object in ``text`` (fenced or in prose), keys matched by case."""
    body = _unwrap(text)
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        return {}
    value = json_repair.loads(body[start:end + 1])
    if not isinstance(value, dict):
        return {}
    by_key = {n.casefold(): n for n in names}
    return {by_key[k.casefold()]: v for k, v in value.items()
            if isinstance(k, str) and k.casefold() in by_key}
