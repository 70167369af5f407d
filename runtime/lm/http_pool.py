"""Pooled async HTTP for the LM engines (runtime stage: LM back ends): one loop, two clients.

The runtime's workers are threads, so async I/O runs on one asyncio event loop in a daemon thread
(:data:`LOOP`), started on first use; a worker submits a coroutine and waits on its future. A
:class:`Pool` is one keep-alive connection pool on that loop, made lazily on the loop's thread:
``aiohttp`` for ``http://`` URLs — local and LAN model servers, which speak HTTP/1.1 (h2c needs
prior knowledge none of them offer) and where aiohttp's C parser costs a third of httpx's CPU per
request (0.3 against 1.0 ms, measured with 32 threads on this machine; httpcore also polls every
idle connection on each request) — and ``httpx`` with HTTP/2 (when ``h2`` is installed) for
``https://``, where one multiplexed connection carries every call. Both answer lm15's
``HttpResponse`` and raise lm15's ``TimeoutError`` / ``TransportError``.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from concurrent.futures import Future
from typing import Any

from dspy import lm15
from dspy._vendor.lm15.providers.base import HttpResponse

_CONNECT_TIMEOUT_S = 10.0


class _LoopThread:
    """One asyncio event loop in a daemon thread, shared by the process; it keeps the pools
    opened on it so that it can close them when it stops."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.pools: set[Pool] = set()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="rlm-http",
                                                daemon=True)
                self._thread.start()
            return self._loop

    def run(self, coroutine: Any) -> Any:
        """Run ``coroutine`` on the loop and wait for its result in the calling thread."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop())
        return future.result()

    def stop(self) -> None:
        """Close every open pool, then the loop (at exit; a later call starts a new loop)."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        pools, self.pools = list(self.pools), set()
        if pools:
            asyncio.run_coroutine_threadsafe(_close_all(pools), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


async def _close_all(pools: list[Pool]) -> None:
    await asyncio.gather(*(pool.aclose() for pool in pools), return_exceptions=True)


LOOP = _LoopThread()
atexit.register(LOOP.stop)


class Pool:
    """A keep-alive pool for one base URL; ``send`` and ``aclose`` run on :data:`LOOP`."""

    def __init__(self, base_url: str, timeout_s: float, max_connections: int = 256,
                 client: str | None = None) -> None:
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_connections = max_connections
        self.client = client or ("httpx" if base_url.startswith("https:") else "aiohttp")
        self._session: Any = None

    async def send(self, method: str, url: str, headers: list[tuple[str, str]],
                   body: bytes) -> HttpResponse:
        if self.client == "aiohttp":
            return await self._aiohttp(method, url, headers, body)
        return await self._httpx(method, url, headers, body)

    async def _aiohttp(self, method: str, url: str, headers: list[tuple[str, str]],
                       body: bytes) -> HttpResponse:
        import aiohttp  # imported when a pool first sends: a slow import most runs never need

        if self._session is None:
            LOOP.pools.add(self)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s,
                                              connect=min(self.timeout_s, _CONNECT_TIMEOUT_S)))
        try:
            async with self._session.request(method, url, headers=headers, data=body) as reply:
                content = await reply.read()
                return HttpResponse(status=reply.status, reason=reply.reason or "",
                                    headers=list(reply.headers.items()), body=content,
                                    http_version=f"HTTP/{reply.version.major}.{reply.version.minor}",
                                    provider="openai-chat")
        except TimeoutError as exc:  # asyncio's, and aiohttp's ServerTimeoutError
            raise self._late() from exc
        except aiohttp.ClientConnectionError as exc:
            raise self._unreachable(exc) from exc

    async def _httpx(self, method: str, url: str, headers: list[tuple[str, str]],
                     body: bytes) -> HttpResponse:
        import httpx  # imported when a pool first sends: only https:// servers use it

        if self._session is None:
            LOOP.pools.add(self)
            self._session = httpx.AsyncClient(
                http2=_has_h2(),
                timeout=httpx.Timeout(self.timeout_s,
                                      connect=min(self.timeout_s, _CONNECT_TIMEOUT_S)),
                limits=httpx.Limits(max_connections=self.max_connections,
                                    max_keepalive_connections=self.max_connections))
        try:
            reply = await self._session.request(method, url, headers=headers, content=body)
        except httpx.TimeoutException as exc:
            raise self._late() from exc
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        return HttpResponse(status=reply.status_code, reason=reply.reason_phrase,
                            headers=list(reply.headers.items()), body=reply.content,
                            http_version=reply.http_version, provider="openai-chat")

    def _late(self) -> lm15.TimeoutError:
        return lm15.TimeoutError(f"{self.base_url} did not answer in {self.timeout_s:g} s")

    def _unreachable(self, exc: BaseException) -> lm15.TransportError:
        reason = str(exc) or type(exc).__name__
        return lm15.TransportError(f"cannot reach {self.base_url}: {reason}")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        LOOP.pools.discard(self)
        if session is not None:
            await (session.close() if self.client == "aiohttp" else session.aclose())


def _has_h2() -> bool:
    """HTTP/2 where the ``h2`` package is installed (it comes with LiteLLM's httpx extra)."""
    try:
        import h2  # noqa: F401
    except ImportError:
        return False
    return True
