"""Value types of the `.rlm` language, shared by the compiler and (through the Plan) the runtime.

A type is one of five frozen dataclasses: :class:`Prim` (str, int, float, bool), :class:`ListOf`,
:class:`Optional`, :class:`Enum` (a closed set of labels) and :class:`Record` (named fields). They
are pure data with a stable text form (``str(t)`` is the spec syntax) and a JSON form
(:func:`type_to_json` / :func:`type_from_json`) used by plan dumps. Converting a type into a Python
annotation, pydantic model or DuckDB column type is the runtime's job, not the compiler's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PRIMITIVES = ("str", "int", "float", "bool")


@dataclass(frozen=True, slots=True)
class Prim:
    name: str  # one of PRIMITIVES

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Type

    def __str__(self) -> str:
        return f"list[{self.item}]"


@dataclass(frozen=True, slots=True)
class Optional:
    item: Type

    def __str__(self) -> str:
        return f"{self.item}?"


@dataclass(frozen=True, slots=True)
class Enum:
    values: tuple[str, ...]
    name: str | None = None  # set when declared with `type Name = a | b`

    def __str__(self) -> str:
        return self.name or " | ".join(self.values)


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: Type


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    fields: tuple[Field, ...]

    def __str__(self) -> str:
        return self.name

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)


Type = Prim | ListOf | Optional | Enum | Record


def type_to_json(t: Type) -> dict[str, Any]:
    """Return the JSON form of ``t`` (records and enums are written out in full)."""
    match t:
        case Prim(name):
            return {"kind": name}
        case ListOf(item):
            return {"kind": "list", "item": type_to_json(item)}
        case Optional(item):
            return {"kind": "optional", "item": type_to_json(item)}
        case Enum(values, name):
            return {"kind": "enum", "name": name, "values": list(values)}
        case Record(name, fields):
            return {
                "kind": "record",
                "name": name,
                "fields": [{"name": f.name, "type": type_to_json(f.type)} for f in fields],
            }
    raise TypeError(f"not a type: {t!r}")


def type_from_json(data: dict[str, Any]) -> Type:
    """Inverse of :func:`type_to_json`."""
    kind = data["kind"]
    if kind in PRIMITIVES:
        return Prim(kind)
    if kind == "list":
        return ListOf(type_from_json(data["item"]))
    if kind == "optional":
        return Optional(type_from_json(data["item"]))
    if kind == "enum":
        return Enum(tuple(data["values"]), data.get("name"))
    if kind == "record":
        fields = tuple(Field(f["name"], type_from_json(f["type"])) for f in data["fields"])
        return Record(data["name"], fields)
    raise ValueError(f"unknown type kind {kind!r}")
