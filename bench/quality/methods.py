"""The three ways the quality bench answers one instance, with the same model each time.

Bench runner stage. ``vanilla``: the whole input in one call, cut to the model's window (the
``bench/recipes/vanilla.rlm.tmpl`` recipe with the window filled in). ``recipe``: the
instance's recipe (a shipped one from ``recipes/`` or one from ``bench/recipes/``), its outputs
turned into an answer by :func:`recipe_answer`. ``rlm``: the free-form ``rlm`` step
(``bench/recipes/free_rlm.rlm.tmpl`` with the iteration and sub-call budgets filled in). ``ask``:
:func:`rlm_dsl.ask` on the question and the recipe's own input files, no hand-written spec (its
planner's calls are counted in). Every other run goes through :func:`rlm_dsl.load`; each records
score, calls, tokens and wall time from the run summary (and ``cites``: each output's
``source:line`` evidence); a run that fails records its error and
scores 0.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rlm_dsl
from bench.quality import scoring
from bench.quality.data import cache_dir
from bench.quality.instance import Instance
from bench.quality.tasks import LABELS, gold_pairs
from rlm_dsl.errors import RowsFailed
from rlm_dsl.runtime.lm.resolve import resolve_lm
from rlm_dsl.runtime.steps.evidence import citation

METHODS = ("vanilla", "recipe", "rlm", "ask")
REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "bench" / "recipes"


@dataclass
class Budget:
    """Per-run limits: the rlm step's iterations, sub-calls and tokens per generated action,
    and the run's call cap."""

    iterations: int = 12
    llm_calls: int = 40
    max_calls: int = 2_000
    action_tokens: int = 1_024


def model_window(lm: str) -> int:
    """The context window of ``lm`` in tokens (loads the local model once per process)."""
    return resolve_lm(lm).context_window


def fill(template: str, values: Mapping[str, Any]) -> Path:
    """Write ``bench/recipes/<template>`` with ``__KEY__`` placeholders filled into the cache."""
    text = (RECIPES / template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace(f"__{key.upper()}__", str(value))
    name = "-".join(str(v) for v in values.values())
    path = cache_dir() / "recipes" / template.replace(".rlm.tmpl", f"-{name}.rlm")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _clip(answer: Any, limit: int = 1_000) -> Any:
    """The answer as recorded: long ones (thousands of pairs) cut to ``limit`` characters."""
    text = answer if isinstance(answer, str) else repr(answer)
    return answer if len(text) <= limit else text[:limit] + "…"


def _rows(value: Any) -> list[dict[str, Any]]:
    return [r for r in value or [] if isinstance(r, dict)]


def recipe_answer(extract: str, outputs: Mapping[str, Any]) -> Any:
    """Turn a recipe's outputs into the instance's answer (``Instance.extract`` says how)."""
    kind, _, arg = extract.partition(":")
    if kind == "answer":
        value = outputs.get("answer")
        return value[0] if isinstance(value, list) and value else value
    if kind == "errors":
        return sum(int(r["occurrences"]) for r in _rows(outputs.get("census"))
                   if r.get("level") == "ERROR" and r.get("component") == arg)
    counts = dict.fromkeys(LABELS, 0) | {r["label"]: int(r["n"])
                                         for r in _rows(outputs.get("counts"))}
    if kind == "count":
        return counts.get(arg, 0)
    if kind in ("most", "least"):
        ranked = sorted(LABELS, key=lambda lab: counts[lab])
        return ranked[-1] if kind == "most" else ranked[0]
    users = _rows(outputs.get("user_counts"))
    if kind == "user":
        user, _, label = arg.partition(":")
        return sum(int(r["n"]) for r in users if r["user"] == user and r["label"] == label)
    if kind == "pairs":
        return gold_pairs([{"user": r["user"], "label": r["label"]} for r in users], arg)
    raise ValueError(f"unknown extract {extract!r}")


def run_ask(inst: Instance, lm: str, db: Path, budget: Budget, started: float) -> dict:
    """The ``ask`` method's result fields: ``rlm_dsl.ask`` over the recipe's input files."""
    paths = [p for value in inst.inputs.values() for p in ([value] if isinstance(value, str)
                                                             else value)]
    try:
        result = rlm_dsl.ask(inst.question, paths, lm=lm, db=db, max_calls=budget.max_calls,
                             confirm=lambda reason: True)
    except Exception as error:  # a failed run is a data point: scored 0, error recorded
        return {"answer": None, "score": 0.0, "calls": None, "tokens_used": None,
                "wall_s": round(time.perf_counter() - started, 2),
                "error": f"{type(error).__name__}: {str(error)[:300]}"}
    summary = result.summary
    return {
        "answer": _clip(result.answer), "strategy": result.strategy,
        "planned_by": summary["planned_by"],
        "score": round(scoring.score(inst.metric, result.answer, inst.gold, inst.labels), 4),
        "calls": summary["calls"] + summary.get("planner_calls", 0),
        "tokens_used": summary["tokens"] + summary.get("planner_tokens", 0),
        "wall_s": round(time.perf_counter() - started, 2),
        "failures": summary["failures"], "error": None,
    }


def method_spec(
    method: str, inst: Instance, window: int, budget: Budget
) -> tuple[Path, dict, dict]:
    """(recipe path, inputs, params) for running ``inst`` with ``method``."""
    if method == "recipe":
        return REPO / inst.recipe, inst.inputs, inst.params
    ask = {"question": inst.question}
    if method == "vanilla":
        return fill("vanilla.rlm.tmpl", {"window": max(256, window * 3 // 4 - 300)}), \
            {"doc": inst.text_path}, ask
    return fill("free_rlm.rlm.tmpl", {"iterations": budget.iterations,
                                      "llm_calls": budget.llm_calls,
                                      "action_tokens": budget.action_tokens}), \
        {"doc": inst.text_path}, ask


def run_method(method: str, inst: Instance, lm: str, window: int, budget: Budget) -> dict:
    """Run one instance with one method; the result row for the results JSON."""
    recipe, inputs, params = method_spec(method, inst, window, budget)
    db = cache_dir() / "runs" / f"{inst.task}-{inst.size}-{method}.duckdb"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    row = {"task": inst.task, "size": inst.size, "tokens": inst.tokens, "method": method,
           "question": inst.question, "gold": inst.gold, "metric": inst.metric}
    started = time.perf_counter()
    if method == "ask":
        return row | run_ask(inst, lm, db, budget, started)
    try:
        result = rlm_dsl.load(recipe).run(inputs=inputs, params=params, lm=lm, lm_all=True,
                                          db=db, max_calls=budget.max_calls)
    except RowsFailed as partial:  # some rows failed: the outputs without them still score
        result = partial.result  # type: ignore[attr-defined]
    except Exception as error:  # a failed run is a data point: scored 0, error recorded
        return row | {"answer": None, "score": 0.0, "calls": None, "tokens_used": None,
                      "wall_s": round(time.perf_counter() - started, 2),
                      "error": f"{type(error).__name__}: {str(error)[:300]}"}
    extract = inst.extract if method == "recipe" else "answer"
    answer = recipe_answer(extract, result.outputs)
    return row | {
        "answer": _clip(answer), "score": round(scoring.score(inst.metric, answer, inst.gold,
                                                       inst.labels), 4),
        "calls": result.summary["calls"], "tokens_used": result.summary["tokens"],
        "wall_s": result.summary["wall_s"], "failures": result.summary["failures"], "error": None,
        "cites": {name: [citation(r) for r in rows] for name, rows in result.evidence.items()},
    }
