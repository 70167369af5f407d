"""The strategy library (rlm_dsl/questions/strategies): every template renders to a spec the
compiler accepts, and each strategy's spec and plan match the goldens in tests/golden/ask/."""

from __future__ import annotations

from pathlib import Path

import pytest

from questions.inputs import PROFILES
from rlm_dsl.compile import compile_text
from rlm_dsl.questions.strategies import STRATEGIES, Layout, Slots, render

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "ask"
QUESTION = "How many ERROR lines did com.acme.shop.OrderService log?"
# (profile, slots) per strategy: the shape each strategy is chosen for.
CASES = {
    "lookup": ("text", Slots(keywords=("special", "magic"), entities=("amber-delta",))),
    "extract_all": ("log", Slots(keywords=("refused",), shape="ip")),
    "count": ("jsonl", Slots(labels=("yes_no", "number", "name"), target="number",
                             group_column="user", group_value="U3")),
    "pairs": ("jsonl", Slots(labels=("yes_no", "number", "name"), target="name",
                             group_column="user")),
    "summarize": ("text", Slots()),
    "timeline": ("log", Slots()),
    "free_form": ("text", Slots()),
}
VARIANTS = {  # the other branch of the templates that have two
    "extract_all_items": ("extract_all", "text", Slots(keywords=("painter",))),
    "count_matches": ("count", "log", Slots(entities=("ERROR", "com.acme.shop.OrderService"))),
    "count_judged": ("count", "text", Slots(keywords=("refund",), judge=True)),
    "count_most": ("count", "jsonl", Slots(labels=("a", "b"), measure="most")),
    "timeline_untimed": ("timeline", "text", Slots()),
}


def test_every_strategy_has_a_case() -> None:
    assert set(CASES) == set(STRATEGIES)


@pytest.mark.parametrize("name", [*CASES, *VARIANTS])
def test_strategy_spec_and_plan_match_golden(name: str, golden) -> None:
    strategy, kind, slots = VARIANTS.get(name) or (name, *CASES[name])
    spec = render(strategy, QUESTION, PROFILES[kind], slots, Layout())
    plan = compile_text(spec, f"{name}.rlm")
    golden(GOLDEN / f"{name}.rlm", spec)
    golden(GOLDEN / f"{name}.txt", plan.dumps())


def test_pairs_without_labels_pairs_the_yes_records() -> None:
    spec = render("pairs", QUESTION, PROFILES["jsonl"], Slots(group_column="user"), Layout())
    assert "type Label = yes | no" in spec
    assert "= 'yes'" in spec
    compile_text(spec)


def test_unknown_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'guess'"):
        render("guess", QUESTION, PROFILES["text"], Slots(), Layout())
