"""Trainset checks (file:line messages, exit 2) and the metrics ``rlm optimize`` scores with."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dspy
import pytest

import rlm_dsl
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.optimize.metrics import contains, exact, f1, numeric, resolve_metric
from rlm_dsl.runtime.optimize.trainset import load_trainset

GOOD = json.dumps({"inputs": {"lines": {"text": "a b\n"}}, "expected": {"answer": "A B"}})


@pytest.mark.parametrize("line, message", [
    ("{not json", "train.jsonl:2: not a JSON object: Expecting property name enclosed in double "
                  "quotes (column 2)"),
    ("[1, 2]", "train.jsonl:2: expected a JSON object with inputs, params, expected"),
    ('{"inputs": {"lines": {"text": "x"}}}',
     "train.jsonl:2: missing field 'expected' (the wanted value of at least one output: "
     "answer)"),
    ('{"inputs": {"lines": {"text": "x"}}, "expected": {"loud": "X"}}',
     "train.jsonl:2: unknown output 'loud' in 'expected' (outputs: answer)"),
    ('{"inputs": {"lines": {"text": "x"}}, "expected": {}}',
     "train.jsonl:2: 'expected' names no output (outputs: answer)"),
    ('{"inputs": {"text": "x"}, "expected": {"answer": "X"}}',
     "train.jsonl:2: unknown input 'text' (inputs: lines)"),
    ('{"expected": {"answer": "X"}}',
     "train.jsonl:2: missing input 'lines' (the spec gives it no path=)"),
    ('{"inputs": {"lines": "nowhere.txt"}, "expected": {"answer": "X"}}',
     "train.jsonl:2: input 'lines': no such file {dir}/nowhere.txt"),
    ('{"inputs": {"lines": 3}, "expected": {"answer": "X"}}',
     "train.jsonl:2: input 'lines' must be a path, a list of paths or {\"text\": \"…\"}"),
    ('{"inputs": {"lines": {"text": "x"}}, "params": {"top": 3}, "expected": {"answer": "X"}}',
     "train.jsonl:2: top: the recipe 'shout' declares no param 'top' (params: none)"),
    ('{"inputs": {"lines": {"text": "x"}}, "expected": {"answer": "X"}, "label": 1}',
     "train.jsonl:2: unknown field(s) label (fields: inputs, params, expected)"),
    ('{"inputs": [], "expected": {"answer": "X"}}',
     "train.jsonl:2: 'inputs' must be a JSON object, got list"),
])
def test_bad_trainset_lines_name_file_and_line(shout, cli, line, message):
    train = shout["spec"].parent / "train.jsonl"
    train.write_text(f"{GOOD}\n{line}\n")
    code, out, err = cli("optimize", shout["spec"], "--trainset", train, "--lm", "teach")
    assert code == 2
    assert err.strip() == f"{shout['spec'].parent}/" + message.replace("{dir}", str(
        shout["spec"].parent))
    assert out == ""


def test_empty_and_missing_trainsets(shout, cli):
    empty = shout["spec"].parent / "empty.jsonl"
    empty.write_text("# only a comment\n\n")
    code, _, err = cli("optimize", shout["spec"], "--trainset", empty, "--lm", "teach")
    assert (code, err.strip()) == (2, f"{empty}: the trainset holds no examples (one JSON "
                                      "object per line)")
    code, _, err = cli("optimize", shout["spec"], "--trainset", empty.with_name("no.jsonl"))
    assert code == 2 and err.startswith(f"{empty.with_name('no.jsonl')}: cannot read the trainset")


def test_unknown_optimizer_and_metric_are_usage_errors(shout, cli):
    code, _, err = cli("optimize", shout["spec"], "--trainset", shout["train"], "--optimizer",
                       "adam")
    assert (code, err.strip()) == (1, "--optimizer adam: expected one of bootstrap, mipro, gepa")
    code, _, err = cli("optimize", shout["spec"], "--trainset", shout["train"], "--metric", "bleu")
    assert (code, err.strip()) == (1, "--metric bleu: expected one of exact, contains, f1, "
                                      "numeric or python:module:function")


def test_examples_carry_inputs_params_and_labels(shout):
    plan = rlm_dsl.load(shout["spec"]).plan
    (shout["spec"].parent / "data.txt").write_text("x\n")
    train = shout["spec"].parent / "t.jsonl"
    train.write_text(json.dumps({"inputs": {"lines": "data.txt"},
                                 "expected": {"answer": "X"}}) + "\n" + GOOD + "\n")
    first, second = load_trainset(train, plan, shout["spec"].parent / "scratch")
    assert dict(first.inputs()) == {"lines": str(shout["spec"].parent / "data.txt")}
    assert dict(first.labels()) == {"answer": "X"}
    inline = second.inputs()["lines"]
    assert inline.endswith("2/lines.txt") and Path(inline).read_text() == "a b\n"


@pytest.mark.parametrize("compare, expected, got, score", [
    (exact, "A B", " A B\n", 1.0), (exact, "A B", "a b", 0.0), (exact, 3, 3.0, 1.0),
    (exact, [1, 2], [1, 2], 1.0), (exact, True, 1, 0.0),
    (contains, "error", "Three ERRORS found", 1.0), (contains, "x", None, 0.0),
    (f1, "the cat sat", "cat sat down", 2 / 3), (f1, "a", "b", 0.0),
    (numeric, 42, "about 42.0 items", 1.0), (numeric, 0.5, "0.6", 0.0), (numeric, 1, None, 0.0),
])
def test_builtin_comparisons(compare, expected, got, score):
    assert compare(expected, got) == pytest.approx(score)


def test_metric_averages_outputs_and_gives_feedback():
    metric = resolve_metric("exact", ["a", "b"])
    example = dspy.Example(x="in", a="1", b="2").with_inputs("x")
    assert metric(example, dspy.Prediction(a="1", b="3")) == 0.5
    scored = metric.with_feedback()(example, dspy.Prediction(a="1", b="3"), None, None, None)
    assert scored.score == 0.5
    assert scored.feedback == "output 'b': expected '2', got '3' (exact score 0.00)"


def test_python_metric(tmp_path, monkeypatch):
    (tmp_path / "my_metrics.py").write_text(
        "import dspy\n"
        "def length(example, prediction, trace=None):\n"
        "    return dspy.Prediction(score=len(prediction.answer) / 10, feedback='longer')\n"
        "def two(example, prediction):\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    metric = resolve_metric("python:my_metrics:length", ["answer"])
    example = dspy.Example(answer="x")
    assert metric(example, dspy.Prediction(answer="abcde")) == 0.5
    assert metric.with_feedback()(example, dspy.Prediction(answer="ab")).feedback == "longer"
    with pytest.raises(SpecError, match="must take \\(example, prediction, trace=None\\)"):
        resolve_metric("python:my_metrics:two", ["answer"])
    with pytest.raises(SpecError, match="module 'my_metrics' has no function 'nope'"):
        resolve_metric("python:my_metrics:nope", ["answer"])
    with pytest.raises(SpecError, match="cannot import module 'no_such_mod'"):
        resolve_metric("python:no_such_mod:f", ["answer"])
    sys.modules.pop("my_metrics", None)



def test_shipped_example_trainsets_validate(tmp_path):
    plan = rlm_dsl.load("recipes/label_counting.rlm").plan
    train = load_trainset("recipes/label_counting.train.jsonl", plan, tmp_path / "t")
    dev = load_trainset("recipes/label_counting.dev.jsonl", plan, tmp_path / "d")
    assert (len(train), len(dev)) == (6, 4)
    assert {ex.most_common for ex in train} == {"abbreviation", "number", "human", "location",
                                                "description", "entity"}
