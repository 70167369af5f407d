"""Every recipe in recipes/ compiles, and its plan dump matches tests/golden/plans/<name>.txt."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rlm_dsl.compile import compile_file

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.rlm"))
PLANS = ROOT / "tests" / "golden" / "plans"


def test_there_are_recipes() -> None:
    assert len(RECIPES) >= 6


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_plan_matches_golden(recipe: Path, golden, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # plans record the path as given; keep it repo-relative
    plan = compile_file(recipe.relative_to(ROOT))
    golden(PLANS / f"{recipe.stem}.txt", plan.dumps())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipe_renders_in_every_format(recipe: Path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    plan = compile_file(recipe.relative_to(ROOT))
    data = json.loads(json.dumps(plan.to_json()))
    assert [n["id"] for n in data["graph"]["nodes"]] == [s.id for s in plan.steps()]
    edges = sorted(plan.graph.edges)
    dot_edges = re.findall(r'^  "([^"]+)" -> "([^"]+)";$', plan.to_dot(), re.M)
    assert sorted(dot_edges) == edges
    mermaid = re.findall(r"^  (\S+) --> (\S+)$", plan.to_mermaid(), re.M)
    assert sorted(mermaid) == [(a.replace("-", "_"), b.replace("-", "_")) for a, b in edges]


def test_recipes_use_every_construct(monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    plans = [compile_file(r.relative_to(ROOT)) for r in RECIPES]
    steps = [s for p in plans for s in p.steps()]
    used = {(s.kind, s.strategy) for s in steps}
    for kind, strategy in [("filter", "sql"), ("filter", "regex"), ("filter", "lm"),
                           ("reduce", "concat"), ("reduce", "tree"), ("reduce", "fold"),
                           ("reduce", "sql"), ("reduce", "vote"), ("rlm", "rlm")]:
        assert (kind, strategy) in used, (kind, strategy)
    assert any(s.recipe for s in steps), "no recipe maps a used recipe"
    assert any(s.options.get("reason") for s in steps), "no map turns reasoning on"
    assert any(p.params for p in plans) and any(p.lms for p in plans)
    assert any(p.uses for p in plans)
