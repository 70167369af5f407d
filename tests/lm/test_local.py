"""The embedded llama.cpp back end: bad input always, the real model when it is installed.

Tests marked ``local_model`` load the pinned Qwen2.5-Coder-0.5B GGUF from the user cache (pull
it with ``rlm models pull``) and are skipped, with the reason, when it or llama-cpp-python is
missing. They send a handful of short prompts; the slowest takes a few seconds on 2 cores.
"""

from __future__ import annotations

import importlib.util
import threading

import dspy
import pytest
from dspy.lm15 import Config, ContextLengthError, Message, Request

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm import resolve_lm
from rlm_dsl.runtime.lm.adapter import RobustAdapter

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None






def _request(text: str, **config: object) -> Request:
    return Request(model="local", messages=(Message.user(text),), config=Config(**config))


def test_missing_gguf_path():
    with pytest.raises(LMError) as info:
        resolve_lm("local:/nonexistent/m.gguf")
    assert str(info.value) == (
        "model file not found: /nonexistent/m.gguf (from model id 'local:/nonexistent/m.gguf')"
    )


def test_missing_pinned_model(tmp_path, monkeypatch):
    monkeypatch.setenv("RLM_MODEL_DIR", str(tmp_path))
    with pytest.raises(LMError, match=r"run `rlm models pull qwen2\.5-coder-0\.5b` \(or pass"):
        resolve_lm("local")


def test_unknown_local_option_and_bad_window(monkeypatch):
    with pytest.raises(LMError, match=r"^unknown option\(s\) 'api_base' for model 'local'; known:"):
        resolve_lm("local", {"api_base": "http://127.0.0.1:1/v1"})
    monkeypatch.setenv("RLM_N_CTX", "lots")
    with pytest.raises(LMError, match=r"^RLM_N_CTX must be a whole number of tokens ≥ 256, got"):
        resolve_lm("local")


@pytest.mark.skipif(not HAVE_LLAMA, reason="llama-cpp-python is not installed")
def test_corrupted_gguf(tmp_path):
    path = tmp_path / "broken.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    with pytest.raises(LMError) as info:
        resolve_lm(f"local:{path}")
    assert str(info.value) == (
        f"cannot load GGUF model {path}: Failed to load model from file "
        "(is it a complete, uncorrupted .gguf file?)"
    )


@pytest.mark.local_model
def test_predict_through_dspy_gets_a_parsed_answer():
    resolved = resolve_lm("local")
    assert (resolved.context_window, resolved.max_concurrency, resolved.price) == (8192, 1, (0, 0))
    lm = resolved.make_lm()
    with dspy.context(lm=lm, adapter=RobustAdapter()):
        result = dspy.Predict("question -> answer: int")(question="What is 17 + 25?")
    assert result.answer == 42
    usage = lm.history[-1]["usage"]
    assert usage["prompt_tokens"] > 50 and usage["completion_tokens"] > 0


@pytest.mark.local_model
def test_engine_reports_usage_tokens_and_truncation():
    resolved = resolve_lm("local")
    text = "Write the word hello."
    response = resolved.engine.complete(_request(text, max_tokens=1))
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 1
    # the chat template wraps the prompt: more input tokens than the text alone
    assert response.usage.input_tokens > resolved.count_tokens(text) > 0
    assert resolved.token_counter.estimated is False


@pytest.mark.local_model
def test_window_setting_and_overflow():
    resolved = resolve_lm("local", {"n_ctx": 512})
    assert resolved.context_window == 512
    with pytest.raises(ContextLengthError, match="exceed context window of 512"):
        resolved.engine.complete(_request("word " * 600, max_tokens=4))


@pytest.mark.local_model
def test_concurrent_calls_are_serialised():
    engine = resolve_lm("local").engine
    answers: dict[int, str] = {}

    def ask(n: int) -> None:
        reply = engine.complete(_request(f"Reply with only the number {n}.", max_tokens=4))
        answers[n] = reply.message.text.strip()

    threads = [threading.Thread(target=ask, args=(n,)) for n in (3, 5, 8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert answers == {3: "3", 5: "5", 8: "8"}


SAMPLE_LOG = """\
Nov 24 10:00:01 web01 nginx[1201]: GET /api/orders 200 12ms
Nov 24 10:00:02 web02 app[1302]: order 8812 created for customer 5521
Nov 24 10:00:02 db01 postgres[4242]: checkpoint starting: time
Nov 24 10:00:03 web01 nginx[1201]: GET /api/orders/8812 200 9ms
Nov 24 10:00:04 db01 postgres[42]: FATAL: could not extend file 2619: No space left on device
Nov 24 10:00:04 web02 app[1302]: order 8813 created for customer 1190
Nov 24 10:00:05 web01 nginx[1201]: GET /healthz 200 1ms
Nov 24 10:00:06 web02 cron[1403]: (root) CMD (/usr/local/bin/rotate-logs)
"""


@pytest.mark.local_model
def test_real_model_names_the_distinctive_error():
    lm = resolve_lm("local").make_lm()
    with dspy.context(lm=lm, adapter=RobustAdapter()):
        result = dspy.Predict("log, question -> error_message: str")(
            log=SAMPLE_LOG,
            question="One line of this log reports an error. What is that error message?")
    assert "No space left on device" in result.error_message
