"""Optimization: tune a recipe's step prompts with a DSPy optimizer and keep them next to the spec.

Optimization stage, on top of the executor and :class:`rlm_dsl.runtime.module.RecipeModule`. A
:class:`Trainee` runs the recipe for one trainset example with fixed run settings (LM, concurrency)
and a share of one optimization-wide :class:`Spend` (``--max-calls`` / ``--max-usd`` cover every
recipe run *and* the reflection LM). Every map / filter / reduce / rlm predictor is reachable by
step id (``map-incidents.predict``), and the executor copies the context into its worker threads,
so ``dspy.settings.trace`` sees each inner call: BootstrapFewShot gets demos for inner steps, GEPA
reflects on them, MIPROv2 proposes their instructions. :func:`optimize` scores the devset before
and after; ``bootstrap`` is DSPy's random search over demo sets (zero demos included) chosen on a
validation split of the trainset (:func:`validation_split`). :func:`save_optimized` writes
``<spec>.opt.json`` (the predictors' ``dump_state`` plus what made it) — the CLI only when the
tuned program beat the baseline, unless told to save a worse one — and :func:`load_optimized`
applies such a file to a freshly loaded recipe.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dspy
from dspy.lm15 import response_to_events

from rlm_dsl.errors import BudgetExhausted, InputError, SpecError
from rlm_dsl.runtime.lm.resolve import resolve_lm
from rlm_dsl.runtime.module import RecipeModule
from rlm_dsl.runtime.optimize.metrics import Metric

OPTIMIZERS = ("bootstrap", "mipro", "gepa")
FORMAT = "rlm-dsl.opt/1"


@dataclass
class Spend:
    """The optimization's budget: LM calls and dollars over every run and reflection call."""

    max_calls: int | None = None
    max_usd: float | None = None
    calls: int = 0
    usd: float = 0.0
    exhausted: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __deepcopy__(self, memo: dict[int, Any]) -> Spend:
        return self  # program copies made by the optimizers share one budget

    def left(self) -> tuple[int | None, float | None]:
        """Calls and dollars still allowed; raises :class:`BudgetExhausted` when none are."""
        with self._lock:
            calls = None if self.max_calls is None else self.max_calls - self.calls
            usd = None if self.max_usd is None else self.max_usd - self.usd
            if (calls is not None and calls <= 0) or (usd is not None and usd <= 0):
                self.exhausted = self.exhausted or self.reason()
                raise BudgetExhausted(self.exhausted)
            return calls, usd

    def add(self, calls: int, usd: float | None) -> None:
        with self._lock:
            self.calls += calls
            self.usd += usd or 0.0

    def stop(self, reason: str) -> None:
        with self._lock:
            self.exhausted = self.exhausted or reason

    def reason(self) -> str:
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"--max-calls {self.max_calls} reached"
        return f"--max-usd {self.max_usd} reached (${self.usd:.4f} spent)"


@dataclass(frozen=True)
class RunSettings:
    """How every example run goes: the LM for every step (None: the spec's bindings)."""

    lm: str | None = None
    concurrency: int = 8


class Trainee(dspy.Module):
    """The recipe as the program an optimizer trains: ``forward(**inputs_and_params)``."""

    def __init__(self, recipe: RecipeModule, settings: RunSettings, spend: Spend) -> None:
        super().__init__()
        self.recipe, self.settings, self.spend = recipe, settings, spend

    def forward(self, **values: Any) -> dspy.Prediction:
        names = {s.name for s in self.recipe.plan.steps() if s.kind == "input"}
        inputs = {k: v for k, v in values.items() if k in names}
        params = {k: v for k, v in values.items() if k not in names}
        calls, usd = self.spend.left()
        try:
            result = self.recipe.run(inputs, params, lm=self.settings.lm,
                                     concurrency=self.settings.concurrency, max_calls=calls,
                                     max_usd=usd)
        except BudgetExhausted:
            self.spend.add(calls or 0, None)  # this run used up what was left
            self.spend.stop(self.spend.reason())
            raise
        self.spend.add(result.summary["calls"], result.summary["cost_usd"])
        return dspy.Prediction(**result.outputs)


class _CountingEngine:
    """Wraps the reflection LM's engine so its calls draw on the optimization's :class:`Spend`."""

    def __init__(self, inner: Any, spend: Spend, price: tuple[float, float] | None) -> None:
        self.inner, self.spend, self.price = inner, spend, price

    def complete(self, request: Any) -> Any:
        self.spend.left()
        response = self.inner.complete(request)
        usage = response.usage
        cost = None
        if self.price is not None and usage is not None:
            cost = ((usage.input_tokens or 0) * self.price[0]
                    + (usage.output_tokens or 0) * self.price[1])
        self.spend.add(1, cost)
        return response

    def stream(self, request: Any) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def reflection_lm(model_id: str, spend: Spend) -> dspy.LM:
    """The LM that proposes instructions (GEPA reflection, MIPROv2 proposals), on the budget."""
    resolved = resolve_lm(model_id)
    return resolved.make_lm(engine=_CountingEngine(resolved.engine, spend, resolved.price))


@dataclass
class Outcome:
    """What :func:`optimize` produced: the tuned recipe and the scores (percent)."""

    recipe: RecipeModule
    before: float
    after: float
    scored_on: str
    calls: int
    usd: float

    @property
    def improved(self) -> bool:
        """Whether the tuned program scored higher than the baseline (a tie is no gain)."""
        return self.after > self.before


def evaluate(program: dspy.Module, examples: list[dspy.Example], metric: Metric) -> float:
    """The mean metric over ``examples`` in percent; examples run one after another."""
    scores = [float(metric(ex, program(**ex.inputs()))) for ex in examples]
    return 100.0 * sum(scores) / len(scores)


def optimize(recipe: RecipeModule, trainset: list[dspy.Example], devset: list[dspy.Example] | None,
             metric: Metric, optimizer: str, settings: RunSettings, spend: Spend,
             proposer: dspy.LM | None, knobs: dict[str, Any] | None = None) -> Outcome:
    """Score ``devset`` (else ``trainset``), optimize, score again; see the module docstring."""
    if optimizer not in OPTIMIZERS:
        raise SpecError(f"--optimizer {optimizer}: expected one of {', '.join(OPTIMIZERS)}")
    dev = devset or trainset
    student = Trainee(recipe, settings, spend)
    try:
        before = evaluate(student, dev, metric)
        with dspy.context(**({"lm": proposer} if proposer else {})):
            tuned = _compile(optimizer, student, trainset, dev, metric, proposer, knobs or {})
        after = evaluate(tuned, dev, metric)
    except BudgetExhausted:
        raise BudgetExhausted(_spent_message(spend)) from None
    except Exception:
        if spend.exhausted:
            raise BudgetExhausted(_spent_message(spend)) from None
        raise
    if spend.exhausted:
        raise BudgetExhausted(_spent_message(spend))
    return Outcome(tuned.recipe, before, after, "devset" if devset else "trainset",
                   spend.calls, spend.usd)


def _spent_message(spend: Spend) -> str:
    return (f"budget exhausted during optimization: {spend.exhausted or 'cap reached'} after "
            f"{spend.calls} LM calls; nothing was saved. Raise --max-calls / --max-usd or use "
            "a smaller trainset.")


def _compile(name: str, student: Trainee, train: list[dspy.Example], dev: list[dspy.Example],
             metric: Metric, proposer: dspy.LM | None, knobs: dict[str, Any]) -> Trainee:
    demos = int(knobs.get("demos", 4))
    trials = knobs.get("trials")
    if name == "bootstrap":
        # random search over bootstrapped demo sets and sizes, the zero-demo program among the
        # candidates, chosen on a validation split the demos do not come from
        fit, val = validation_split(train)
        opt = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, max_bootstrapped_demos=demos, max_labeled_demos=0, max_rounds=1,
            num_candidate_programs=int(trials or 4), num_threads=1, max_errors=len(train))
        return opt.compile(student, trainset=fit, valset=val)
    if name == "mipro":
        _require("optuna", "--optimizer mipro (DSPy's MIPROv2)")
        mipro = dspy.MIPROv2(
            metric=metric, prompt_model=proposer, task_model=proposer,
            auto=None if trials else knobs.get("auto", "light"), num_candidates=trials,
            max_bootstrapped_demos=demos, max_labeled_demos=0, num_threads=1, verbose=False,
            track_stats=False, seed=int(knobs.get("seed", 9)),
        )
        return mipro.compile(student, trainset=train, valset=dev, num_trials=trials,
                             minibatch=len(dev) > 35, program_aware_proposer=False)
    gepa = dspy.GEPA(
        metric=metric.with_feedback(), reflection_lm=proposer, num_threads=1,
        auto=None if trials else knobs.get("auto", "light"), max_full_evals=trials,
        reflection_minibatch_size=min(3, len(train)), track_stats=False,
        seed=int(knobs.get("seed", 0)), warn_on_score_mismatch=False,
    )
    return gepa.compile(student, trainset=train, valset=dev)


def validation_split(train: list[dspy.Example]) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """(examples to draw demos from, examples to choose candidates on): every third example
    validates when there are at least four, else all of them do both."""
    if len(train) < 4:
        return train, train
    val = train[2::3]
    return [ex for i, ex in enumerate(train) if i % 3 != 2], val


def _require(package: str, what: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise SpecError(f"{what} needs the Python package '{package}': pip install {package}")


# -- the .opt.json file -------------------------------------------------------------------------


def opt_path(spec: str | Path) -> Path:
    """Where the optimized prompts of ``spec`` live: ``<spec>.opt.json`` next to it."""
    spec = Path(spec)
    return spec.with_name(spec.name + ".opt.json")


def spec_digest(spec: str | Path) -> str:
    return hashlib.sha256(Path(spec).read_bytes()).hexdigest()


def save_optimized(outcome: Outcome, spec: str | Path, target: str | Path, meta: dict[str, Any]
                   ) -> Path:
    """Write the tuned predictors' state and how they were made to ``target``."""
    document = {
        "format": FORMAT, "recipe": outcome.recipe.plan.recipe, "spec": Path(spec).name,
        "spec_sha256": spec_digest(spec), "created_at": datetime.now(UTC).isoformat(),
        **meta,
        "scores": {"before": round(outcome.before, 2), "after": round(outcome.after, 2),
                   "on": outcome.scored_on},
        "spend": {"calls": outcome.calls, "usd": round(outcome.usd, 6)},
        "predictors": outcome.recipe.dump_state(),
    }
    target = Path(target)
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n",
                      encoding="utf-8")
    return target


def read_optimized(path: str | Path) -> dict[str, Any]:
    """The parsed ``.opt.json`` document; anything unusable raises :class:`InputError`."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read optimized prompts: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(
            document.get("predictors"), dict):
        raise InputError(f"{path}: not an rlm optimization file (expected format {FORMAT!r} "
                         "with a 'predictors' object)")
    return document


def apply_optimized(module: RecipeModule, document: dict[str, Any], path: str | Path
                    ) -> list[str]:
    """Load each saved predictor state into ``module``; returns the names that matched."""
    state = document["predictors"]
    loaded = []
    for name, predictor in module.named_parameters():
        if name in state:
            refuse_pinned_lm(state[name], name, path)
            try:
                predictor.load_state(state[name])
            except Exception as exc:  # a signature the spec no longer has
                raise InputError(f"{path}: cannot apply the prompts of '{name}': {exc}; "
                                 "re-run rlm optimize or use --no-opt") from None
            loaded.append(name)
    return loaded


def refuse_pinned_lm(state: Any, name: str, path: str | Path) -> None:
    """A saved predictor state that names an LM (DSPy's ``dump_state`` keeps a predictor's own
    ``lm``) would be called instead of the run's LM binding, outside its budget, cache and
    ``lm_calls``: a saved file may carry prompts and demos only (a recipe's, or the planner's)."""
    lm = state.get("lm") if isinstance(state, dict) else None
    if lm:
        model = lm.get("model", "?") if isinstance(lm, dict) else lm
        raise InputError(f"{path}: the saved prompts of '{name}' pin an LM ({model}); an "
                         "optimization file carries prompts and demos only, the spec's LM "
                         "bindings choose the model (remove its \"lm\", re-run rlm optimize or "
                         "use --no-opt)")


def load_optimized(module: RecipeModule, spec_path: str | Path, no_opt: bool) -> str | None:
    """Apply ``<spec>.opt.json`` to ``module`` when it exists and ``no_opt`` is off.

    Returns the line to tell the user (what was loaded), or None when nothing was.
    """
    path = opt_path(spec_path)
    if no_opt or not path.exists():
        return None
    document = read_optimized(path)
    loaded = apply_optimized(module, document, path)
    scores = document.get("scores") or {}
    how = f"{document.get('optimizer', '?')}, {document.get('metric', '?')}"
    if "before" in scores and "after" in scores:
        how += f" {scores['before']:g}% → {scores['after']:g}% on the {scores.get('on', 'devset')}"
    line = (f"using optimized prompts from {path.name} ({how}; {len(loaded)} step predictor(s)); "
            "--no-opt to skip")
    if document.get("spec_sha256") != spec_digest(spec_path):
        line += f"\nwarning: {Path(spec_path).name} changed since it was optimized"
    missing = sorted(set(document["predictors"]) - set(loaded))
    if missing:
        line += f"\nwarning: no step for saved prompts {', '.join(missing)} (ignored)"
    return line
