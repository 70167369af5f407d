"""Metrics for ``rlm optimize``: compare a recipe's outputs with a trainset's expected outputs.

Optimization stage (see :mod:`rlm_dsl.runtime.optimize.optimizer`). :func:`resolve_metric` turns the
``--metric`` text into a :class:`Metric`: ``exact`` (equal after trimming strings; numbers by
value), ``contains`` (the expected text occurs in the output, case-insensitive), ``f1`` (word
overlap F1, SQuAD-style), ``numeric`` (equal as numbers within 1e-6 relative), or
``python:module:function`` — a user function ``(example, prediction, trace=None)`` returning a
number, a bool or a ``dspy.Prediction(score=…, feedback=…)``. A built-in metric scores each
expected output and averages them; with ``feedback=True`` (GEPA) it returns the score with a
sentence per wrong output saying what was expected and what came back.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import dspy

from rlm_dsl.errors import SpecError

BUILTIN = ("exact", "contains", "f1", "numeric")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_WORD = re.compile(r"\w+")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    return json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)


def exact(expected: Any, got: Any) -> float:
    if isinstance(expected, str) or isinstance(got, str):
        return float(_text(expected) == _text(got))
    return float(_plain_equal(expected, got))


def _plain_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return _text(a) == _text(b)


def contains(expected: Any, got: Any) -> float:
    return float(_text(expected).lower() in _text(got).lower())


def f1(expected: Any, got: Any) -> float:
    want = Counter(w.lower() for w in _WORD.findall(_text(expected)))
    have = Counter(w.lower() for w in _WORD.findall(_text(got)))
    if not want or not have:
        return float(want == have)
    common = sum((want & have).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(have.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def numeric(expected: Any, got: Any) -> float:
    a, b = _number(expected), _number(got)
    if a is None or b is None:
        return 0.0
    return float(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9))


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    found = _NUMBER.search(_text(value)) if value is not None else None
    return float(found.group()) if found else None


COMPARE: dict[str, Callable[[Any, Any], float]] = {
    "exact": exact, "contains": contains, "f1": f1, "numeric": numeric,
}


class Metric:
    """A metric over a recipe's outputs; callable the way every DSPy optimizer calls one."""

    def __init__(self, name: str, outputs: list[str], custom: Callable[..., Any] | None = None,
                 feedback: bool = False) -> None:
        self.name, self.outputs, self.custom, self.feedback = name, outputs, custom, feedback

    def with_feedback(self) -> Metric:
        """The same metric returning ``dspy.Prediction(score, feedback)`` (what GEPA reads)."""
        return Metric(self.name, self.outputs, self.custom, feedback=True)

    def __call__(self, example: Any, prediction: Any, trace: Any = None,
                 pred_name: str | None = None, pred_trace: Any = None) -> Any:
        if self.custom is not None:
            score, note = _custom_score(self.custom(example, prediction, trace))
        else:
            score, note = self._builtin(example, prediction)
        if self.feedback:
            return dspy.Prediction(score=score, feedback=note)
        return score

    def _builtin(self, example: Any, prediction: Any) -> tuple[float, str]:
        compare = COMPARE[self.name]
        names = [n for n in self.outputs if n in example.labels()]
        scores, notes = [], []
        for name in names:
            got = prediction.get(name) if prediction is not None else None
            score = compare(example[name], got)
            scores.append(score)
            if score < 1.0:
                notes.append(f"output '{name}': expected {_text(example[name])!r}, "
                             f"got {_text(got)!r} ({self.name} score {score:.2f})")
        total = sum(scores) / len(scores) if scores else 0.0
        return total, "; ".join(notes) or "all expected outputs are right"


def _custom_score(value: Any) -> tuple[float, str]:
    if isinstance(value, dspy.Prediction) and "score" in value:
        return float(value.score), str(value.get("feedback") or f"score {value.score}")
    return float(value), f"score {float(value):.2f}"


def resolve_metric(spec: str, outputs: list[str]) -> Metric:
    """``exact`` | ``contains`` | ``f1`` | ``numeric`` | ``python:module:function``."""
    if spec in COMPARE:
        return Metric(spec, outputs)
    if not spec.startswith("python:"):
        raise SpecError(f"--metric {spec}: expected one of {', '.join(BUILTIN)} or "
                        "python:module:function")
    module_name, _, func_name = spec.removeprefix("python:").partition(":")
    if not module_name or not func_name:
        raise SpecError(f"--metric {spec}: expected python:module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(f"--metric {spec}: cannot import module '{module_name}': {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise SpecError(f"--metric {spec}: module '{module_name}' has no function '{func_name}'")
    try:
        inspect.signature(func).bind(None, None, None)
    except TypeError:
        raise SpecError(f"--metric {spec}: the function must take (example, prediction, "
                        "trace=None)") from None
    return Metric(spec, outputs, custom=func)
