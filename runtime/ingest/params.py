"""A run's inputs and params checked against the plan: undeclared names, missing or mistyped values.

Ingest stage, before anything is read. :func:`check_inputs` refuses an ``--input`` the recipe does
not declare; :func:`coerce_params` types every ``--param`` by the param's declared type (text from
the command line is parsed: ints, floats, booleans, enum labels, JSON lists) and fills defaults.
Every refusal is an :class:`~rlm_dsl.errors.InputError` (exit 2) naming the flag.
"""

from __future__ import annotations

import json
from typing import Any

from rlm_dsl.compiler.plan import Plan
from rlm_dsl.compiler.types import Enum, ListOf, Optional, Prim, Type
from rlm_dsl.errors import InputError

_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}


def check_inputs(plan: Plan, inputs: dict[str, Any]) -> None:
    declared = [s.name for s in plan.steps() if s.kind == "input"]
    for name in inputs:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise InputError(f"--input {name}: the recipe '{plan.recipe}' declares no input "
                             f"'{name}' (inputs: {known})")


def coerce_params(plan: Plan, given: dict[str, Any]) -> dict[str, Any]:
    """Param values by name, typed; text from the command line is parsed per the param type."""
    declared = {p.name: p for p in plan.params}
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise InputError(f"--param {name}: the recipe '{plan.recipe}' declares no param "
                             f"'{name}' (params: {known})")
    values = {}
    for name, param in declared.items():
        if name in given:
            values[name] = _coerce(name, param.type, given[name])
        elif param.required:
            raise InputError(f"--param {name}: required ({param.type}) but not given")
        else:
            values[name] = param.default
    return values


def _coerce(name: str, t: Type, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    match t:
        case Optional(item):
            return _coerce(name, item, value)
        case Prim("str"):
            return value
        case Prim("int") | Prim("float"):
            try:
                return int(value) if t == Prim("int") else float(value)
            except ValueError:
                pass
        case Prim("bool"):
            if value.lower() in _TRUE | _FALSE:
                return value.lower() in _TRUE
        case Enum(values) if value in values:
            return value
        case ListOf():
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return parsed
    raise InputError(f"--param {name}={value}: expected {_describe(t)}")


def _describe(t: Type) -> str:
    match t:
        case Prim("int"):
            return "an integer (int)"
        case Prim("float"):
            return "a number (float)"
        case Prim("bool"):
            return "true or false (bool)"
        case Enum(values):
            return "one of " + ", ".join(values)
    return f"a value of type {t}"
