"""``rlm plan --estimate`` against the run it forecasts, where the old model was far off: a map
over a ``use``d recipe whose rows repeat prompts (the run's cache answers them: the estimate was
47 % high) and the free-form ``rlm`` step (it said "1 (1-39)"). The truth is the run's summary:
calls actually sent and their tokens, cache hits excluded."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlm_dsl
from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.estimator import estimate_plan
from tests.runtime.test_recipe_map import COUNTER

RECIPES = Path(__file__).parents[2] / "recipes"
MAIN = '''recipe main "Per file."
input docs: files
use "counter.rlm" as counter
map docs -> counts: int using recipe counter with params={word: "ugly"}
output counts
'''


def _use_plan(tmp_path: Path, contents: list[str]) -> tuple[Path, dict[str, str]]:
    (tmp_path / "counter.rlm").write_text(COUNTER.replace("\n    ", "\n").lstrip())
    (tmp_path / "main.rlm").write_text(MAIN)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, text in enumerate(contents):
        (docs / f"f{i:02}.txt").write_text(text)
    return tmp_path / "main.rlm", {"docs": str(docs)}


def _versus(path: Path, inputs: dict[str, str], db: Path, lm: str = "test"
            ) -> tuple[tuple[int, int], tuple[int, int]]:
    plan = compile_file(path)
    estimate = estimate_plan(plan, inputs, {}, lm, lm_all=True)
    summary = rlm_dsl.load(path).run(inputs=inputs or None, lm=lm, lm_all=True, db=db).summary
    return ((sum(s.calls for s in estimate.steps), sum(s.tokens for s in estimate.steps)),
            (summary["calls"], summary["tokens"]))


def test_a_use_plan_whose_rows_repeat_prompts_is_estimated_within_fifteen_percent(tmp_path):
    # 12 files, 4 distinct texts: the run sends each distinct chunk and reduce prompt once
    # (no chunk repeats inside one file: the chunks of one row are asked at the same time)
    texts = ["\n".join([f"ugly {j}" for j in range(k + 1)] + [f"fine {k} {j}" for j in
                                                                range(k + 2)])
             for k in range(4)]
    path, inputs = _use_plan(tmp_path, [texts[i % 4] for i in range(12)])
    (calls, tokens), (actual_calls, actual_tokens) = _versus(path, inputs, tmp_path / "r.duckdb")
    assert actual_calls == 14 + 4  # distinct chunks (2+3+4+5) and reduces, each asked once
    assert calls == pytest.approx(actual_calls, rel=0.15)
    assert tokens == pytest.approx(actual_tokens, rel=0.15)


@pytest.mark.parametrize("recipe", ["ticket_digest", "summarize"])
def test_shipped_use_plans_are_estimated_within_fifteen_percent(recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(RECIPES.parent)
    (calls, tokens), (actual_calls, actual_tokens) = _versus(
        RECIPES / f"{recipe}.rlm", {}, tmp_path / "r.duckdb")
    assert calls == pytest.approx(actual_calls, rel=0.15)
    assert tokens == pytest.approx(actual_tokens, rel=0.15)


@pytest.mark.parametrize(("name", "most"), [("explain_spike", 8 + 1 + 16),
                                            ("handbook_qa", 12 + 1 + 40)])
def test_an_rlm_step_is_a_typical_trajectory_with_its_basis_inside_its_budget_range(
        name, most, tmp_path, monkeypatch):
    monkeypatch.chdir(RECIPES.parent)
    recipe = RECIPES / f"{name}.rlm"
    estimate = estimate_plan(compile_file(recipe), {}, {}, "test", lm_all=True)
    step = next(s for s in estimate.steps if s.kind == "rlm")
    assert (step.calls_min, step.calls, step.calls_max) == (1, 2, most)
    assert "1 turn(s), 1 sub-call(s): the test LM's REPL action" in step.note
    _, (calls, actual_tokens) = _versus(recipe, {}, tmp_path / "r.duckdb")
    assert calls == step.calls
    assert step.tokens == pytest.approx(actual_tokens, rel=0.15)
    assert step.tokens_min <= actual_tokens <= step.tokens_max


@pytest.mark.parametrize(("lm", "calls", "basis"), [
    ("local:model.gguf", 8 + 1 + 4, "measured for the local 0.5B model"),
    ("openai/example-model", 6 + 6, "assumed for an API model"),
])
def test_an_rlm_step_for_a_real_model_says_what_its_figure_rests_on(lm, calls, basis,
                                                                    monkeypatch):
    monkeypatch.chdir(RECIPES.parent)
    estimate = estimate_plan(compile_file(RECIPES / "explain_spike.rlm"), {}, {}, lm,
                             lm_all=True)
    step = next(s for s in estimate.steps if s.kind == "rlm")
    assert step.calls == calls and step.calls_min == 1 and step.calls_max == 25
    assert basis in step.note
    assert step.tokens_min < step.tokens < step.tokens_max
