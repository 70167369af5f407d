"""Fixtures for the REPL tests: deterministic, prompt-dependent LMs and a small plan step."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

import dspy
import pytest
from dspy.lm15 import Message, Response, TextPart, Usage

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.types import Field, Prim, Type
from rlm_dsl.runtime.store.store import Store

ACTION_MARK = "You answer a task over an input"


class FnEngine:
    """A DSPy engine answering each request with ``fn(system, user)``; records call times."""

    def __init__(self, fn: Callable[[str, str], str], delay_s: float = 0.0) -> None:
        self.fn, self.delay_s = fn, delay_s
        self.calls: list[tuple[float, float, str]] = []
        self._lock = threading.Lock()

    def complete(self, request):
        system = request.system if isinstance(request.system, str) else "".join(
            p.text for p in request.system or [])
        user = "\n".join(m.text or "" for m in request.messages)
        started = time.perf_counter()
        time.sleep(self.delay_s)
        text = self.fn(system, user)
        with self._lock:
            self.calls.append((started, time.perf_counter(), user))
        return Response(id=None, model="test", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop",
                        usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))


def make_lm(fn: Callable[[str, str], str], delay_s: float = 0.0) -> tuple[dspy.LM, FnEngine]:
    engine = FnEngine(fn, delay_s)
    return dspy.LM("test/scripted", engine=engine, cache=False), engine


def action(code: str, reasoning: str = "next step") -> str:
    """A ChatAdapter-formatted ``generate_action`` answer running ``code``."""
    return (f"[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## code ## ]]\n```python\n{code}\n```\n\n"
            "[[ ## completed ## ]]")


def history_steps(user: str) -> int:
    """How many REPL steps the action prompt's history already shows."""
    return len(re.findall(r"=== Step \d+ ===", user))


def scripted_root(steps: list[Callable[[str], str] | str]) -> Callable[[str, str], str]:
    """Root LM: step n of the history gets ``steps[n]`` (a code string or ``fn(prompt)``)."""

    def answer(system: str, user: str) -> str:
        assert ACTION_MARK in system, "the root LM only writes REPL actions"
        step = steps[min(history_steps(user), len(steps) - 1)]
        return action(step(user) if callable(step) else step)

    return answer


def rlm_step(output: Type | None = None, prompt: str = "Find {{ what }}", **options) -> Step:
    return Step(
        id="rlm-answer", kind="rlm", name="answer", table="answer",
        span=Span("test.rlm", 1, 1, 1, 4), source="logs", strategy="rlm",
        options={"max_iterations": 6, "max_llm_calls": 20, "depth": 1, "timeout": 10, **options},
        prompt=prompt, output=Field("answer", output or Prim("str")),
    )


@pytest.fixture
def store():
    with Store.open(None) as opened:
        yield opened


@pytest.fixture(scope="module")
def big_store():
    """A 1,000,000-line input with one needle at line 734,212 (id 734211)."""
    with Store.open(None) as opened:
        opened.con.execute(
            "CREATE TABLE logs AS SELECT range AS id, 'app.log' AS source, range + 1 AS line_no, "
            "CASE WHEN range = 734211 THEN 'INFO the secret code is 7XQ-42' "
            "ELSE 'INFO request ' || range || ' served in ' || (range % 97) || ' ms' END AS text "
            "FROM range(1000000)")
        yield opened
