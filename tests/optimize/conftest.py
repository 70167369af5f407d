"""Fixtures for the optimization tests: a teachable task LM, a mentor LM and a small recipe.

``teach`` (task LM) answers like the runtime's ``test`` LM — the first line of the step's prompt —
but writes it in UPPER CASE only when it was *taught* to: the system message carries the key
instruction (the word ``UPPERCASE``), or the conversation holds a demo whose answer is upper case.
Untaught, it is right only on inputs that are already upper case, so a recipe that must shout
scores low until an optimizer adds demos (bootstrap) or the instruction (MIPROv2, GEPA).

``mentor`` (reflection / proposal LM) answers every output field DSPy asks for. A field whose name
mentions ``instruction`` gets ``Answer in UPPERCASE.`` only when the request shows evidence for it
— a run of two or more upper-case words, such as an expected output in GEPA feedback or a
trainset example in MIPROv2's data summary — and ``Answer the question.`` otherwise; other fields
repeat the evidence found, so DSPy's multi-step proposers pass it along.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dspy.lm15 import Message, Request, Response, TextPart, Usage

from rlm_dsl.cli.main import main
from rlm_dsl.runtime.lm.gate import request_messages
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend
from rlm_dsl.runtime.lm.testing import _section
from rlm_dsl.runtime.lm.tokens import estimate_tokens

_OUTPUTS = re.compile(r"^\d+\. `(\w+)` \((.+?)\)", re.M)
_SHOUTING = re.compile(r"\b[A-Z]{3,}(?: [A-Z]{3,})+\b")
_LOUD_SUBMIT = re.compile(r'SUBMIT\(answer="[A-Z]{3,}"\)')

RECIPE = """\
recipe shout "Rewrite a text."

input lines: lines

chunk lines -> rows by lines(1)

map rows -> loud: str \"\"\"
  {{ chunk.text }}
\"\"\"

reduce loud -> answer: str \"\"\"
  {% for s in items %}{{ s }}
  {% endfor %}
\"\"\"

output answer
"""

TRAIN = ["ALPHA BRAVO", "hello world", "CHARLIE DELTA", "good morning", "ECHO FOXTROT",
         "see you soon"]
DEV = ["rainy day", "blue sky", "quiet night", "fresh bread", "late train"]


def _fields(system: str) -> list[tuple[str, str]]:
    outputs = system.partition("Your output fields are:")[2].partition("All interactions")[0]
    return _OUTPUTS.findall(outputs)


def _reply(parts: list[tuple[str, str]], system: str = "") -> str:
    if "JSON object" in system:  # DSPy's JSONAdapter (GEPA's proposer uses it)
        return json.dumps(dict(parts))
    body = [f"[[ ## {name} ## ]]\n{value}" for name, value in parts]
    return "\n\n".join([*body, "[[ ## completed ## ]]"])


def _response(text: str, messages: list[dict[str, str]]) -> Response:
    used = sum(estimate_tokens(m["content"]) for m in messages)
    out = estimate_tokens(text)
    return Response(id=None, model="teach", message=Message.assistant([TextPart(text)]),
                    finish_reason="stop",
                    usage=Usage(input_tokens=used, output_tokens=out, total_tokens=used + out))


class TeachEngine:
    """The teachable task LM (see the module docstring)."""

    def complete(self, request: Request) -> Response:
        messages = request_messages(request)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        shown = [m["content"] for m in messages[1:-1] if m["role"] == "assistant"]
        taught = "UPPERCASE" in system or any(_SHOUTING.search(a) for a in shown)
        first = (_section(messages[-1]["content"], "prompt").strip().splitlines() or [""])[0]
        value = first.strip().upper() if taught else first.strip()
        parts = [(n, "Computed." if n == "reasoning" else value) for n, _ in _fields(system)]
        return _response(_reply(parts), messages)


class MentorEngine:
    """The proposal / reflection LM (see the module docstring)."""

    def __init__(self) -> None:
        self.requests = 0

    def complete(self, request: Request) -> Response:
        self.requests += 1
        messages = request_messages(request)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        user = messages[-1]["content"]
        evidence = sorted(set(_SHOUTING.findall(user)))
        parts = []
        for name, _ in _fields(system):
            if "instruction" in name:
                value = "Answer in UPPERCASE." if evidence else "Answer the question."
            else:
                value = "Seen: " + "; ".join(evidence) if evidence else "Nothing notable."
            parts.append((name, value))
        return _response(_reply(parts, system), messages)


class ShoutRlmEngine:
    """Root LM of an ``rlm`` step asked to ``Shout <word>``: its REPL action SUBMITs the word as
    given, or upper case when taught (the key instruction, or a demo that SUBMITs upper case)."""

    def complete(self, request: Request) -> Response:
        messages = request_messages(request)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        shown = [m["content"] for m in messages[1:-1] if m["role"] == "assistant"]
        taught = "UPPERCASE" in system or any(_LOUD_SUBMIT.search(a) for a in shown)
        found = re.search(r"Shout (\w+)", messages[-1]["content"])
        word = found.group(1) if found else ""
        code = f'SUBMIT(answer="{word.upper() if taught else word}")'
        return _response(_reply([("reasoning", "Submit it."), ("code", f"```python\n{code}\n```")]),
                         messages)


MENTOR = MentorEngine()


def _resolved(model_id: str, engine: Any) -> ResolvedLM:
    return ResolvedLM(model_id=model_id, engine=engine, context_window=32_000,
                      tokenizer=estimate_tokens)


register_backend("teach", lambda model_id, options: _resolved(model_id, TeachEngine()))
register_backend("mentor", lambda model_id, options: _resolved(model_id, MENTOR))
register_backend("shoutrlm", lambda model_id, options: _resolved(model_id, ShoutRlmEngine()))

RLM_RECIPE = """\
recipe ask "Shout a word."

param word: str

input doc: lines

rlm doc -> answer: str with max_iterations=3 \"\"\"
  Shout {{ word }}
\"\"\"

output answer
"""


def jsonl_line(text: str) -> str:
    return json.dumps({"inputs": {"lines": {"text": text + "\n"}},
                       "expected": {"answer": text.upper()}})


def make_shout(folder: Path) -> dict[str, Path]:
    """The ``shout`` recipe with a trainset (some examples already upper case) and a devset."""
    spec = folder / "shout.rlm"
    spec.write_text(RECIPE)
    train = folder / "train.jsonl"
    train.write_text("\n".join(jsonl_line(t) for t in TRAIN) + "\n")
    dev = folder / "dev.jsonl"
    dev.write_text("\n".join(jsonl_line(t) for t in DEV) + "\n")
    small = folder / "dev3.jsonl"
    small.write_text("\n".join(jsonl_line(t) for t in DEV[:3]) + "\n")
    data = folder / "rainy.txt"
    data.write_text("rainy day\n")
    return {"spec": spec, "train": train, "dev": dev, "dev3": small, "data": data}


@pytest.fixture
def shout(tmp_path: Path) -> dict[str, Path]:
    return make_shout(tmp_path)


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``rlm optimize --optimizer bootstrap`` run once on ``shout``: paths, exit code, stdout."""
    files: dict[str, Any] = make_shout(tmp_path_factory.mktemp("bootstrapped"))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        files["code"] = main(["optimize", str(files["spec"]), "--trainset", str(files["train"]),
                              "--devset", str(files["dev"]), "--optimizer", "bootstrap",
                              "--lm", "teach", "--reflection-lm", "mentor"])
    files["out"] = stdout.getvalue()
    return files


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str], Path]:
    def put(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return put


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``rlm <args>`` in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: Any) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke
