"""``rlm plan --estimate`` against real runs of the executor under the deterministic test LM.

Every declarative recipe is estimated and then run (``.run(lm="test", lm_all=True)``); the
run's ``lm_calls`` are the truth. Steps the estimate can know are within ±10% on calls and
tokens; steps it gives as a range (after an LM filter, ``rlm`` steps) contain the actual value.
The ``typed_test_lm`` fixture (conftest) keeps enum and record answers parseable so no run has
retries. Fan-out and split recursion are also checked against hand-computed counts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

import rlm_dsl
from rlm_dsl.cli.main import main
from rlm_dsl.compile import compile_file
from rlm_dsl.errors import InputError
from rlm_dsl.runtime.estimate.report import Estimate
from rlm_dsl.runtime.estimator import estimate_plan

RECIPES = Path(__file__).parents[2] / "recipes"
DECLARATIVE = ("label_counting", "summarize", "meeting_minutes", "long_summary",
               "needle_search", "error_timeline", "incident_report", "ticket_digest")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recipes' default input paths are relative to the repository root."""
    monkeypatch.chdir(RECIPES.parent)


def _actual(db: Path) -> dict[str, tuple[int, int]]:
    """Calls and tokens per step, from the run's ``lm_calls``."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT step, count(*), sum(prompt_tokens + completion_tokens) "
                           "FROM lm_calls GROUP BY 1").fetchall()
    return {step: (calls, tokens) for step, calls, tokens in rows}


def _run(recipe: Path, db: Path, lm: str = "test", **inputs: str) -> dict[str, Any]:
    result = rlm_dsl.load(recipe).run(inputs=inputs or None, lm=lm, lm_all=True, db=db)
    assert result.summary["failures"] == 0
    return result.summary


def _split(estimate: Estimate, actual: dict[str, tuple[int, int]]) -> tuple[list, list]:
    """(known steps' estimate vs actual, ranged steps) — sub-recipe calls fold into their map."""
    steps = {s.step: s for s in estimate.steps}
    ranged = [s for s in estimate.steps
              if s.calls_min < s.calls or s.kind == "rlm" or "grounded" in s.note]
    known = [(s.calls, s.tokens) for s in estimate.steps if s not in ranged]
    for s in ranged:
        calls, tokens = actual.pop(s.step, (0, 0))
        assert s.calls_min <= calls <= s.calls_max, s.step
        assert s.tokens_min <= tokens <= s.tokens_max, s.step
    unknown = set(actual) - set(steps)
    assert not unknown or any(s.note.startswith("recipe ") for s in estimate.steps), unknown
    return known, ranged


@pytest.mark.parametrize("name", DECLARATIVE)
def test_estimate_within_ten_percent_of_a_real_run(name, typed_test_lm, tmp_path) -> None:
    recipe = RECIPES / f"{name}.rlm"
    estimate = estimate_plan(compile_file(recipe), {}, {}, "test", lm_all=True)
    _run(recipe, tmp_path / "run.duckdb")
    actual = _actual(tmp_path / "run.duckdb")
    made = sum(c for c, _ in actual.values())  # every step's calls, ranged ones included
    known, ranged = _split(estimate, actual)
    est_calls = sum(c for c, _ in known)
    est_tokens = sum(t for _, t in known)
    calls = sum(c for c, _ in actual.values())
    tokens = sum(t for _, t in actual.values())
    assert est_calls == pytest.approx(calls, rel=0.10)
    assert est_tokens == pytest.approx(tokens, rel=0.10)
    assert made > 0
    # an LM filter and grounded re-asks make ranges
    assert bool(ranged) == (name in ("needle_search", "incident_report"))


FANOUT = '''recipe fanout "Numbers read one line at a time, summed by a tree reduce."
lm fast = "test"
input doc: lines
chunk doc -> parts by lines(1)
map parts -> n: int using fast """
  SUM
  {{ chunk.text }}
"""
reduce n -> total: int by tree(fanin=4) using fast """
  SUM
  {% for i in items %}{{ i }}
  {% endfor %}
"""
output total
'''


def test_tree_fanout_level_by_level(typed_test_lm, tmp_path) -> None:
    spec = tmp_path / "fanout.rlm"
    spec.write_text(FANOUT)
    data = tmp_path / "doc.txt"
    data.write_text("".join(f"value {i}\n" for i in range(37)))  # distinct: no cache hits
    estimate = estimate_plan(compile_file(spec), {"doc": str(data)}, {}, None)
    by_step = {s.step: s for s in estimate.steps}
    assert by_step["map-n"].calls == 37
    # 37 items, fan-in 4: 10 batches, then 3, then 1 -> 14 calls
    assert by_step["reduce-total"].calls == 14
    assert by_step["reduce-total"].note == "tree: tree of 3 (10 → 3 → 1 calls) level(s)"
    result = rlm_dsl.load(spec).run(inputs={"doc": str(data)}, lm="test",
                                    db=tmp_path / "run.duckdb")
    assert result.outputs["total"] == sum(range(37))
    assert (result.summary["calls"], result.summary["cache_hits"]) == (37 + 14, 0)
    actual = _actual(tmp_path / "run.duckdb")
    assert actual["reduce-total"][0] == 14
    assert by_step["map-n"].tokens == pytest.approx(actual["map-n"][1], rel=0.10)
    line = estimate.versus(result.summary)
    assert line.startswith("estimate vs actual: calls 51 estimated, 51 actual (+0%) · tokens ")


def test_split_recursion_counts_the_pieces(typed_test_lm, tmp_path) -> None:
    recipe = RECIPES / "summarize.rlm"
    lm = "test:window=700"
    estimate = estimate_plan(compile_file(recipe), {}, {}, lm, lm_all=True)
    step = next(s for s in estimate.steps if s.step == "map-notes")
    assert step.note == "one call per row, +2 for splits"
    _run(recipe, tmp_path / "run.duckdb", lm=lm)
    calls, tokens = _actual(tmp_path / "run.duckdb")["map-notes"]
    assert (step.calls, step.rows) == (calls, 3)
    assert step.tokens == pytest.approx(tokens, rel=0.10)


def test_rlm_step_is_a_range_containing_the_run(typed_test_lm, tmp_path) -> None:
    recipe = RECIPES / "handbook_qa.rlm"
    estimate = estimate_plan(compile_file(recipe), {}, {}, "test", lm_all=True)
    step = next(s for s in estimate.steps if s.kind == "rlm")
    assert (step.calls_min, step.calls_max) == (1, 12 + 1 + 40)
    rlm_dsl.load(recipe).run(lm="test", lm_all=True, db=tmp_path / "run.duckdb")
    calls, tokens = _actual(tmp_path / "run.duckdb")["rlm-answer"]
    assert step.calls_min <= calls <= step.calls_max
    assert step.tokens_min <= tokens <= step.tokens_max


def test_cli_estimate_text_and_json(tmp_path, capsys) -> None:
    recipe = str(RECIPES / "label_counting.rlm")
    assert main(["plan", recipe, "--estimate", "--lm-all", "test"]) == 0
    text = capsys.readouterr().out
    assert "estimate: label_counting" in text and "map-label: one call per row" in text
    assert main(["plan", recipe, "--estimate", "--lm-all", "test", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = sum(1 for line in (RECIPES / "data/questions.jsonl").read_text().splitlines() if line)
    assert data["estimate"]["total"]["calls"] == rows
    assert data["estimate"]["total"]["cost_usd"] is None  # the test LM has no price


def test_estimate_input_errors(tmp_path, capsys) -> None:
    recipe = str(RECIPES / "summarize.rlm")
    missing = tmp_path / "nope.txt"
    assert main(["plan", recipe, "--estimate", "--lm", "test", "--input", f"doc={missing}"]) == 2
    assert str(missing) in capsys.readouterr().err
    with pytest.raises(InputError, match="declares no input 'docs'"):
        estimate_plan(compile_file(recipe), {"docs": "x"}, {}, "test")


def test_estimate_says_when_a_step_budget_stops_the_run(tmp_path) -> None:
    items = tmp_path / "items.txt"
    items.write_text("".join(f"item {i}\n" for i in range(30)))
    spec = tmp_path / "capped.rlm"
    spec.write_text('recipe capped "Count."\ninput items: lines\n'
                    'map items -> n: int with max_calls=5, max_total_tokens=100000 """\n'
                    '  COUNT "1"\n  {{ chunk.text }}\n"""\noutput n\n')
    estimate = estimate_plan(compile_file(spec), {"items": str(items)}, {}, "test")
    step = next(s for s in estimate.steps if s.step == "map-n")
    assert step.note == ("one call per row; its max_calls=5 stops the run (exit 3) before the 30 "
                         "calls estimated")
    assert step.tokens < 100000  # the token cap is not reached: no note for it


def test_the_forecast_reads_inputs_in_the_chosen_encoding(typed_test_lm, tmp_path) -> None:
    spec = tmp_path / "fanout.rlm"
    spec.write_text(FANOUT)
    data = tmp_path / "doc.txt"
    data.write_bytes("".join(f"caf\u00e9 {i}\n" for i in range(5)).encode("latin-1"))
    estimate = estimate_plan(compile_file(spec), {"doc": str(data)}, {}, None, encoding="latin-1")
    assert {s.step: s for s in estimate.steps}["map-n"].calls == 5
