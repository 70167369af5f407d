"""One tiny real-model run of ``rlm ask`` with the embedded local model: a planted fact in a
small file is found, answered and cited (the planner's LM call included)."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlm_dsl
from questions.inputs import write_essay


@pytest.mark.local_model
def test_local_model_finds_the_planted_fact(tmp_path: Path) -> None:
    essay = write_essay(tmp_path / "essay.txt", "The vault code for project kestrel-onyx is 4417.",
                        lines=200)
    result = rlm_dsl.ask("What is the vault code for project kestrel-onyx?", [str(essay)],
                         lm="local")
    assert result.strategy == "lookup"
    assert "4417" in str(result.answer)
    assert result.evidence[0]["line"] == 101
