"""Model resolution: LiteLLM ids over real HTTP, the backend registry and bad-input messages."""

from __future__ import annotations

import dspy
import pytest

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm import ResolvedLM, default_model_id, register_backend, resolve_lm
from rlm_dsl.runtime.lm.resolve import probe_api_base


def _shout_answer(messages: list[dict]) -> str:
    content = messages[-1]["content"]
    if "[[ ## question ## ]]" not in content:
        return content.upper()
    question = content.split("[[ ## question ## ]]")[1].split("Respond")[0]
    return f"[[ ## answer ## ]]\n{question.strip().upper()}\n\n[[ ## completed ## ]]"


def test_openai_compatible_server_over_real_http(loopback):
    server = loopback(_shout_answer)
    resolved = resolve_lm("openai/loopback-model", {"api_base": server.url, "api_key": "sk-test"})
    predict = dspy.Predict("question -> answer")
    with dspy.context(lm=resolved.make_lm(), adapter=dspy.ChatAdapter()):
        result = predict(question="where is the needle?")
    assert result.answer == "WHERE IS THE NEEDLE?"
    assert server.requests[0]["model"] == "loopback-model"
    assert server.headers[0]["Authorization"] == "Bearer sk-test"


def test_options_reach_the_server(loopback, monkeypatch):
    server = loopback(_shout_answer)
    monkeypatch.setenv("LOOPBACK_KEY", "sk-env")
    options = {"api_base": server.url, "api_key_env": "LOOPBACK_KEY", "temperature": 0.25,
               "max_tokens": 77, "n_ctx": 4096}
    resolved = resolve_lm("openai/loopback-model", options)
    assert resolved.context_window == 4096
    assert resolved.price is None
    assert resolved.make_lm()("say hi") == ["SAY HI"]
    assert server.requests[0]["temperature"] == 0.25
    assert server.requests[0]["max_completion_tokens"] == 77
    assert server.headers[0]["Authorization"] == "Bearer sk-env"


def test_known_model_gets_window_and_price_from_litellm():
    resolved = resolve_lm("openai/gpt-4o-mini", {"api_key": "sk-unused"})
    assert resolved.context_window == 128000
    assert resolved.price == (1.5e-07, 6e-07)
    assert resolved.max_concurrency is None


def test_unknown_model_id():
    with pytest.raises(LMError) as info:
        resolve_lm("nonsense-model")
    assert str(info.value) == (
        "unknown model 'nonsense-model': LiteLLM knows no provider for it. Use a provider-prefixed "
        "LiteLLM id (openai/gpt-4o-mini, anthropic/<model>, ollama/<model>; openai/<name> with "
        "api_base for an OpenAI-compatible server), 'local', or 'local:/path/model.gguf'"
    )
    assert info.value.exit_code == 4


def test_unreachable_api_base(loopback):
    probe_api_base(loopback(_shout_answer).url, "openai/x")  # a live server passes the probe
    with pytest.raises(LMError) as info:
        resolve_lm("openai/m", {"api_base": "http://127.0.0.1:9/v1"})
    assert str(info.value) == (
        "cannot reach api_base http://127.0.0.1:9/v1 for model 'openai/m': Connection refused"
    )
    with pytest.raises(LMError, match=r"^api_base 'localhost:8000' for model 'openai/m' is not"):
        resolve_lm("openai/m", {"api_base": "localhost:8000"})


def test_unknown_option_and_missing_key_env(monkeypatch):
    expected = r"^unknown option\(s\) 'temprature' for model 'openai/gpt-4o-mini'; known: api_base"
    with pytest.raises(LMError, match=expected):
        resolve_lm("openai/gpt-4o-mini", {"temprature": 0})
    monkeypatch.delenv("RLM_NO_SUCH_KEY", raising=False)
    with pytest.raises(LMError) as info:
        resolve_lm("openai/gpt-4o-mini", {"api_key_env": "RLM_NO_SUCH_KEY"})
    assert str(info.value) == (
        "model 'openai/gpt-4o-mini': environment variable RLM_NO_SUCH_KEY (api_key_env) is not set"
    )


def test_registered_backend_claims_prefix(recorded):
    seen = []

    def factory(model_id, options):
        seen.append((model_id, options))
        return ResolvedLM(model_id=model_id, engine=recorded("[[ ## answer ## ]]\n42"),
                          context_window=1000, tokenizer=str.split)

    register_backend("fake", factory)
    resolved = resolve_lm("fake:seed=3", {"x": 1})
    assert seen == [("fake:seed=3", {"x": 1})]
    assert resolved.count_tokens("three short words") == 3
    assert resolved.token_counter.estimated is False
    with dspy.context(lm=resolved.make_lm(), adapter=dspy.ChatAdapter()):
        assert dspy.Predict("question -> answer")(question="q").answer == "42"


def test_default_model_id():
    assert default_model_id({}) == "local"
    assert default_model_id({"RLM_LM": " openai/gpt-4o-mini "}) == "openai/gpt-4o-mini"
