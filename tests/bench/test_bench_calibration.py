"""``bench/bench_calibration.py``: the calibrated choice, and label scoring on the local model."""

from __future__ import annotations

import pytest

from bench.bench_calibration import _best, summary


def test_calibration_subtracts_the_content_free_prior_before_choosing():
    scores = {"yes_no": -1.0, "number": -2.0, "name": -4.0}
    assert _best(scores) == "yes_no"
    # the prior favours yes_no more than this item does: the item's own evidence is for number
    assert _best(scores, {"yes_no": -0.5, "number": -3.0, "name": -4.0}) == "number"


def test_summary_counts_recall_per_gold_label_and_every_label_given():
    row = summary("m", ["name", "name", None, "number"], ["name", "number", "number", "number"])
    assert row["accuracy"] == 0.5
    assert row["recall"] == {"yes_no": 0.0, "number": 0.33, "name": 1.0}
    assert row["given"] == {"name": 2, "None": 1, "number": 1}


@pytest.mark.local_model
def test_label_scores_read_the_prompt_and_survive_prefix_reuse():
    from bench.bench_calibration import LabelScorer
    from rlm_dsl.runtime.lm.models import ensure_local_model

    scorer = LabelScorer(ensure_local_model())

    def ask(question: str) -> str:
        return scorer.prompt([{"role": "user", "content": question}], "")

    france = ask("What is the capital of France? Answer with one word.")
    germany = ask("What is the capital of Germany? Answer with one word.")
    cities = ("Paris", "Berlin")
    first = scorer.scores(france, cities)
    assert first["Paris"] > first["Berlin"]
    # the second prompt shares the first one's prefix in the KV cache; its labels' scores must
    # come from its own text, and going back must give the first scores again (to ~0.02 nats:
    # llama.cpp is not bit-exact across batch splits; a stale cache would be off by whole nats)
    second = scorer.scores(germany, cities)
    assert second["Berlin"] > second["Paris"]
    again = scorer.scores(france, cities)
    assert again == pytest.approx(first, abs=0.1)
