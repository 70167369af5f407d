"""Prefix reuse on the embedded model: steps that take turns keep their own KV cache.

Marked ``local_model`` (skipped, with the reason, without llama-cpp-python or the pulled model).
llama.cpp's performance counters say how many prompt tokens each call evaluated.
"""

from __future__ import annotations

import pytest
from dspy.lm15 import Config, Message, Request

from rlm_dsl.runtime.lm import resolve_lm
from rlm_dsl.runtime.lm.gate import call_scope
from rlm_dsl.runtime.lm.local import LlamaEngine

SYSTEMS = {
    "colours": "You name colours. Answer with one lower-case word: the colour of the fruit.",
    "countries": "You name countries. Answer with one word: the country the dish comes from.",
}


def _ask(engine, step: str, text: str) -> tuple[str, int, int]:
    """(answer, prompt tokens, prompt tokens llama.cpp evaluated) of one call of ``step``."""
    import llama_cpp

    context = engine.llama._ctx.ctx
    llama_cpp.llama_perf_context_reset(context)
    request = Request(model="local", system=SYSTEMS[step], messages=(Message.user(text),),
                      config=Config(max_tokens=3))
    with call_scope(step=step):
        reply = engine.complete(request)
    return reply.text, reply.usage.input_tokens, llama_cpp.llama_perf_context(context).n_p_eval


@pytest.mark.local_model
def test_alternating_steps_evaluate_only_their_own_tokens_and_answer_the_same():
    engine = resolve_lm("local", {"n_ctx": 512}).engine
    engine.llama.reset()
    first = [_ask(engine, "colours", "banana"), _ask(engine, "countries", "pizza")]
    assert first[1][2] > 20  # the second step found the other step's prompt in the cache
    turns = [_ask(engine, "colours", "cherry"), _ask(engine, "countries", "sushi")]
    for answer, prompt_tokens, evaluated in turns:
        # each re-reads only its own user text, not its system message (~30 tokens)
        assert evaluated < 10 < prompt_tokens - 20, (answer, prompt_tokens, evaluated)
    plain = LlamaEngine(engine.llama, engine.lock)  # no kept caches
    fresh = []
    for step, text in (("colours", "cherry"), ("countries", "sushi")):
        engine.llama.reset()  # an empty cache: the whole prompt is evaluated
        fresh.append(_ask(plain, step, text))
    assert [f[2] for f in fresh] == [f[1] for f in fresh]
    assert [t[0] for t in turns] == [f[0] for f in fresh]
