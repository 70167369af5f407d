"""Scoring functions of the quality bench (bench/quality/scoring.py)."""

from __future__ import annotations

import pytest

from bench.quality import scoring


def test_normalize_drops_case_punctuation_and_articles() -> None:
    assert scoring.normalize("The  Eiffel Tower!") == "eiffel tower"


@pytest.mark.parametrize(("text", "value"), [
    ("There are 1,204 of them.", 1204), ("-3 left", -3), ("answer: 7 (not 8)", 7),
    ("none", None),
])
def test_first_int(text: str, value: int | None) -> None:
    assert scoring.first_int(text) == value


def test_number_score_is_three_quarters_to_the_error() -> None:
    assert scoring.score_number("12", 12) == 1.0
    assert scoring.score_number("I count 10 labels", 12) == pytest.approx(0.5625)
    assert scoring.score_number(15, 12) == pytest.approx(0.75 ** 3)
    assert scoring.score_number("many", 12) == 0.0


def test_exact_and_contains() -> None:
    assert scoring.score_exact("the Indianapolis.", "Indianapolis") == 1.0
    assert scoring.score_exact("Indianapolis, Indiana", "Indianapolis") == 0.0
    assert scoring.score_contains("It is in Indianapolis, Indiana.", "Indianapolis, Indiana") == 1
    assert scoring.score_contains("Indianapolis", "Indianapolis, Indiana") == 0.0
    assert scoring.score_contains("1234567", "123456") == 0.0   # whole words only
    assert scoring.score_contains("anything", "") == 0.0


def test_label_must_be_the_only_label_named() -> None:
    labels = ("yes_no", "number", "name")
    assert scoring.score_label("The most frequent is name.", "name", labels) == 1.0
    assert scoring.score_label("yes_no", "yes_no", labels) == 1.0
    assert scoring.score_label("name or number", "name", labels) == 0.0
    assert scoring.score_label("number", "name", labels) == 0.0


def test_parse_pairs_is_unordered_and_drops_self_pairs() -> None:
    text = "(U2, U1), (u3,U4) and U5, U5; also (U1, U2)"
    assert scoring.parse_pairs(text) == {("U1", "U2"), ("U3", "U4")}
    assert scoring.parse_pairs([("U9", "U8")]) == {("U8", "U9")}


def test_pairs_f1() -> None:
    gold = [("U1", "U2"), ("U1", "U3"), ("U2", "U3")]
    assert scoring.score_pairs("(U1, U2), (U3, U1), (U2, U3)", gold) == 1.0
    # 2 right of 3 given, 2 of 3 gold found: P = R = 2/3
    assert scoring.score_pairs("(U1, U2), (U1, U3), (U4, U5)", gold) == pytest.approx(2 / 3)
    assert scoring.score_pairs("none", gold) == 0.0
    assert scoring.score_pairs("none", []) == 1.0
    assert scoring.score_pairs("(U1, U2)", []) == 0.0


def test_score_dispatch_and_unknown_metric() -> None:
    assert scoring.score("number", "4", 4) == 1.0
    assert scoring.score("pairs", "(U1, U2)", [["U2", "U1"]]) == 1.0
    with pytest.raises(ValueError, match="unknown metric 'fuzzy'"):
        scoring.score("fuzzy", "a", "a")
