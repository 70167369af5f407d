"""The async engine for OpenAI-compatible servers (runtime stage: LM back ends).

``openai/<name>`` with ``api_base`` (vLLM, SGLang, llama.cpp server, Ollama, LM Studio, a remote
gateway) and the providers LiteLLM routes to the same Chat Completions protocol skip LiteLLM:
:class:`OpenAICompatEngine` keeps DSPy's ``complete(Request) -> Response`` contract but sends
every request through one keep-alive connection pool on one event loop in a background thread
(:mod:`~rlm_dsl.runtime.lm.http_pool`: aiohttp for ``http://``, HTTP/2-capable httpx for
``https://``). Everything LiteLLM would look up per call — provider, base URL, key, price, model
map — is resolved once when the model is bound. The wire format is DSPy's own lm15 Chat
Completions dialect (request body, response parsing, the HTTP-status → lm15 error mapping), so
answers and errors are the ones the LiteLLM path gives, and the step's retries, the gate's rate
limits, budget and cache work unchanged. ``engine="litellm"`` in the model's options keeps LiteLLM.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from dspy._vendor.lm15.providers.base import HttpResponse
from dspy.clients.engines.base import validate_request
from dspy.lm15 import ConfigurationError, OpenAIChatLM, Request, Response, response_to_events

from rlm_dsl.runtime.lm.http_pool import LOOP, Pool

# Providers LiteLLM itself sends as plain Chat Completions to an OpenAI-compatible URL (its
# ``get_llm_provider`` gives their base URL); ``openai`` only with an explicit ``api_base``,
# because OpenAI's own models get per-model parameter rewrites in LiteLLM.
COMPATIBLE_PROVIDERS = frozenset({"openai", "hosted_vllm", "lm_studio", "llamafile"})
ENGINES = ("async", "litellm")
DEFAULT_TIMEOUT_S = 600.0


def compatible_base(provider: str, api_base: str | None, routed_base: str | None) -> str | None:
    """The URL to send Chat Completions to when ``provider`` speaks them plainly, else None."""
    if provider not in COMPATIBLE_PROVIDERS:
        return None
    if provider == "openai":
        return api_base or None
    return api_base or routed_base or None


class OpenAICompatEngine:
    """``complete(Request) -> Response`` over one OpenAI-compatible base URL, via one pool.

    ``wire_model`` is the model name the server knows (``openai/qwen`` → ``qwen``); the gate keys,
    records and prices by the run's own model id, as with LiteLLM.
    """

    supports_function_calling = True
    supports_reasoning = False
    supports_response_schema = True

    def __init__(self, *, base_url: str, wire_model: str, api_key: str | None = None,
                 timeout: float | None = None, client: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.wire_model = wire_model
        # lm15 insists on a key; a local server often wants none, so none is sent then
        self._dialect = OpenAIChatLM(api_key=api_key or "none", base_url=self.base_url,
                                     transport=None)
        self._keyless = not api_key
        self._pool = Pool(self.base_url, float(timeout) if timeout else DEFAULT_TIMEOUT_S,
                          client=client)
        self._closed = False

    def complete(self, request: Request) -> Response:
        """Build the body and parse the answer here, in the calling worker thread; only the
        exchange runs on the shared loop, whose one thread would otherwise do every call's JSON
        work in turn (a queue the replies wait in at concurrency 32 and more)."""
        validate_request(request)
        if self._closed:
            raise ConfigurationError("Engine is closed")
        wire = replace(request, model=self.wire_model)
        reply = LOOP.run(self._send(self._dialect.build_request(wire, stream=False)))
        if reply.status >= 400:
            raise self._dialect._http_error(reply)
        return self._dialect.parse_response(wire, reply)

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Close the connection pool (on the loop that owns it); later calls are refused."""
        self._closed = True
        LOOP.run(self._pool.aclose())

    async def _send(self, outgoing: Any) -> HttpResponse:
        headers = outgoing.headers
        if self._keyless:
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        return await self._pool.send(outgoing.method, outgoing.url, headers, outgoing.body)
