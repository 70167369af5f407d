"""Runtime typing: turn the compiler's value types into DSPy signatures, Python and DuckDB types.

This is the runtime stage that gives every map / filter / reduce step its typed edge:
:func:`make_signature` builds a readable ``dspy.Signature`` class (``MapIncidents``) whose single
input field ``prompt`` carries the rendered Jinja2 text and whose output field is the step's
typed value; :func:`annotation` maps a :data:`~rlm_dsl.compiler.types.Type` to a Python / pydantic
annotation, :func:`duckdb_type` to a DuckDB column type, :func:`to_plain` turns a parsed DSPy value
into plain JSON-able data for the store, and :func:`combine` merges the results of a split chunk
(list → concat, int/float → sum, bool → any, str → joined, enum → vote, record → per field).
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any, Literal

import dspy
import pydantic

from rlm_dsl.compiler.types import Enum, ListOf, Optional, Prim, Record, Type

_PRIM_PY: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_PRIM_DB = {"str": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}


def camel(*words: str) -> str:
    """``camel("map", "incidents-2")`` → ``MapIncidents2`` (a readable class name)."""
    parts = [p for w in words for p in w.replace("-", "_").split("_") if p]
    return "".join(p[:1].upper() + p[1:] for p in parts)


@cache
def annotation(t: Type) -> Any:
    """The Python annotation DSPy parses an LM answer of type ``t`` into."""
    match t:
        case Prim(name):
            return _PRIM_PY[name]
        case ListOf(item):
            return list[annotation(item)]
        case Optional(item):
            return annotation(item) | None
        case Enum(values, _):
            return Literal[values]
        case Record(name, fields):
            model_fields: dict[str, Any] = {f.name: (annotation(f.type), ...) for f in fields}
            return pydantic.create_model(camel(name), **model_fields)
    raise TypeError(f"not a type: {t!r}")


def duckdb_type(t: Type) -> str:
    """The DuckDB column type holding values of ``t`` (records → STRUCT, lists → ``[]``)."""
    match t:
        case Prim(name):
            return _PRIM_DB[name]
        case ListOf(item):
            return f"{duckdb_type(item)}[]"
        case Optional(item):
            return duckdb_type(item)
        case Enum():
            return "VARCHAR"
        case Record(_, fields):
            cols = ", ".join(f'"{f.name}" {duckdb_type(f.type)}' for f in fields)
            return f"STRUCT({cols})"
    raise TypeError(f"not a type: {t!r}")


def make_signature(
    kind: str, name: str, out: Type, instructions: str = "", field_name: str | None = None
) -> type[dspy.Signature]:
    """A signature ``<Kind><Name>(prompt: str -> <name>: <out>)`` for one step.

    The rendered prompt is the only input; the output field is ``field_name`` (default ``name``);
    ``instructions`` (the recipe description) becomes the signature docstring so optimizers can
    tune it. ChainOfThought adds its own ``reasoning`` field in front.
    """
    fields = {
        "prompt": (str, dspy.InputField(desc="the task and its data")),
        field_name or name: (annotation(out), dspy.OutputField(desc=f"a value of type {out}")),
    }
    sig = dspy.Signature(fields, instructions or f"Answer with the {name}.")
    return type(camel(kind, name), (sig,), {"__doc__": sig.instructions})


_SCALARS = frozenset({str, int, float, bool, type(None)})


def to_plain(value: Any) -> Any:
    """A parsed DSPy value as plain data (pydantic models → dicts), recursively."""
    if type(value) in _SCALARS:  # most answers: returned before the slower isinstance checks
        return value
    if isinstance(value, pydantic.BaseModel):
        return {k: to_plain(v) for k, v in value.model_dump().items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def combine(t: Type, parts: list[Any]) -> Any:
    """Merge the results of the pieces of a split chunk into one value of type ``t``."""
    present = [p for p in parts if p is not None]
    if not present:
        return None
    match t:
        case ListOf():
            return [x for p in present for x in p]
        case Optional(item):
            return combine(item, present)
        case Prim("int") | Prim("float"):
            return sum(present)
        case Prim("bool"):
            return any(present)
        case Prim("str"):
            return "\n".join(str(p) for p in present if str(p).strip())
        case Enum():
            return vote(present)
        case Record(_, fields):
            return {f.name: combine(f.type, [p.get(f.name) for p in present]) for f in fields}
    raise TypeError(f"not a type: {t!r}")


def vote(values: list[Any]) -> Any:
    """The most common value; ties go to the value seen first."""
    counts = Counter(_hashable(v) for v in values)
    best = max(counts.values())
    return next(v for v in values if counts[_hashable(v)] == best)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
