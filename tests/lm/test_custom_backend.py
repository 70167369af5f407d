"""The custom-engine example of docs/architecture.md ("Record / replay and custom engines") runs:
a chat function registered with ``register_backend`` answers a recipe through the call gate."""

from __future__ import annotations

import re
from pathlib import Path

from dspy.lm15 import Message, Response, TextPart, Usage

import rlm_dsl
from rlm_dsl.runtime.lm.gate import request_messages
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend
from rlm_dsl.runtime.lm.testing import answer

DOCS = Path(__file__).parents[2] / "docs" / "architecture.md"


class ChatEngine:
    """Any chat function -> a DSPy engine (the class of the documented example)."""

    def __init__(self, generate):
        self.generate = generate

    def complete(self, request):
        text = self.generate(request_messages(request))
        return Response(id=None, model="mine", message=Message.assistant([TextPart(text)]),
                        finish_reason="stop",
                        usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0))


def test_the_documented_engine_is_the_one_tested():
    documented = re.search(r"class ChatEngine:.*?\n\n\n", DOCS.read_text(), re.S).group(0)
    assert "def complete(self, request):" in documented
    assert "text = self.generate(request_messages(request))" in documented


def test_a_registered_chat_function_answers_a_recipe(tmp_path):
    seen = []

    def chat(messages):  # stands in for a real model: the test LM's answers, formatted
        seen.append(messages)
        return answer(messages[0]["content"], messages[-1]["content"])

    register_backend("mine", lambda model_id, options: ResolvedLM(
        model_id=model_id, engine=ChatEngine(chat), context_window=32_768, price=(0.0, 0.0),
        max_concurrency=4))
    data = tmp_path / "items.txt"
    data.write_text("item 0 bad\nitem 1 ok\nitem 2 bad\n")
    spec = tmp_path / "count.rlm"
    spec.write_text('recipe count "Count."\ninput items: lines\nchunk items -> pieces by lines(1)'
                    '\nmap pieces -> n: int """\n  COUNT "bad"\n  {{ chunk.text }}\n"""\n'
                    'reduce n -> total: int by sql "SELECT sum(n) FROM {{ input }}"\n'
                    'output total\n')
    result = rlm_dsl.load(spec).run({"items": str(data)}, lm="mine:v1",
                                    db=tmp_path / "run.duckdb")
    assert result.outputs == {"total": 2}
    assert len(seen) == 3 and result.summary["calls"] == 3
