"""The async OpenAI-compatible engine: routing, answers and errors equal to LiteLLM's, and the
run-level behaviour (retries, timeouts, budget, cache, concurrency) against loopback servers."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
from dspy.lm15 import (
    AuthError,
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    Message,
    RateLimitError,
    Request,
    ServerError,
    TimeoutError,
    TransportError,
)
from dspy.lm15 import Config as LMConfig
from dspy.utils.exceptions import is_retryable_lm_error

from rlm_dsl.compile import compile_file
from rlm_dsl.errors import BudgetExhausted, LMError, RowsFailed
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.lm import resolve_lm
from rlm_dsl.runtime.lm.openai_async import OpenAICompatEngine
from rlm_dsl.runtime.lm.resolve import LiteLLMChatEngine
from tests.conftest import Reply, answering, failure, ok

# LiteLLM's first completion in a process builds a pydantic schema for a TypedDict of its own
# (GitHub Copilot's device code) and pydantic warns about it; nothing here causes it.
pytestmark = pytest.mark.filterwarnings("ignore:Item.*ReadOnly:UserWarning")

def _request(text: str = "hello", **config: object) -> Request:
    return Request(model="openai/m", system="be brief", messages=(Message.user(text),),
                   config=LMConfig(**config))


def _engines(url: str, **options: object) -> tuple[object, object]:
    fast = resolve_lm("openai/m", {"api_base": url, "api_key": "sk-1", **options}).engine
    slow = resolve_lm("openai/m", {"api_base": url, "api_key": "sk-1", "engine": "litellm",
                                   **options}).engine
    return fast, slow


def test_openai_compatible_models_get_the_async_engine_and_others_keep_litellm(serve):
    server = serve(lambda body, n: ok("hi"))
    fast, slow = _engines(server.url)
    assert isinstance(fast, OpenAICompatEngine) and fast.wire_model == "m"
    assert isinstance(slow, LiteLLMChatEngine)
    hosted = resolve_lm("hosted_vllm/qwen", {"api_base": server.url}).engine
    assert isinstance(hosted, OpenAICompatEngine) and hosted.base_url == server.url
    assert isinstance(resolve_lm("anthropic/claude-3-5-haiku-latest", {}).engine,
                      LiteLLMChatEngine)
    assert isinstance(resolve_lm("openai/gpt-4o-mini", {}).engine, LiteLLMChatEngine)
    with pytest.raises(LMError, match="engine must be one of async, litellm, got 'fast'"):
        resolve_lm("openai/m", {"api_base": server.url, "engine": "fast"})


def test_the_same_request_body_and_answer_as_through_litellm(serve):
    server = serve(lambda body, n: ok("the answer"))
    fast, slow = _engines(server.url)
    request = _request("what is it?", temperature=0.3, max_tokens=50, stop=("END",))
    answers = [engine.complete(request) for engine in (fast, slow)]
    keys = ("model", "messages", "temperature", "stop")
    sent = [{k: body.get(k) for k in keys} for body in server.bodies]
    assert sent[0] == sent[1]
    assert sent[0]["model"] == "m"
    assert [b.get("max_tokens") or b.get("max_completion_tokens") for b in server.bodies] == [
        50, 50]
    assert answers[0].model == answers[1].model
    for reply in answers:
        assert reply.text == "the answer"
        assert reply.finish_reason == "stop"
        assert (reply.usage.input_tokens, reply.usage.output_tokens) == (12, 5)
    fast.close()
    with pytest.raises(ConfigurationError):
        fast.complete(request)


@pytest.mark.parametrize(("reply", "expected"), [
    (failure(429, headers={"Retry-After": "2"}), RateLimitError),
    (failure(500), ServerError),
    (failure(503), ServerError),
    (failure(401, "invalid_api_key"), AuthError),
    (failure(400, "context_length_exceeded"), ContextLengthError),
    (failure(400), InvalidRequestError),
])
def test_http_errors_become_the_same_lm_errors_as_through_litellm(serve, reply, expected):
    server = serve(lambda body, n: reply)
    fast, slow = _engines(server.url)
    errors = []
    for engine in (fast, slow):
        with pytest.raises(expected) as caught:
            engine.complete(_request())
        errors.append(caught.value)
    assert type(errors[0]) is type(errors[1])
    assert is_retryable_lm_error(errors[0]) == is_retryable_lm_error(errors[1])
    if expected is RateLimitError:
        assert errors[0].retry_after == errors[1].retry_after == 2.0


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_both_clients_give_the_same_answers_and_errors(serve, client):
    server = serve(lambda body, n: ok("fine") if n == 0 else failure(429, headers={
        "Retry-After": "3"}))
    engine = OpenAICompatEngine(base_url=server.url, wire_model="m", api_key="k", client=client)
    assert engine.complete(_request()).text == "fine"
    with pytest.raises(RateLimitError) as caught:
        engine.complete(_request())
    assert caught.value.retry_after == 3.0
    engine.close()


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_timeouts_and_unreachable_servers_are_transport_errors(serve, client):
    server = serve(lambda body, n: ok("late", wait=2.0))
    late = OpenAICompatEngine(base_url=server.url, wire_model="m", timeout=0.2, client=client)
    started = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"did not answer in 0.2 s"):
        late.complete(_request())
    assert time.perf_counter() - started < 1.5
    gone = OpenAICompatEngine(base_url="http://127.0.0.1:9/v1", wire_model="m", client=client)
    with pytest.raises(TransportError, match=r"cannot reach http://127.0.0.1:9/v1"):
        gone.complete(_request())


SPEC = '''
recipe fanout "Count marked lines remotely."
lm remote = "openai/m" with api_base="{base}"{extra}
input items: lines
chunk items -> pieces by lines(1)
map pieces -> n: int using remote """
  COUNT "mark"
  {{{{ chunk.text }}}}
"""
output n
'''


def _run(tmp_path: Path, base: str, lines: int = 12, extra: str = "",
         **options: object) -> tuple[object, Path]:
    data = tmp_path / "items.txt"
    data.write_text("".join(f"item {i} {'mark' if i % 3 == 0 else 'plain'}\n"
                            for i in range(lines)))
    spec = tmp_path / "fanout.rlm"
    spec.write_text(textwrap.dedent(SPEC.format(base=base, extra=extra)).lstrip())
    db = tmp_path / "run.duckdb"
    result = execute(compile_file(spec), RunOptions(inputs={"items": str(data)}, db=str(db),
                                                    **options))
    return result, db


def test_a_map_runs_concurrently_to_the_limit_and_a_second_run_is_cached(serve, tmp_path):
    server = serve(lambda body, n: (*answering(body, n)[:3], 0.15))
    result, _ = _run(tmp_path, server.url, lines=24, concurrency=8)
    assert result.outputs["n"] == [1 if i % 3 == 0 else 0 for i in range(24)]
    assert len(server.bodies) == 24
    assert 4 <= server.peak <= 8
    again, _ = _run(tmp_path, server.url, lines=24, concurrency=8)
    assert again.outputs["n"] == result.outputs["n"]
    assert len(server.bodies) == 24  # a finished run sends nothing again


def test_without_a_key_no_authorization_header_is_sent(serve):
    server = serve(lambda body, n: ok("hi"))
    assert resolve_lm("openai/m", {"api_base": server.url}).make_lm()("x") == ["hi"]
    assert "authorization" not in {k.lower() for k in server.headers[0]}
    resolve_lm("openai/m", {"api_base": server.url, "api_key": "sk-9"}).make_lm()("x")
    assert server.headers[1]["Authorization"] == "Bearer sk-9"


def test_a_failed_call_is_retried_and_recorded(serve, tmp_path):
    def script(body: dict, number: int) -> Reply:
        return failure(503) if number == 0 else answering(body, number)

    server = serve(script)
    result, db = _run(tmp_path, server.url, lines=3, concurrency=1)
    assert result.outputs["n"] == [1, 0, 0]
    assert result.summary["failures"] == 0
    assert len(server.bodies) == 4
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        errors = [r[0] for r in con.execute("SELECT error FROM lm_calls ORDER BY started_at")
                  .fetchall()]
    assert errors[0].startswith("ServerError") and errors[1:] == [None, None, None]


def test_a_timeout_fails_only_its_chunk(serve, tmp_path):
    def script(body: dict, number: int) -> Reply:
        late = "item 1 " in body["messages"][-1]["content"]
        return (*answering(body, number)[:3], 3.0 if late else 0.0)

    server = serve(script)
    with pytest.raises(RowsFailed) as failed:  # exit 4: chunk 1 failed (the run contract)
        _run(tmp_path, server.url, lines=3, extra=', timeout=1', concurrency=1)
    result = failed.value.result
    assert result.outputs["n"] == [1, 0]
    assert result.summary["failures"] == 1
    assert len(server.bodies) == 5  # chunk 1 was tried three times (two retries)


def test_the_budget_stops_the_run_and_the_resumed_run_sends_only_the_rest(serve, tmp_path):
    server = serve(answering)
    with pytest.raises(BudgetExhausted):
        _run(tmp_path, server.url, lines=10, concurrency=1, max_calls=4)
    assert len(server.bodies) == 4
    result, _ = _run(tmp_path, server.url, lines=10, concurrency=1)
    assert result.outputs["n"] == [1 if i % 3 == 0 else 0 for i in range(10)]
    sent = [body["messages"][-1]["content"] for body in server.bodies]
    assert len(sent) == 10 and len(set(sent)) == 10
