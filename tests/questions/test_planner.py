"""The planner (rlm_dsl/questions/planner.py, heuristics.py): cue words decide, the LM decides
the rest when its plan fits, garbage falls back to the heuristics, and a spec that does not
compile goes back for repair a bounded number of times before anything runs."""

from __future__ import annotations

import dspy
import pytest
from dspy.utils import DummyLM

from questions.inputs import PROFILES
from rlm_dsl.compiler.diagnostics import CompileError
from rlm_dsl.questions import planner as planner_module
from rlm_dsl.questions.heuristics import heuristic_plan, terms
from rlm_dsl.questions.planner import Planner
from rlm_dsl.questions.strategies import Layout

OOLONG = ("Label every question by the type of its answer - yes_no: the answer is yes or no; "
          "number: the answer contains a number; name: any other answer. ")


@pytest.mark.parametrize(("question", "kind", "strategy"), [
    ("What is the special magic number for amber-delta mentioned in the text?", "text",
     "lookup"),
    (OOLONG + "How many questions are labelled yes_no?", "jsonl", "count"),
    (OOLONG + "Which label is the most frequent? Answer with the label.", "jsonl", "count"),
    (OOLONG + "List every pair of users who both asked a question labelled name.", "jsonl",
     "pairs"),
    ("How many ERROR lines did the component com.acme.Mailer log?", "log", "count"),
    ("List every IP address that was refused.", "log", "extract_all"),
    ("Summarize the essays.", "text", "summarize"),
    ("Give a timeline of the outages.", "log", "timeline"),
])
def test_cue_words_choose_the_strategy(question: str, kind: str, strategy: str) -> None:
    assert heuristic_plan(question, PROFILES[kind]).strategy == strategy


def test_slots_from_the_question() -> None:
    plan = heuristic_plan(OOLONG + "How many questions asked by user U3 are labelled number?",
                          PROFILES["jsonl"])
    assert plan.slots.labels == ("yes_no", "number", "name")
    assert (plan.slots.target, plan.slots.group_column, plan.slots.group_value) == \
        ("number", "user", "U3")
    most = heuristic_plan(OOLONG + "Which label is the least frequent?", PROFILES["jsonl"])
    assert most.slots.measure == "least"
    log = heuristic_plan("How many ERROR lines did com.acme.Mailer log?", PROFILES["log"])
    assert log.slots.entities == ("ERROR", "com.acme.Mailer") and not log.slots.judge


def test_terms_split_names_from_words() -> None:
    entities, keywords = terms('Who founded "Acme Corp" in 1999 with user-42 and the robots?')
    assert entities == ("Acme Corp", "1999", "user-42")
    assert keywords == ("founded", "robot")


def _planner(*answers: dict[str, str]) -> tuple[Planner, DummyLM]:
    return Planner(), DummyLM(list(answers))


def test_the_lm_decides_when_no_cue_word_does() -> None:
    planner, lm = _planner({"strategy": "summarize", "keywords": '["gardens", "invented"]',
                            "labels": "[]"})
    with dspy.context(lm=lm):
        chosen = planner(question="What do the essays say about gardens?",
                         profile=PROFILES["text"], layout=Layout())
    assert (chosen.strategy, chosen.source) == ("summarize", "lm")
    assert "gardens" in chosen.slots.keywords
    assert "invented" not in chosen.slots.keywords  # not a word of the question: dropped


def test_a_structured_back_end_gets_the_planner_fields_as_a_json_schema() -> None:
    # the local engine turns this schema into a grammar (runtime/lm/local.py constrained)
    planner, lm = _planner({"strategy": "summarize", "keywords": "[]", "labels": "[]"})
    with dspy.context(lm=lm):
        planner(question="What do the essays say about gardens?", profile=PROFILES["text"],
                layout=Layout(), structured=True)
    schema = lm.history[0]["kwargs"]["response_format"]["json_schema"]["schema"]
    assert list(schema["properties"]) == ["strategy", "keywords", "labels"]
    assert "free_form" in schema["properties"]["strategy"]["enum"]
    plain, lm = _planner({"strategy": "summarize", "keywords": "[]", "labels": "[]"})
    with dspy.context(lm=lm):
        plain(question="What do the essays say about gardens?", profile=PROFILES["text"],
              layout=Layout())
    assert "response_format" not in lm.history[0]["kwargs"]


def test_an_lm_plan_that_does_not_fit_falls_back() -> None:
    planner, lm = _planner({"strategy": "pairs", "keywords": "[]", "labels": "[]"})
    with dspy.context(lm=lm):
        chosen = planner(question="Who painted the gate?", profile=PROFILES["text"],
                         layout=Layout())
    assert (chosen.strategy, chosen.source) == ("lookup", "heuristic")
    assert "does not fit" in chosen.notes[0]


def test_garbage_from_the_lm_falls_back_to_the_heuristics() -> None:
    planner, lm = _planner({"nonsense": "x"})
    with dspy.context(lm=lm):
        chosen = planner(question="Who painted the gate?", profile=PROFILES["text"],
                         layout=Layout())
    assert (chosen.strategy, chosen.source) == ("lookup", "heuristic")
    assert "unusable" in chosen.notes[0]


def test_a_broken_spec_is_repaired_from_the_diagnostics(monkeypatch) -> None:
    good = planner_module.render("lookup", "Q?", PROFILES["text"],
                                 heuristic_plan("Q?", PROFILES["text"]).slots, Layout())
    monkeypatch.setattr(planner_module, "render", lambda *a: good.replace("map candidates",
                                                                          "map candidatez"))
    planner, lm = _planner({"fixed_spec": good})
    with dspy.context(lm=lm):
        chosen = planner(question="Q?", profile=PROFILES["text"], layout=Layout(),
                         strategy="lookup")
    assert chosen.source == "repaired" and chosen.spec.strip() == good.strip()
    assert "unknown name 'candidatez'" in lm.history[0]["messages"][-1]["content"]


def test_repairs_are_bounded_and_the_error_is_raised(monkeypatch) -> None:
    bad = "recipe x\noutput nothing\n"
    monkeypatch.setattr(planner_module, "render", lambda *a: bad)
    planner, lm = _planner(*[{"fixed_spec": bad}] * 5)
    with dspy.context(lm=lm), pytest.raises(CompileError, match="unknown name 'nothing'"):
        planner(question="Q?", profile=PROFILES["text"], layout=Layout(), strategy="lookup")
    assert len(lm.history) == planner.max_repairs == 2


@pytest.mark.parametrize(("question", "strategy"), [
    ("Which version of bubblewrap was installed?", "lookup"),  # one thing: not extract_all
    ("Which packages were upgraded?", "extract_all"),  # several things
    ("Which errors did the mailer report?", "extract_all"),
])
def test_extract_all_fits_only_a_question_about_several_things(question: str,
                                                               strategy: str) -> None:
    planner, lm = _planner({"strategy": "extract_all", "keywords": "[]", "labels": "[]"})
    with dspy.context(lm=lm):
        chosen = planner(question=question, profile=PROFILES["log"], layout=Layout())
    assert chosen.strategy == strategy
