"""``rlm optimize FILE --trainset T``: tune a recipe's step prompts with a DSPy optimizer.

CLI stage over :mod:`rlm_dsl.runtime.optimize.optimizer`. Reads and checks the trainset (and
devset) —
a bad line is an :class:`~rlm_dsl.errors.InputError` naming ``file:line``, exit 2 — scores the
devset (the trainset when no devset is given), runs ``bootstrap`` (random search over
bootstrapped demo sets for every inner step, zero demos included, chosen on a validation split of
the trainset), ``mipro`` (MIPROv2: instructions and demos) or ``gepa`` (GEPA: reflective
instruction evolution), scores again, and — only when the tuned program beats the baseline, or
with ``--save-worse`` — writes ``<spec>.opt.json`` next to the spec (or ``--out``), which
``rlm run`` then uses unless given ``--no-opt``. ``--max-calls`` / ``--max-usd``
cap every LM call the optimization makes, the reflection LM's included (exit 3, nothing saved).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from rlm_dsl.api import RecipeModule, load
from rlm_dsl.cli.app import app, out
from rlm_dsl.errors import BudgetExhausted, SpecError
from rlm_dsl.runtime.lm.resolve import default_model_id
from rlm_dsl.runtime.optimize import optimizer as tuning
from rlm_dsl.runtime.optimize.metrics import resolve_metric
from rlm_dsl.runtime.optimize.optimizer import (
    OPTIMIZERS,
    Outcome,
    RunSettings,
    Spend,
    opt_path,
    reflection_lm,
    save_optimized,
)
from rlm_dsl.runtime.optimize.trainset import load_trainset


@app.command()
def optimize(
    trainset: Annotated[Path, typer.Option("--trainset", help="JSONL examples.")],
    file: Annotated[Path | None, typer.Argument(
        help="The spec (.rlm) to optimize (none with --planner).")] = None,
    devset: Annotated[Path | None, typer.Option("--devset", help="JSONL examples to score "
                                                "before/after (default: the trainset).")] = None,
    metric: Annotated[str, typer.Option("--metric", help="exact|contains|f1|numeric|"
                                        "python:module:function")] = "exact",
    optimizer: Annotated[str, typer.Option("--optimizer", help="bootstrap|mipro|gepa")
                         ] = "bootstrap",
    lm: Annotated[str | None, typer.Option("--lm", help="LM for every step.")] = None,
    reflection: Annotated[str | None, typer.Option(
        "--reflection-lm", help="LM proposing instructions (mipro, gepa); default: --lm.")] = None,
    max_calls: Annotated[int | None, typer.Option("--max-calls", min=1)] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", min=0)] = None,
    demos: Annotated[int, typer.Option("--demos", min=0, help="Most demos per step.")] = 4,
    trials: Annotated[int | None, typer.Option(
        "--trials", min=1, help="mipro: candidates and trials; gepa: full evaluations "
        "(default: DSPy's auto=light budget).")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 8,
    out_file: Annotated[Path | None, typer.Option("--out", help="Where to save "
                                                  "(default: <spec>.opt.json).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show DSPy's logs.")] = False,
    save_worse: Annotated[bool, typer.Option(
        "--save-worse", help="Save the tuned program even when it does not beat the baseline.")
                          ] = False,
    planner: Annotated[bool, typer.Option(
        "--planner", help="Tune rlm ask's planner instead of a spec: each trainset line is "
        '{"question", "paths", "answer"}.')] = False,
) -> None:
    """Tune a recipe's prompts from examples; saves <spec>.opt.json."""
    if optimizer not in OPTIMIZERS:
        raise SpecError(f"--optimizer {optimizer}: expected one of {', '.join(OPTIMIZERS)}")
    if planner:
        _optimize_planner(file, trainset, devset, metric, optimizer, lm,
                          Spend(max_calls, max_usd), demos, trials or 4, out_file, save_worse)
        return
    if file is None:
        raise SpecError("rlm optimize: name the spec to optimize (or pass --planner)")
    recipe = load(file)
    score = resolve_metric(metric, list(recipe.plan.outputs))
    with tempfile.TemporaryDirectory(prefix="rlm-opt-") as scratch:
        train = load_trainset(trainset, recipe.plan, Path(scratch) / "train")
        dev = load_trainset(devset, recipe.plan, Path(scratch) / "dev") if devset else None
        spend = Spend(max_calls, max_usd)
        proposer = None if optimizer == "bootstrap" else reflection_lm(
            reflection or lm or default_model_id(), spend)
        _say(f"optimizing {recipe.plan.recipe} ({file.name}) with {optimizer}, metric {metric}: "
             f"{len(train)} train, {len(dev) if dev else 'no'} dev examples, "
             f"{len(recipe.named_predictors())} step predictor(s)")
        with _dspy_logs(verbose):
            outcome = tuning.optimize(recipe, train, dev, score, optimizer,
                                      RunSettings(lm=lm, concurrency=concurrency), spend,
                                      proposer, {"demos": demos, "trials": trials})
    target = out_file or opt_path(file)
    meta = {"optimizer": optimizer, "metric": metric, "lm": lm,
            "reflection_lm": reflection or lm, "trainset": str(trainset),
            "devset": str(devset) if devset else None}
    _report(outcome)
    if not (outcome.improved or save_worse):
        kept = f"; {target.name} is left as it was" if target.exists() else ""
        _say(f"kept the baseline: the tuned program did not beat it on the {outcome.scored_on}, "
             f"nothing saved{kept} (--save-worse to save it anyway)")
        return
    save_optimized(outcome, file, target, meta)
    _say(f"saved {target}: {_describe(outcome.recipe)}")
    cost = f" · cost ${outcome.usd:.4f}" if outcome.usd else ""
    _say(f"LM calls: {outcome.calls}{cost}; rlm run uses the saved prompts (--no-opt to skip)")


def _optimize_planner(file: Path | None, trainset: Path, devset: Path | None, metric: str,
                      optimizer: str, lm: str | None, spend: Spend, demos: int, trials: int,
                      out_file: Path | None, save_worse: bool) -> None:
    """``--planner``: tune rlm ask's planner (:mod:`rlm_dsl.questions.tuning`)."""
    # the planner pulls in rlm ask's whole stack; only --planner needs it
    from rlm_dsl.questions import tuning

    if file is not None:
        raise SpecError("rlm optimize --planner tunes rlm ask's planner: give no spec")
    if optimizer != "bootstrap":
        raise SpecError("rlm optimize --planner: only --optimizer bootstrap is supported")
    train = tuning.load_examples(trainset)
    dev = tuning.load_examples(devset) if devset else None
    score = resolve_metric(metric, ["answer"])
    _say(f"optimizing rlm ask's planner with bootstrap, metric {metric}: {len(train)} train, "
         f"{len(dev) if dev else 'no'} dev examples")
    with _dspy_logs(False):
        try:
            tuned = tuning.tune_planner(train, dev, score, lm, spend, demos, trials)
        except BudgetExhausted:
            raise BudgetExhausted(f"budget exhausted during optimization after {spend.calls} "
                                  "LM calls; nothing was saved") from None
    _report(tuned)
    target = out_file or tuning.default_path()
    if not (tuned.improved or save_worse):
        _say(f"kept the baseline: the tuned planner did not beat it on the {tuned.scored_on}, "
             "nothing saved (--save-worse to save it anyway)")
        return
    tuning.save_planner(tuned, target, {"optimizer": optimizer, "metric": metric, "lm": lm,
                                        "trainset": str(trainset),
                                        "devset": str(devset) if devset else None})
    _say(f"saved {target}; rlm ask plans with it (--no-opt to skip)")


def _report(outcome: Outcome | Any) -> None:
    on = outcome.scored_on
    _say(f"{on} score before: {outcome.before:.1f}%")
    _say(f"{on} score after:  {outcome.after:.1f}% ({outcome.after - outcome.before:+.1f})")


def _describe(recipe: RecipeModule) -> str:
    parts = []
    for name, predictor in recipe.named_predictors():
        parts.append(f"{name} ({len(predictor.demos)} demos)")
    return ", ".join(parts) or "no step predictors"


def _say(line: str) -> None:
    out.print(line, markup=False, highlight=False)


@contextmanager
def _dspy_logs(verbose: bool) -> Iterator[None]:
    """DSPy and its optimizers log every trial at INFO; show that only with ``--verbose``."""
    loggers = [logging.getLogger(n) for n in ("dspy", "gepa", "optuna")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
