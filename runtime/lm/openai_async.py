"""The async engine for OpenAI-compatible servers (runtime stage: LM back ends).

``openai/<name>`` with ``api_base`` (vLLM, SGLang, llama.cpp server, Ollama, LM Studio, a remote
gateway) and the providers LiteLLM routes to the same Chat Completions protocol skip LiteLLM:
:class:`OpenAICompatEngine` keeps DSPy's ``complete(Request) -> Response`` contract but sends
every request through one pooled, HTTP/2-capable ``httpx.AsyncClient`` on one event loop that
runs in a background thread (the runtime's workers are threads; each waits on its own future).
Everything LiteLLM would look up per call — provider, base URL, key, price, model map — is
resolved once when the model is bound. The wire format is DSPy's own lm15 Chat Completions
dialect (request body, response parsing, and the HTTP-status → lm15 error mapping), so answers
and errors are the ones the LiteLLM path gives, and the step's retries, the gate's rate limits,
budget and cache work unchanged. ``engine="litellm"`` in the model's options keeps LiteLLM.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from concurrent.futures import Future
from typing import Any

import httpx
from dspy.clients.engines.base import validate_request
from dspy.lm15 import (
    ConfigurationError,
    Request,
    Response,
    TimeoutError,
    TransportError,
    response_to_events,
)

# Providers LiteLLM itself sends as plain Chat Completions to an OpenAI-compatible URL (its
# ``get_llm_provider`` gives their base URL); ``openai`` only with an explicit ``api_base``,
# because OpenAI's own models get per-model parameter rewrites in LiteLLM.
COMPATIBLE_PROVIDERS = frozenset({"openai", "hosted_vllm", "lm_studio", "llamafile"})
ENGINES = ("async", "litellm")
DEFAULT_TIMEOUT_S = 600.0
_CONNECT_TIMEOUT_S = 10.0


def compatible_base(provider: str, api_base: str | None, routed_base: str | None) -> str | None:
    """The URL to send Chat Completions to when ``provider`` speaks them plainly, else None."""
    if provider not in COMPATIBLE_PROVIDERS:
        return None
    if provider == "openai":
        return api_base or None
    return api_base or routed_base or None


class _LoopThread:
    """One asyncio event loop in a daemon thread, started on first use, shared by the process;
    it keeps the connection pools opened on it so that it can close them when it stops."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.clients: set[httpx.AsyncClient] = set()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="rlm-http",
                                                daemon=True)
                self._thread.start()
            return self._loop

    def submit(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop())

    def stop(self) -> None:
        """Close every open pool, then the loop (at exit; a later call starts a new loop)."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        clients, self.clients = list(self.clients), set()
        if clients:
            asyncio.run_coroutine_threadsafe(_close_all(clients), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


async def _close_all(clients: list[httpx.AsyncClient]) -> None:
    await asyncio.gather(*(client.aclose() for client in clients), return_exceptions=True)


LOOP = _LoopThread()
atexit.register(LOOP.stop)


class OpenAICompatEngine:
    """``complete(Request) -> Response`` over one OpenAI-compatible base URL, via one pool.

    ``wire_model`` is the model name the server knows (``openai/qwen`` → ``qwen``); the gate keys,
    records and prices by the run's own model id, as with LiteLLM.
    """

    supports_function_calling = True
    supports_reasoning = False
    supports_response_schema = True

    def __init__(self, *, base_url: str, wire_model: str, api_key: str | None = None,
                 timeout: float | None = None, max_connections: int = 256) -> None:
        from dspy.lm15 import OpenAIChatLM

        self.base_url = base_url.rstrip("/")
        self.wire_model = wire_model
        # lm15 insists on a key; a local server often wants none, so none is sent then
        self._dialect = OpenAIChatLM(api_key=api_key or "none", base_url=self.base_url,
                                     transport=None)
        self._keyless = not api_key
        read = float(timeout) if timeout else DEFAULT_TIMEOUT_S
        self._timeout = httpx.Timeout(read, connect=min(read, _CONNECT_TIMEOUT_S))
        self._limits = httpx.Limits(max_connections=max_connections,
                                    max_keepalive_connections=max_connections)
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def complete(self, request: Request) -> Response:
        validate_request(request)
        if self._closed:
            raise ConfigurationError("Engine is closed")
        return LOOP.submit(self._complete(request)).result()

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Close the connection pool (on the loop that owns it); later calls are refused."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            LOOP.clients.discard(client)
            LOOP.submit(client.aclose()).result()

    async def _complete(self, request: Request) -> Response:
        from dataclasses import replace

        wire = replace(request, model=self.wire_model)
        outgoing = self._dialect.build_request(wire, stream=False)
        reply = await self._send(outgoing)
        if reply.status >= 400:
            raise self._dialect._http_error(reply)
        return self._dialect.parse_response(wire, reply)

    async def _send(self, outgoing: Any) -> Any:
        from dspy._vendor.lm15.providers.base import HttpResponse

        client = self._client or self._open()
        headers = outgoing.headers
        if self._keyless:
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
        try:
            answer = await client.request(outgoing.method, outgoing.url, headers=headers,
                                          content=outgoing.body)
        except httpx.TimeoutException as exc:
            raise TimeoutError(f"{self.base_url} did not answer in time ({_reason(exc)})") from exc
        except httpx.TransportError as exc:
            raise TransportError(f"cannot reach {self.base_url}: {_reason(exc)}") from exc
        return HttpResponse(status=answer.status_code, reason=answer.reason_phrase,
                            headers=list(answer.headers.items()), body=answer.content,
                            http_version=answer.http_version, provider="openai-chat")

    def _open(self) -> httpx.AsyncClient:
        """The pool, made on the loop's own thread the first time it is needed."""
        self._client = httpx.AsyncClient(http2=_has_h2(), timeout=self._timeout,
                                         limits=self._limits)
        LOOP.clients.add(self._client)
        return self._client


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _has_h2() -> bool:
    """HTTP/2 where the ``h2`` package is installed (it comes with LiteLLM's httpx extra)."""
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True
