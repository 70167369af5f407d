"""``rlm optimize --planner``: the planner of ``rlm ask`` is a DSPy module tuned on (question,
inputs, gold answer) examples — scored before and after on a devset, saved only when it beats the
baseline, then used by ``rlm ask`` (``--no-opt`` skips it). The LM here learns from demos: with
none it picks lookup for even project numbers and summarize for odd ones; shown demos, it
follows them. Only lookup finds the planted line, so bootstrapped demos must lift the score."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from questions.inputs import reply, write_essay
from rlm_dsl.cli.main import main
from rlm_dsl.errors import InputError
from rlm_dsl.questions.tuning import load_examples
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend, resolve_lm

STRATEGY = re.compile(r"\[\[ ## strategy ## \]\]\s*(\w+)")


class Learner:
    """The test LM, except for the planner's choice (module docstring)."""

    def __init__(self) -> None:
        self.test = resolve_lm("test").engine

    def complete(self, request):
        user = request.messages[-1].text or ""
        if "[[ ## profile ## ]]" not in user:
            return self.test.complete(request)
        shown = [m.text or "" for m in request.messages[:-1] if m.role == "assistant"]
        demos = STRATEGY.findall("\n".join(shown))
        number = int(re.search(r"kestrel-(\d+)", user).group(1))
        strategy = demos[-1] if demos else ("lookup" if number % 2 == 0 else "summarize")
        text = (f"[[ ## strategy ## ]]\n{strategy}\n\n[[ ## keywords ## ]]\n[]\n\n"
                "[[ ## labels ## ]]\n[]\n\n[[ ## completed ## ]]")
        return reply("learner", text)


@pytest.fixture(scope="module", autouse=True)
def learner_backend():
    register_backend("learner", lambda model, options: ResolvedLM(
        model_id=model, engine=Learner(), context_window=128_000))


def fact(number: int) -> str:
    return f"The vault code for project kestrel-{number} is {4000 + number}."


def question(number: int) -> str:
    return f"What is the vault code for project kestrel-{number}?"


def trainset(path: Path, numbers: range) -> Path:
    lines = []
    for number in numbers:
        write_essay(path.parent / f"essay{number}.txt", fact(number), lines=40)
        lines.append(json.dumps({"question": question(number), "paths": [f"essay{number}.txt"],
                                 "answer": fact(number)}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_tuned_planner_beats_the_baseline_is_saved_and_used(tmp_path: Path, capsys,
                                                              monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    train = trainset(tmp_path / "train.jsonl", range(0, 6))
    dev = trainset(tmp_path / "dev.jsonl", range(10, 14))
    assert main(["optimize", "--planner", "--trainset", str(train), "--devset", str(dev),
                 "--lm", "learner", "--demos", "2", "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "devset score before: 50.0%" in out and "devset score after:  100.0%" in out
    saved = tmp_path / "config" / "rlm-dsl" / "planner.opt.json"
    assert json.loads(saved.read_text())["scores"] == {"before": 50.0, "after": 100.0,
                                                       "on": "devset"}
    write_essay(tmp_path / "essay21.txt", fact(21), lines=40)
    ask = ["ask", question(21), str(tmp_path / "essay21.txt"), "--lm", "learner", "--json"]
    assert main(ask) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["answer"] == fact(21)  # an odd number: lookup, as taught
    assert f"planner: tuned program from {saved}" in captured.err
    assert main([*ask, "--no-opt"]) == 0
    untuned = json.loads(capsys.readouterr().out)
    assert (untuned["strategy"], untuned["answer"] == fact(21)) == ("summarize", False)


def test_a_planner_that_does_not_beat_the_baseline_is_not_saved(tmp_path: Path, capsys,
                                                                monkeypatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    train = trainset(tmp_path / "train.jsonl", range(0, 8, 2))  # lookup already: 100 %
    assert main(["optimize", "--planner", "--trainset", str(train), "--lm", "learner",
                 "--trials", "1"]) == 0
    assert "kept the baseline" in capsys.readouterr().out
    assert not (tmp_path / "config" / "rlm-dsl" / "planner.opt.json").exists()


@pytest.mark.parametrize(("line", "message"), [
    ("not json", r"t.jsonl:2: not JSON"),
    ('{"question": "Q?", "answer": 1}', r"t.jsonl:2: 'paths' must be a file"),
    ('{"paths": ["a.txt"], "answer": 1}', r't.jsonl:2: expected \{"question"'),
])
def test_a_bad_trainset_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"question": "Q?", "paths": "a.txt", "answer": 1}) + f"\n{line}\n")
    with pytest.raises(InputError, match=message):
        load_examples(path)


def test_a_tuned_planner_file_that_pins_an_lm_is_refused(tmp_path: Path) -> None:
    # a pinned LM would plan outside the planner's gated LM and its spend cap
    from rlm_dsl.questions.planner import Planner
    from rlm_dsl.questions.tuning import FORMAT, load_planner

    state = json.loads(json.dumps(Planner().dump_state()))
    state["write"]["lm"] = {"model": "openai/gpt-4o-mini", "model_type": "chat"}
    path = tmp_path / "planner.opt.json"
    path.write_text(json.dumps({"format": FORMAT, "planner": state}))
    with pytest.raises(InputError, match=re.escape(
            f"{path}: the saved prompts of 'write' pin an LM (openai/gpt-4o-mini)")):
        load_planner(path)
    state["write"]["lm"] = None  # the state every saved planner has
    path.write_text(json.dumps({"format": FORMAT, "planner": state}))
    assert load_planner(path) is not None
