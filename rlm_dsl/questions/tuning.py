"""Tuning ``rlm ask``'s planner on (question, inputs, gold answer) examples.

Planner stage, on top of ``rlm optimize``'s machinery (:mod:`rlm_dsl.runtime.optimize`). A
trainset line is ``{"question": "…", "paths": ["file", …] (or one string; relative to the
trainset's folder), "answer": gold}``. :class:`AskProgram` is the program the optimizer trains:
its predictors are the :class:`~rlm_dsl.questions.planner.Planner`'s (``choose``, ``write``,
``repair``), and its ``forward`` plans and runs the question like :func:`rlm_dsl.ask` (each
example in a scratch store, every call on the optimization's one
:class:`~rlm_dsl.runtime.optimize.optimizer.Spend`) and returns the answer. :func:`tune_planner`
scores the devset (else the trainset), runs DSPy's random search over bootstrapped demo sets
(zero demos among the candidates, chosen on a validation split) and scores again.
:func:`save_planner` writes the planner's state and how it was made; ``rlm ask`` loads that file
(:func:`load_planner`) from :func:`default_path` unless told ``--no-opt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dspy
import platformdirs

from rlm_dsl.errors import BudgetExhausted, InputError
from rlm_dsl.questions.ask import ask
from rlm_dsl.questions.planner import Planner
from rlm_dsl.runtime.optimize.metrics import Metric
from rlm_dsl.runtime.optimize.optimizer import Spend, evaluate, refuse_pinned_lm, validation_split

FORMAT = "rlm-dsl.planner/1"


def default_path() -> Path:
    """Where ``rlm optimize --planner`` saves and ``rlm ask`` looks: the user config folder."""
    return platformdirs.user_config_path("rlm-dsl") / "planner.opt.json"


def load_examples(path: str | Path) -> list[dspy.Example]:
    """The examples of a JSONL trainset; a bad line is an :class:`InputError` naming it."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the trainset: {error}") from None
    examples = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            examples.append(_example(f"{path}:{number}", line, path.parent))
    if not examples:
        raise InputError(f"{path}: the trainset has no examples")
    return examples


def _example(where: str, line: str, base: Path) -> dspy.Example:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not JSON: {error.msg}") from None
    if not isinstance(record, dict) or not isinstance(record.get("question"), str) \
            or "answer" not in record:
        raise InputError(f'{where}: expected {{"question": "…", "paths": [...], "answer": …}}')
    paths = record.get("paths")
    paths = [paths] if isinstance(paths, str) else paths
    if not paths or not all(isinstance(p, str) for p in paths):
        raise InputError(f"{where}: 'paths' must be a file (or a list of files) to ask about")
    resolved = [str(base / p) if not Path(p).is_absolute() else p for p in paths]
    return dspy.Example(question=record["question"], paths=resolved,
                        answer=record["answer"]).with_inputs("question", "paths")


class AskProgram(dspy.Module):
    """The planner as the program an optimizer trains (module docstring)."""

    def __init__(self, lm: str | None, spend: Spend, concurrency: int = 8) -> None:
        super().__init__()
        self.planner = Planner()
        self.lm, self.spend, self.concurrency = lm, spend, concurrency

    def forward(self, question: str, paths: list[str]) -> dspy.Prediction:
        calls, usd = self.spend.left()
        try:
            result = ask(question, paths, lm=self.lm, max_calls=calls, max_usd=usd,
                         concurrency=self.concurrency, planner=self.planner)
        except BudgetExhausted:
            self.spend.add(calls or 0, None)
            self.spend.stop(self.spend.reason())
            raise
        summary = result.summary
        self.spend.add(summary["calls"] + summary["planner_calls"], summary["cost_usd"])
        return dspy.Prediction(answer=result.answer)


@dataclass
class Tuned:
    """What :func:`tune_planner` produced: the tuned planner and the scores (percent)."""

    planner: Planner
    before: float
    after: float
    scored_on: str
    calls: int

    @property
    def improved(self) -> bool:
        return self.after > self.before


def tune_planner(train: list[dspy.Example], dev: list[dspy.Example] | None, metric: Metric,
                 lm: str | None, spend: Spend, demos: int = 4, trials: int = 4) -> Tuned:
    """Score, tune the planner by bootstrap random search, score again (module docstring)."""
    student = AskProgram(lm, spend)
    scored = dev or train
    before = evaluate(student, scored, metric)
    fit, val = validation_split(train)
    search = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric, max_bootstrapped_demos=demos, max_labeled_demos=0, max_rounds=1,
        num_candidate_programs=trials, num_threads=1, max_errors=len(train))
    tuned = search.compile(student, trainset=fit, valset=val)
    after = evaluate(tuned, scored, metric)
    return Tuned(tuned.planner, before, after, "devset" if dev else "trainset", spend.calls)


def save_planner(tuned: Tuned, target: str | Path, meta: dict[str, Any]) -> Path:
    """Write the tuned planner's state and how it was made to ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": FORMAT, "created_at": datetime.now(UTC).isoformat(), **meta,
                "scores": {"before": round(tuned.before, 2), "after": round(tuned.after, 2),
                           "on": tuned.scored_on},
                "calls": tuned.calls, "planner": tuned.planner.dump_state()}
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n",
                      encoding="utf-8")
    return target


def load_planner(path: str | Path | None = None) -> tuple[Planner, str] | None:
    """The tuned planner saved at ``path`` (default: :func:`default_path`) and the line that
    says so; None when there is no such file."""
    path = Path(path) if path is not None else default_path()
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT!r}")
        for name, state in document["planner"].items():
            refuse_pinned_lm(state, name, path)
        planner = Planner()
        planner.load_state(document["planner"])
    except InputError:
        raise
    except Exception as error:  # any unreadable file: say which and how to go on
        raise InputError(f"{path}: cannot load the tuned planner ({error}); re-run "
                         "rlm optimize --planner, or pass --no-opt") from None
    scores = document.get("scores") or {}
    return planner, (f"planner: tuned program from {path} ({scores.get('before', '?')}% → "
                     f"{scores.get('after', '?')}% on the {scores.get('on', 'devset')}); "
                     "--no-opt to skip")
