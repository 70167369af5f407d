"""The strategy library of ``rlm ask``: typed recipe templates, rendered into ``.rlm`` specs.

Planner stage (``rlm ask``). Each strategy is a Jinja2 template over ``.rlm`` text shipped as
package data (``<name>.rlm.j2``); its delimiters are ``<< >>`` and ``<% %>`` so that the spec's
own ``{{ chunk.text }}`` prompts pass through untouched. :func:`render` fills a template from the
question, the :class:`~rlm_dsl.questions.profile.InputProfile`, the :class:`Slots` the planner chose
and a :class:`Layout` sized to the model's window. Slot values reach the spec only as values:
the question as a ``param`` default, terms as escaped SQL regex literals
(:mod:`rlm_dsl.questions.literals`), labels and columns only when they are plain names — so no
question can change a plan's code. The strategies: ``lookup`` (one fact), ``extract_all``
(every item of a kind), ``count`` (labels or matching records, counted in SQL), ``pairs``
(labels, then an SQL self-join), ``summarize`` (tree), ``timeline`` (fold over time windows)
and ``free_form`` (the ``rlm`` step).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import jinja2

from rlm_dsl.questions.literals import column as plain_column
from rlm_dsl.questions.literals import label, rlm_paths, rlm_string, sql_term
from rlm_dsl.questions.profile import InputProfile

STRATEGIES = ("lookup", "extract_all", "count", "pairs", "summarize", "timeline", "free_form")
DESCRIPTIONS = {
    "lookup": "Find one fact: rows scored by the question's terms, read by the LM, voted.",
    "extract_all": "List every item of a kind the question asks for.",
    "count": "Count records exactly in SQL (by LM labels or by matching terms).",
    "pairs": "Label each record, then list the pairs that share a label with an SQL self-join.",
    "summarize": "Notes per part of the input, merged by a tree of LM calls.",
    "timeline": "Read the input in time order and keep a running timeline.",
    "free_form": "The free-form rlm step explores the input from a REPL.",
}
# Recognisable shapes: RE2 patterns (constants, never built from a question). They hold no
# quote and no Jinja delimiter, so they sit in a SQL literal of the spec as they are.
SHAPES = {
    "ip": r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "url": r"https?://[^\s<>\x{22}\x{27}]+",
    "host": r"\b(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}\b",
    "date": r"\b\d{4}-\d{2}-\d{2}\b",
    "number": r"\b\d+(?:\.\d+)?\b",
    "id": r"\b[A-Za-z]+[-_]?\d+\b",
}
MEASURES = ("count", "most", "least", "table")
LEVELS = ("TRACE", "DEBUG", "INFO", "NOTICE", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL")


@dataclass(frozen=True)
class Slots:
    """What the planner fills in: the values a strategy template needs."""

    keywords: tuple[str, ...] = ()  # words of the question that rows with the answer hold
    entities: tuple[str, ...] = ()  # names, ids, numbers of the question (weigh more)
    labels: tuple[str, ...] = ()  # count / pairs: the enum an LM labels each record with
    target: str | None = None  # count / pairs: the label the question is about
    measure: str = "count"  # count: count | most | least | table
    shape: str | None = None  # extract_all: a key of SHAPES
    group_column: str | None = None  # pairs: the column whose values pair up; count: filter
    group_value: str | None = None  # count: only records whose group column is this
    judge: bool = False  # count without labels: the LM confirms each matching record
    top_k: int = 8  # lookup: rows read when the terms match

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Layout:
    """Sizes that depend on the model's window and the input, not on the question."""

    part_tokens: int = 1_500  # summarize / timeline parts
    passage_lines: int = 40  # lookup's fall-back passages
    duration: str = "1h"  # timeline windows over a time column
    iterations: int = 12  # free_form
    llm_calls: int = 40


def layout_for(profile: InputProfile, window: int) -> Layout:
    """Part sizes that fit ``window`` tokens with room for the prompt and the answer."""
    part = max(200, min(4_000, window // 2 - 300))
    per_line = max(1.0, profile.tokens / max(profile.lines, 1))
    return Layout(part_tokens=part, passage_lines=max(1, int(part / per_line)))


def clean(strategy: str, slots: Slots, profile: InputProfile) -> Slots:
    """``slots`` with every value a template could not place safely dropped or normalised;
    ``pairs`` without labels pairs the records an LM answers ``yes`` for."""
    labels = tuple(dict.fromkeys(x for x in (label(v) for v in slots.labels) if x))
    target = label(slots.target) if slots.target else None
    if strategy == "pairs" and len(labels) < 2:
        labels, target = ("yes", "no"), "yes"
    column = plain_column(slots.group_column, profile.columns)
    return Slots(
        keywords=tuple(k for k in dict.fromkeys(slots.keywords) if k.strip())[:12],
        entities=tuple(e for e in dict.fromkeys(slots.entities) if e.strip())[:8],
        labels=labels, target=target if target in labels else None,
        measure=slots.measure if slots.measure in MEASURES else "count",
        shape=slots.shape if slots.shape in SHAPES else None, group_column=column,
        group_value=slots.group_value if column else None, judge=bool(slots.judge),
        top_k=max(1, min(int(slots.top_k), 64)),
    )


def _beside(path: str, spec_dir: str | None) -> str:
    """``path`` (relative to the working directory) as seen from ``spec_dir``."""
    path = os.path.expanduser(path)
    if spec_dir is None or os.path.isabs(path):
        return path
    return os.path.relpath(os.path.abspath(path), os.path.abspath(spec_dir))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rlm_dsl.questions", "strategies"),
        block_start_string="<%", block_end_string="%>", variable_start_string="<<",
        variable_end_string=">>", comment_start_string="<#", comment_end_string="#>",
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False,
    )
    env.filters["rlm"] = rlm_string
    env.filters["rlmpaths"] = rlm_paths
    env.filters["sqlterm"] = sql_term
    return env


_ENV = _environment()


def render(strategy: str, question: str, profile: InputProfile, slots: Slots,
           layout: Layout, spec_dir: str | None = None) -> str:
    """The ``.rlm`` spec of ``strategy`` for ``question`` over ``profile``'s inputs, its
    ``path=`` relative to ``spec_dir`` (the folder the spec is saved in; the working directory
    when None), as a spec's paths are."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    slots = clean(strategy, slots, profile)
    terms = [(e, 3) for e in slots.entities] + [(k, 1) for k in slots.keywords
                                               if k not in slots.entities]
    levels = [e.upper() for e in slots.entities if e.upper() in LEVELS] if \
        profile.kind == "log" else []
    text = _ENV.get_template(f"{strategy}.rlm.j2").render(
        strategy=strategy, description=DESCRIPTIONS[strategy], question=question,
        kind=profile.kind, paths=[_beside(p, spec_dir) for p in profile.paths],
        last_line="end_line_no" if profile.kind == "log" else "line_no",
        slots=slots, layout=layout, terms=terms, entity_terms=[(e, 1) for e in slots.entities],
        required_terms=[e for e in slots.entities if e.upper() not in levels]
        or list(slots.keywords),
        levels=levels, shape_regex=SHAPES.get(slots.shape or "", ""), timed=profile.timed,
    )
    # split on "\n" only: a question may hold other line separators inside its string literal
    return "\n".join(line.rstrip() for line in text.split("\n")).strip() + "\n"
