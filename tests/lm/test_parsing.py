"""Structured output from small models: recorded messy answers through the real DSPy adapter path.

Each text below is the kind of answer Qwen2.5-0.5B and similar models give to a ChatAdapter
prompt. They go through ``dspy.Predict`` with :class:`RobustAdapter` over an engine that replays
them, so formatting, the LM call and parsing are DSPy's own code paths.
"""

from __future__ import annotations

import pickle
from typing import Literal

import dspy
import pydantic
import pytest
from dspy.utils.exceptions import AdapterParseError

from rlm_dsl.runtime.lm.adapter import RobustAdapter, _validator, chat_fields
from rlm_dsl.runtime.lm.lenient import coerce, normalize_choice
from rlm_dsl.runtime.lm.resolve import ResolvedLM

Label = Literal["abbreviation", "description", "entity", "human", "location", "number"]


class Triage(dspy.Signature):
    """Classify the log window."""

    window: str = dspy.InputField()
    severity: Literal["low", "medium", "high"] = dspy.OutputField()
    component: str = dspy.OutputField()
    is_error: bool = dspy.OutputField()


class Incident(pydantic.BaseModel):
    at: str
    what: str


class Incidents(dspy.Signature):
    """List every distinct incident."""

    window: str = dspy.InputField()
    incidents: list[Incident] = dspy.OutputField()


def _predict(engine, signature, **inputs):
    lm = ResolvedLM("recorded", engine, 4096).make_lm()
    with dspy.context(lm=lm, adapter=RobustAdapter()):
        return dspy.Predict(signature)(**inputs)


TRIAGE_ANSWERS = [
    # fenced JSON, prose around it, a trailing comma, a capitalised enum value
    ('Here is the analysis of the log lines:\n\n```json\n{\n  "severity": "High",\n'
     '  "component": "db-pool",\n  "is_error": true,\n}\n```\nLet me know if you need more.',
     ("high", "db-pool", True)),
    # markers with the wrong spacing and case, an upper-case enum, "Yes" for a bool
    ("[[## Severity ##]]\nMEDIUM\n\n[[## component ##]]\nauth-service\n\n[[## is_error ##]]\nYes\n"
     "\n[[ ## completed ## ]]", ("medium", "auth-service", True)),
    # markdown labels instead of markers, a quoted enum, Python-style False
    ("**severity**: 'low'\n**component**: scheduler\n**is_error**: False",
     ("low", "scheduler", False)),
    # JSON keys in the wrong case, the enum padded with spaces
    ('{"Severity": "  high ", "Component": "kafka-consumer", "IS_ERROR": "yes"}',
     ("high", "kafka-consumer", True)),
    # plain "name: value" lines and a unique prefix for the enum
    ("severity: med\ncomponent: nginx\nis_error: no", ("medium", "nginx", False)),
]


@pytest.mark.parametrize(("text", "expected"), TRIAGE_ANSWERS)
def test_messy_triage_answers_parse(recorded, text, expected):
    result = _predict(recorded(text), Triage, window="...")
    assert (result.severity, result.component, result.is_error) == expected


def test_list_of_records_with_trailing_commas(recorded):
    text = ('[[ ## incidents ## ]]\n```json\n[\n  {"at": "12:00:03", "what": "disk full",},\n'
            '  {"at": "12:07:41", "what": "OOM killed worker-3",},\n]\n```\n[[ ## completed ## ]]')
    result = _predict(recorded(text), Incidents, window="...")
    assert [(i.at, i.what) for i in result.incidents] == [
        ("12:00:03", "disk full"), ("12:07:41", "OOM killed worker-3")]


@pytest.mark.parametrize(("signature", "text", "expected"), [
    ("question -> answer: int", "The answer is 42.", 42),
    ("question -> answer: int", "```\n1,024\n```", 1024),
    ("question -> answer: float", "Approximately 3.5 seconds", 3.5),
    ("question -> answer: bool", "No, the chunk contains no errors.", False),
    ("question -> answer: str", "Answer: The payment service timed out.\n[[ ## completed ## ]]",
     "The payment service timed out."),
])
def test_single_field_taken_from_the_whole_text(recorded, signature, text, expected):
    assert _predict(recorded(text), signature, question="q").answer == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("Location", "location"), ('  "NUMBER"  ', "number"), ("desc", "description"),
    ("Literal['human']", "human"), ("The question asks for a place, so: location.", "location"),
])
def test_enum_normalisation(raw, expected):
    assert coerce(raw, Label) == expected


@pytest.mark.parametrize("raw", ["either high or low", "severe", ""])
def test_ambiguous_enum_values_are_refused(raw):
    with pytest.raises(ValueError, match="is not one of: low, medium, high"):
        normalize_choice(raw, ("low", "medium", "high"))


@pytest.mark.parametrize(("signature", "text"), [
    ("question -> answer: int", "I cannot determine that from the log."),
    ("question -> answer: int", "Somewhere between 3 and 5."),
    ("question -> answer: bool", "It depends on the configuration."),
])
def test_hopeless_answers_raise_with_the_raw_text(recorded, signature, text):
    with pytest.raises(AdapterParseError) as info:
        _predict(recorded(text), signature, question="q")
    assert info.value.lm_response == text
    assert "lenient:" in str(info.value)


class Mixed(dspy.Signature):
    """Count the hits."""

    text: str = dspy.InputField()
    limit: int = dspy.InputField()
    hits: list[str] = dspy.OutputField()


@pytest.mark.parametrize(("signature", "inputs"), [
    (Triage, {"window": "ERROR db01: connection refused\n  {\"retry\": 3} ünïcode"}),
    (Triage, {"window": ""}),
    (Triage, {"window": '["a", "b"]'}),  # JSON-looking text stays text
    (Mixed, {"text": "a b c", "limit": 2}),  # a non-text input takes DSPy's own path
])
def test_robust_adapter_formats_exactly_like_chat_adapter(signature, inputs):
    demos = [{**inputs, "severity": "low", "component": "db", "is_error": False,
              "hits": ["a"]}]
    ours, dspy_own = RobustAdapter(), dspy.ChatAdapter(use_json_adapter_fallback=False)
    for _ in range(2):  # the second time from the per-signature memo
        assert ours.format(signature, demos, inputs) == dspy_own.format(signature, demos, inputs)
    cot = dspy.ChainOfThought(signature).predict.signature
    assert ours.format(cot, [], inputs) == dspy_own.format(cot, [], inputs)
    changed = signature.with_instructions("Something else.")
    assert "Something else." in ours.format(changed, [], inputs)[0]["content"]
    copied = pickle.loads(pickle.dumps(ours))  # the memo is left behind, not pickled
    assert copied.format(signature, demos, inputs) == dspy_own.format(signature, demos, inputs)


class Shapes(dspy.Signature):
    """Every output type a step can declare, and some it cannot."""

    text: str = dspy.InputField()
    count: int = dspy.OutputField()
    score: float = dspy.OutputField()
    flag: bool = dspy.OutputField()
    names: list[str] = dspy.OutputField()
    incident: Incident = dspy.OutputField()
    maybe: int | None = dspy.OutputField()
    note: str = dspy.OutputField()


@pytest.mark.parametrize("completion", [
    "[[ ## count ## ]]\n3\n[[ ## score ## ]]\n0.5\n[[ ## flag ## ]]\ntrue\n"
    "[[ ## names ## ]]\n[\"a\", 'b']\n[[ ## incident ## ]]\n{\"at\": \"10:00\", \"what\": \"x\"}\n"
    "[[ ## maybe ## ]]\nnull\n[[ ## note ## ]]\n  two\nlines  \n\n[[ ## completed ## ]]",
    "[[ ## count ## ]] 7\n[[ ## score ## ]] 1\n[[ ## flag ## ]] False\n[[ ## names ## ]] []\n"
    "[[ ## incident ## ]]\n{'at': 'noon', 'what': 'y'}\n[[ ## maybe ## ]]\n4\n"
    "[[ ## note ## ]]\n[[ ## count ## ]]\n9",  # a repeated header: the first one counts
    "preamble\n[[ ## count ## ]]\n\"12\"\n[[ ## score ## ]]\n2e3\n[[ ## flag ## ]]\n1\n"
    "[[ ## names ## ]]\n[\"x\",]\n[[ ## incident ## ]]\n{at: 1, what: 2}\n[[ ## maybe ## ]]\n\n"
    "[[ ## note ## ]]\n",
    "[[ ## count ## ]]\nmany\n",  # unparseable, and fields missing: DSPy's own error
    "[[ ## count ## ]]\n1\n[[ ## score ## ]]\n1\n[[ ## flag ## ]]\nmaybe\n[[ ## names ## ]]\n[]\n"
    "[[ ## incident ## ]]\n{}\n[[ ## maybe ## ]]\n1\n[[ ## note ## ]]\nx",
])
def test_strict_parse_answers_what_chat_adapter_answers(completion):
    """The kept-validator parse gives ChatAdapter's values, or leaves the text to DSPy's parse
    (which then raises its own error) — never a different value."""
    dspy_own = dspy.ChatAdapter(use_json_adapter_fallback=False)
    try:
        expected = dspy_own.parse(Shapes, completion)
    except AdapterParseError:
        expected = None
    fields = chat_fields(Shapes, completion)
    assert fields is None or fields == expected
    if expected is not None:
        assert RobustAdapter().parse(Shapes, completion) == expected
        assert {k: type(v) for k, v in fields.items()} == {k: type(v) for k, v in expected.items()}


def test_strict_parse_leaves_enums_literals_and_optional_text_to_dspy():
    assert chat_fields(Triage, "[[ ## severity ## ]]\nhigh\n[[ ## component ## ]]\ndb\n"
                       "[[ ## is_error ## ]]\ntrue") is None
    assert _validator(str | None) is None and _validator(int) is _validator(int)
