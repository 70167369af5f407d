"""Scoring for the quality bench: how close an answer is to the computed truth, in [0, 1].

Bench scoring stage. Each task instance names a ``metric``; :func:`score` dispatches on it.
``number``: OOLONG's ``0.75 ** |error|`` on the first integer in the answer. ``exact``: equal
after normalising (lower case, articles and punctuation dropped). ``contains``: the normalised
gold occurs in the normalised answer (HotpotQA answers inside a sentence). ``label``: the gold
label is the only label named. ``pairs``: F1 between the gold user pairs and the pairs read
from the answer (OOLONG-Pairs).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from typing import Any

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_INT = re.compile(r"-?\d[\d,]*")
_PAIR = re.compile(r"\(?\s*([A-Za-z]*\d+)\s*,\s*([A-Za-z]*\d+)\s*\)?")


def normalize(text: str) -> str:
    """SQuAD-style normalisation: lower case, no punctuation or articles, single spaces."""
    text = "".join(c for c in str(text).lower() if c not in string.punctuation)
    return " ".join(_ARTICLES.sub(" ", text).split())


def first_int(text: str) -> int | None:
    """The first integer written in ``text`` (thousands separators allowed), or None."""
    match = _INT.search(str(text))
    return int(match.group().replace(",", "")) if match else None


def score_number(answer: Any, gold: int) -> float:
    """OOLONG numeric score: ``0.75 ** |answer - gold|``; 0 when the answer has no integer."""
    value = answer if isinstance(answer, int) else first_int(str(answer))
    return 0.0 if value is None else 0.75 ** abs(value - gold)


def score_exact(answer: Any, gold: str) -> float:
    return float(normalize(str(answer)) == normalize(gold))


def score_contains(answer: Any, gold: str) -> float:
    target = normalize(gold)
    return float(bool(target) and f" {target} " in f" {normalize(str(answer))} ")


def score_label(answer: Any, gold: str, labels: Iterable[str]) -> float:
    """1 when the gold label is the only one of ``labels`` the answer names."""
    words = set(normalize(str(answer).replace("_", " ")).split())
    named = {lab for lab in labels if set(lab.replace("_", " ").split()) <= words}
    return float(named == {gold})


def parse_pairs(answer: Any) -> set[tuple[str, str]]:
    """Unordered pairs ``(a, b)`` written as ``(U1, U2)`` or ``U1, U2`` in the answer."""
    if isinstance(answer, list | set | tuple):
        answer = " ".join(f"({a}, {b})" for a, b in answer)
    found = {tuple(sorted((a.upper(), b.upper()))) for a, b in _PAIR.findall(str(answer))}
    return {(a, b) for a, b in found if a != b}


def score_pairs(answer: Any, gold: Iterable[tuple[str, str]]) -> float:
    """F1 between the answer's pairs and the gold pairs (1.0 when both are empty)."""
    want = {tuple(sorted((a.upper(), b.upper()))) for a, b in gold}
    got = parse_pairs(answer)
    if not want and not got:
        return 1.0
    hits = len(want & got)
    if hits == 0:
        return 0.0
    precision, recall = hits / len(got), hits / len(want)
    return 2 * precision * recall / (precision + recall)


def score(metric: str, answer: Any, gold: Any, labels: Iterable[str] = ()) -> float:
    """Dispatch on the instance's metric name."""
    if metric == "number":
        return score_number(answer, int(gold))
    if metric == "exact":
        return score_exact(answer, str(gold))
    if metric == "contains":
        return score_contains(answer, str(gold))
    if metric == "label":
        return score_label(answer, str(gold), labels)
    if metric == "pairs":
        return score_pairs(answer, [tuple(p) for p in gold])
    raise ValueError(f"unknown metric {metric!r}")
