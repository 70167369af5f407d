"""Trainsets for ``rlm optimize``: JSONL examples of a recipe's inputs, params and expected outputs.

Optimization stage (see :mod:`rlm_dsl.runtime.optimize.optimizer`). One example per line::

    {"inputs": {"logs": "data/app.log"}, "params": {"top": 3}, "expected": {"answer": "42"}}
    {"inputs": {"logs": {"text": "inline file content\\n"}}, "expected": {"answer": "7"}}

``inputs`` maps input names to a path (relative to the trainset file's folder), a list of paths,
or ``{"text": …}`` — inline content written to a file in a scratch folder; inputs left out use
the spec's ``path=``. ``params`` are checked and typed like ``--param``. ``expected`` maps one or
more of the recipe's outputs to the wanted value. Blank lines and lines starting with ``#`` are
skipped. Anything else wrong raises :class:`~rlm_dsl.errors.InputError` naming ``file:line``.
Each example becomes a ``dspy.Example`` whose inputs are the recipe's inputs and params (the
keywords ``RecipeModule.forward`` takes) and whose labels are the expected outputs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dspy

from rlm_dsl.compiler.plan import Plan
from rlm_dsl.errors import InputError
from rlm_dsl.runtime.ingest.params import coerce_params

FIELDS = ("inputs", "params", "expected")
SUFFIX = {"text": ".txt", "lines": ".txt", "log": ".log", "jsonl": ".jsonl", "csv": ".csv"}


def load_trainset(path: str | Path, plan: Plan, scratch: Path) -> list[dspy.Example]:
    """Read and check every example of the JSONL file at ``path`` (see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the trainset: {exc}") from None
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            where = f"{path}:{number}"
            examples.append(_example(where, line, plan, path.parent, scratch / f"{number}"))
    if not examples:
        raise InputError(f"{path}: the trainset holds no examples (one JSON object per line)")
    return examples


def _example(where: str, line: str, plan: Plan, base: Path, scratch: Path) -> dspy.Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not a JSON object: {exc.msg} (column {exc.colno})") from None
    if not isinstance(record, dict):
        raise InputError(f"{where}: expected a JSON object with {', '.join(FIELDS)}")
    unknown = sorted(set(record) - set(FIELDS))
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(unknown)} "
                         f"(fields: {', '.join(FIELDS)})")
    inputs = _inputs(where, _mapping(where, record, "inputs"), plan, base, scratch)
    params = _params(where, _mapping(where, record, "params"), plan)
    expected = _expected(where, record, plan)
    clash = sorted((set(inputs) | set(params)) & set(expected))
    if clash:
        raise InputError(f"{where}: {', '.join(clash)} is both an input or param and an output")
    return dspy.Example(**inputs, **params, **expected).with_inputs(*inputs, *params)


def _mapping(where: str, record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key, {})
    if not isinstance(value, dict):
        raise InputError(f"{where}: '{key}' must be a JSON object, got {type(value).__name__}")
    return value


def _inputs(where: str, given: dict[str, Any], plan: Plan, base: Path, scratch: Path
            ) -> dict[str, Any]:
    declared = {s.name: s for s in plan.steps() if s.kind == "input"}
    for name in given:
        if name not in declared:
            known = ", ".join(declared) or "none"
            raise InputError(f"{where}: unknown input '{name}' (inputs: {known})")
    found: dict[str, Any] = {}
    for name, step in declared.items():
        if name in given:
            found[name] = _input_value(where, name, step.strategy, given[name], base, scratch)
        elif step.strategy == "stdin" or not step.options.get("path"):
            raise InputError(f"{where}: missing input '{name}' (the spec gives it no path=)")
    return found


def _input_value(where: str, name: str, kind: str | None, value: Any, base: Path,
                 scratch: Path) -> str | list[str]:
    if isinstance(value, dict) and set(value) == {"text"} and isinstance(value["text"], str):
        if kind not in SUFFIX:
            raise InputError(f"{where}: input '{name}' ({kind}) cannot be given inline; "
                             "give a path")
        scratch.mkdir(parents=True, exist_ok=True)
        target = scratch / f"{name}{SUFFIX[kind]}"
        target.write_text(value["text"], encoding="utf-8")
        return str(target)
    paths = value if isinstance(value, list) else [value]
    if not paths or not all(isinstance(p, str) and p for p in paths):
        raise InputError(f"{where}: input '{name}' must be a path, a list of paths or "
                         '{"text": "…"}')
    resolved = [p if Path(p).is_absolute() or any(c in p for c in "*?[") else str(base / p)
                for p in paths]
    for original, full in zip(paths, resolved, strict=True):
        if not any(c in original for c in "*?[") and not Path(full).exists():
            raise InputError(f"{where}: input '{name}': no such file {full}")
    return resolved[0] if len(resolved) == 1 else resolved


def _params(where: str, given: dict[str, Any], plan: Plan) -> dict[str, Any]:
    try:
        coerce_params(plan, given)
    except InputError as exc:
        raise InputError(f"{where}: {str(exc).removeprefix('--param ')}") from None
    return dict(given)


def _expected(where: str, record: dict[str, Any], plan: Plan) -> dict[str, Any]:
    if "expected" not in record:
        raise InputError(f"{where}: missing field 'expected' (the wanted value of at least one "
                         f"output: {', '.join(plan.outputs)})")
    expected = _mapping(where, record, "expected")
    if not expected:
        raise InputError(f"{where}: 'expected' names no output (outputs: "
                         f"{', '.join(plan.outputs)})")
    for name in expected:
        if name not in plan.outputs:
            raise InputError(f"{where}: unknown output '{name}' in 'expected' "
                             f"(outputs: {', '.join(plan.outputs)})")
    return expected
