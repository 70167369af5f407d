"""The ``ask`` method of the quality bench (bench/quality/methods.py) over the quick grid's
tasks with the test LM, on small stand-in data: every task runs through ``rlm_dsl.ask`` without
an error, and where the test LM can answer (needle, documents, log counts: no labelling) the
answer scores 1."""

from __future__ import annotations

import pytest

from bench.quality import data
from bench.quality.suite import run_suite

QUESTIONS = [
    {"question": f"Which river flows through town {i}?", "answer": f"River {i}",
     "context": [[f"Town {i} {j}", [f"Town {i} {j} lies on River {i}."]] for j in range(10)]}
    for i in range(60)
]


@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> None:
    essay = "".join(f"Essay line {i} about startups and painting.\n" for i in range(2_000))
    monkeypatch.setattr(data, "essays", lambda: essay)
    monkeypatch.setattr(data, "hotpotqa", lambda: QUESTIONS)


def test_ask_runs_the_quick_grid_with_the_test_lm(fake_data: None, monkeypatch,
                                                  tmp_path) -> None:
    from bench.quality import methods, suite

    for module in (suite, methods):  # not the user's bench cache, which a bench run may use
        monkeypatch.setattr(module, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(suite, "QUICK", {"niah": [2_000], "oolong": [12], "pairs": [12],
                                         "docqa": [10], "logs": [100]})
    rows = run_suite(list(suite.QUICK), True, "test", 1, 0, methods=["ask"], say=lambda _: None)
    assert [r["error"] for r in rows] == [None] * 5
    scores = {r["task"]: r["score"] for r in rows}
    assert scores["niah"] == scores["docqa"] == scores["logs"] == 1.0
    strategies = {r["task"]: r["strategy"] for r in rows}
    assert strategies == {"niah": "lookup", "oolong": "count", "pairs": "pairs",
                          "docqa": "lookup", "logs": "count"}
