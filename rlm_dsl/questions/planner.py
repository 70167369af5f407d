"""The planner of ``rlm ask``: question + input profile → strategy + slots → a checked spec.

Planner stage (``rlm ask``). :class:`Planner` is a ``dspy.Module`` (so ``rlm optimize``-style
tuning sees its predictors): ``choose`` is a ``dspy.Predict`` over the typed signature
:class:`ChooseStrategy` (the strategy a ``Literal`` enum, plus keywords and labels), ``repair`` a
``dspy.Predict`` over :class:`RepairSpec` that gets the compiler's diagnostics. With
``structured=True`` (a back end that constrains output, ``ResolvedLM.structured``) both calls send
their output fields as a JSON schema (:func:`~rlm_dsl.runtime.lm.structured.response_format`),
so the local engine decodes them under a grammar. The LM's plan is merged with the
deterministic :func:`~rlm_dsl.questions.heuristics.heuristic_plan`: a cue word in the question
decides the strategy; otherwise the LM's choice stands when it fits the input (``pairs`` and
labelled ``count`` need labels, ``timeline`` a time column or text); keywords the LM adds are
kept only when they occur in the question, labels only when they are plain names. An LM that
fails or answers garbage leaves the heuristic plan. Every spec goes through the compiler; a spec
with errors is handed to ``repair`` with the diagnostics, at most ``max_repairs`` times, and
then to the heuristic slots, before anything runs. With ``write=True`` the ``write`` predictor
then writes a spec of its own from the checked one; it runs only once it compiles and passes
:mod:`~rlm_dsl.questions.untrusted` (repaired the same bounded way), else the template runs.
``extract_all`` fits only a question about several things.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

import dspy

from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.diagnostics import CompileError
from rlm_dsl.compiler.plan import Plan
from rlm_dsl.errors import SpecError
from rlm_dsl.questions import untrusted
from rlm_dsl.questions.heuristics import HeuristicPlan, heuristic_plan, several
from rlm_dsl.questions.literals import label
from rlm_dsl.questions.profile import InputProfile
from rlm_dsl.questions.strategies import STRATEGIES, Layout, Slots, render
from rlm_dsl.runtime.lm.structured import response_format

log = logging.getLogger(__name__)
StrategyName = Literal["lookup", "extract_all", "count", "pairs", "summarize", "timeline",
                       "free_form"]


class ChooseStrategy(dspy.Signature):
    """Choose how to answer a question about a large input that no model can read at once.
    lookup: one fact stated somewhere. extract_all: every item of some kind. count: how many
    records have a property, or which label is most/least frequent. pairs: pairs of entities
    sharing a label. summarize: what the input says overall. timeline: what happened in order.
    free_form: anything else."""

    question: str = dspy.InputField()
    profile: str = dspy.InputField(desc="the input: kind, size, columns, sample rows")
    strategy: StrategyName = dspy.OutputField()
    keywords: list[str] = dspy.OutputField(desc="words of the question that rows holding the "
                                                "answer contain")
    labels: list[str] = dspy.OutputField(desc="count/pairs: the category each record gets; "
                                              "else []")


class WriteSpec(dspy.Signature):
    """Write an .rlm spec that answers the question over the input, which no model can read at
    once. The example spec runs as it is; change its steps where the question needs another
    plan. Keep its `input docs` line and `param question` as they are, bind no LM, use no other
    recipe, and end with `output answer`. SQL may read only the spec's own tables."""

    question: str = dspy.InputField()
    profile: str = dspy.InputField(desc="the input: kind, size, columns, sample rows")
    example: str = dspy.InputField(desc="a spec from the strategy library that runs as it is")
    spec: str = dspy.OutputField(desc="the whole .rlm spec")


class RepairSpec(dspy.Signature):
    """Fix the errors the compiler reported in this .rlm spec; keep everything else."""

    spec: str = dspy.InputField()
    diagnostics: str = dspy.InputField()
    fixed_spec: str = dspy.OutputField(desc="the whole corrected spec")


@dataclass(frozen=True)
class Chosen:
    """What the planner decided, and the checked spec it decided on."""

    strategy: str
    slots: Slots
    spec: str
    plan: Plan
    source: str  # heuristic | lm | forced (--strategy) | repaired | written (--write-spec)
    notes: tuple[str, ...] = ()


class Planner(dspy.Module):
    """Question + profile → :class:`Chosen` (see the module docstring)."""

    def __init__(self, max_repairs: int = 2) -> None:
        super().__init__()
        self.choose = dspy.Predict(ChooseStrategy)
        self.write = dspy.Predict(WriteSpec)
        self.repair = dspy.Predict(RepairSpec)
        self.max_repairs = max_repairs
        self.structured = False  # set per call by forward(structured=…)
        self.spec_dir: str | None = None  # likewise: where the spec will be saved

    def forward(self, question: str, profile: InputProfile, layout: Layout,
                strategy: str | None = None, use_lm: bool = True,
                structured: bool = False, spec_dir: str | None = None,
                write: bool = False) -> Chosen:
        self.structured = structured
        self.spec_dir = spec_dir
        base = heuristic_plan(question, profile)
        notes: list[str] = []
        if strategy is not None:
            if strategy not in STRATEGIES:
                raise SpecError(f"unknown strategy {strategy!r}; choose one of "
                                + ", ".join(STRATEGIES))
            name, slots, source = strategy, base.slots, "forced"
        elif use_lm and not base.confident:
            name, slots, source = self._with_lm(question, profile, base, notes)
        else:
            name, slots, source = base.strategy, base.slots, "heuristic"
        chosen = self._checked(question, profile, layout, name, slots, source, base, notes)
        return self._written(question, profile, chosen, notes) if write else chosen

    def _with_lm(self, question: str, profile: InputProfile, base: HeuristicPlan,
                 notes: list[str]) -> tuple[str, Slots, str]:
        try:
            answer = self.choose(question=question, profile=profile.describe(),
                                 **self._schema(self.choose))
        except Exception as error:  # an LM that answers garbage is expected: plan without it
            notes.append(f"planner LM unusable ({type(error).__name__}); keyword heuristics used")
            return base.strategy, base.slots, "heuristic"
        return merge(question, profile, base, answer, notes)

    def _checked(self, question: str, profile: InputProfile, layout: Layout, name: str,
                 slots: Slots, source: str, base: HeuristicPlan, notes: list[str]) -> Chosen:
        spec = render(name, question, profile, slots, layout, self.spec_dir)
        error = _compile(spec)
        for _ in range(self.max_repairs):
            if not isinstance(error, CompileError):
                break
            notes.append(f"spec had {len(error.diagnostics)} error(s); asked the LM to repair")
            try:
                spec = self.repair(spec=spec, diagnostics=str(error),
                                   **self._schema(self.repair)).fixed_spec
            except Exception:  # as above: an unusable repair ends the repairs
                break
            error, source = _compile(spec), "repaired"
        if isinstance(error, CompileError) and slots != base.slots:
            notes.append("falling back to the heuristic slots")
            spec = render(name, question, profile, base.slots, layout, self.spec_dir)
            error, source = _compile(spec), "heuristic"
        if isinstance(error, CompileError):
            raise error
        return Chosen(name, slots, spec, error, source, tuple(notes))

    def _written(self, question: str, profile: InputProfile, example: Chosen,
                 notes: list[str]) -> Chosen:
        """The LM's own spec, starting from ``example``, once it compiles and passes
        :func:`~rlm_dsl.questions.untrusted.problems` (repaired from what they report, at most
        ``max_repairs`` times); else ``example``, with a note saying why."""
        try:
            spec = _bare(self.write(question=question, profile=profile.describe(),
                                    example=example.spec, **self._schema(self.write)).spec)
        except Exception as error:  # an LM that cannot write a spec leaves the template's
            notes.append(f"the LM wrote no usable spec ({type(error).__name__}); "
                         f"ran the {example.strategy} template")
            return replace(example, notes=tuple(notes))
        for attempt in range(self.max_repairs + 1):
            checked = _compile(spec)
            found = (str(checked) if isinstance(checked, CompileError)
                     else "\n".join(untrusted.problems(checked, example.plan)))
            if not found:
                return Chosen("written", example.slots, spec, checked, "written", tuple(notes))
            notes.append(f"the LM's spec failed its checks ({found.splitlines()[0]})")
            if attempt == self.max_repairs:
                break
            try:
                spec = _bare(self.repair(spec=spec, diagnostics=found,
                                         **self._schema(self.repair)).fixed_spec)
            except Exception:  # as in _checked: an unusable repair ends the repairs
                break
        notes.append(f"ran the {example.strategy} template instead")
        return replace(example, notes=tuple(notes))

    def _schema(self, predictor: dspy.Predict) -> dict[str, Any]:
        """The ``config`` that sends ``predictor``'s output fields as a JSON schema, if asked."""
        if not self.structured:
            return {}
        return {"config": {"response_format": response_format(predictor.signature)}}


def _bare(spec: str) -> str:
    """An LM's spec without the Markdown fence it may be wrapped in, ending in a newline."""
    text = spec.strip()
    fenced = re.fullmatch(r"```[\w-]*\n(.*?)\n?```", text, re.S)
    return (fenced.group(1).strip() if fenced else text) + "\n"


def _compile(spec: str) -> Plan | CompileError:
    try:
        return compile_text(spec, "<ask>")
    except CompileError as error:
        return error


def merge(question: str, profile: InputProfile, base: HeuristicPlan, answer: Any,
          notes: list[str]) -> tuple[str, Slots, str]:
    """The LM's plan where it is usable, the heuristic one elsewhere (module docstring)."""
    name = getattr(answer, "strategy", None)
    words = question.lower()
    extra = tuple(k.strip() for k in _strings(getattr(answer, "keywords", None))
                  if k.strip() and k.strip().lower() in words)
    labels = tuple(x for x in (label(v) for v in _strings(getattr(answer, "labels", None))) if x)
    slots = replace(base.slots, keywords=tuple(dict.fromkeys(base.slots.keywords + extra)),
                    labels=base.slots.labels or labels)
    if name not in STRATEGIES or not fits(name, slots, profile, question):
        notes.append(f"planner LM chose {name!r}, which does not fit; used {base.strategy!r}")
        return base.strategy, base.slots, "heuristic"
    return name, slots, "lm"


def fits(name: str, slots: Slots, profile: InputProfile, question: str = "") -> bool:
    """Whether strategy ``name`` can run with ``slots`` on this input (``extract_all``: only
    for a question about several things, see :func:`~rlm_dsl.questions.heuristics.several`)."""
    if name == "extract_all":
        return several(question)
    if name == "count":
        return bool(slots.labels or slots.entities or slots.keywords)
    if name == "pairs":
        return len(slots.labels) >= 2
    if name == "timeline":
        return profile.timed or profile.kind == "text"
    return True


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list | tuple) else []
