"""The LM call gate: every LM call of a run passes through one :class:`GatedEngine`.

Runtime stage between the step modules and the LM back ends. Each model gets one ``dspy.LM``
whose engine is ``GatedEngine(inner, gate)``; before a request reaches ``inner`` the gate answers
it from the run's cache (finished ``lm_calls`` rows of the same ``--db``, keyed by model, rendered
messages, settings and retry attempt), checks the :class:`~rlm_dsl.runtime.lm.budget.Budget`, waits
for a per-LM concurrency slot and the rate limits (requests/min, tokens/min), then records the
call — step, chunk id, depth, parent, tokens, cost, latency, error — as it completes. Where a
call belongs comes from :func:`call_scope`, a contextvar the executor sets around each chunk and
copies into worker threads (``contextvars.copy_context``). An answer cut off at ``max_tokens`` is
counted per step for the run summary, in place of DSPy's own warning (which names no step and
would print on stderr in the middle of a run).
"""

from __future__ import annotations

import contextvars
import hashlib
import itertools
import logging
import queue
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from dspy.lm15 import Message, Request, Response, TextPart, Usage, response_to_events

from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.writer import Writer


class Scope(NamedTuple):
    """Where an LM call belongs: step id, chunk id, recursion depth, parent call, retry attempt.

    A named tuple: one is made for every chunk and retry, and ``_replace`` is the cheapest copy.
    """

    step: str | None = None
    chunk_id: int | None = None
    depth: int = 0
    parent_id: str | None = None
    attempt: int = 0


_ROOT = Scope()
_FIELDS = frozenset(Scope._fields)
_SCOPE: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("rlm_call", default=None)


def current_scope() -> Scope:
    return _SCOPE.get() or _ROOT


class call_scope:  # lower case: used like a function, ``with call_scope(step=…):``
    """Set fields of the current :class:`Scope` (``step=``, ``chunk_id=``, ``depth=`` …).

    A small class rather than a generator context manager: it is entered around every call.
    """

    __slots__ = ("changes", "token")

    def __init__(self, **changes: Any) -> None:
        self.changes = changes

    def __enter__(self) -> Scope:
        scope = _changed(self.changes)
        self.token = _SCOPE.set(scope)
        return scope

    def __exit__(self, *exc: object) -> None:
        _SCOPE.reset(self.token)


def set_scope(**changes: Any) -> Scope:
    """Set fields of the current :class:`Scope` for the rest of the current context, without a
    reset: for a job that runs in its own context copy (``Context.run``), which is dropped after."""
    scope = _changed(changes)
    _SCOPE.set(scope)
    return scope


def _changed(changes: dict[str, Any]) -> Scope:
    if not changes.keys() <= _FIELDS:
        raise ValueError(f"not Scope fields: {sorted(changes.keys() - _FIELDS)}")
    # the current scope's fields with the changed ones over them: _replace's work without its
    # keyword-argument checks (half the cost)
    return tuple.__new__(Scope, map(changes.get, Scope._fields, _SCOPE.get() or _ROOT))


@dataclass
class RunLedger:
    """What every gate of one run shares: store writer, cache, budget and run totals."""

    writer: Writer
    run_id: str
    budget: Budget = field(default_factory=Budget)
    cache: dict[str, str] = field(default_factory=dict)
    cache_hits: int = 0
    step_budgets: dict[str, Budget] = field(default_factory=dict)  # step key → its own caps
    truncated: Counter[str] = field(default_factory=Counter)  # step → answers cut at max_tokens
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _ids: Iterator[int] = field(default_factory=itertools.count, repr=False)

    @classmethod
    def open(cls, writer: Writer, run_id: str, budget: Budget) -> RunLedger:
        """A ledger whose cache holds every finished, error-free call already in the store."""
        return cls(writer=writer, run_id=run_id, budget=budget,
                   cache=queries.cached_responses(writer.store))

    def budgets_for(self, step: str | None) -> tuple[Budget, ...]:
        """The run's budget, and the step's own when it has one."""
        own = self.step_budgets.get(step) if step is not None else None
        return (self.budget,) if own is None else (self.budget, own)

    def new_call_id(self) -> str:
        return f"{self.run_id[:8]}-{next(self._ids)}"

    def hit(self) -> None:
        with self._lock:
            self.cache_hits += 1

    def cut_off(self, step: str | None) -> None:
        """Count an answer that stopped at ``max_tokens`` against ``step``."""
        with self._lock:
            self.truncated[step or "(no step)"] += 1


class Slots:
    """At most ``n`` holders at once (``with slots:``): a C-level queue of ``n`` tokens, where
    ``threading.BoundedSemaphore`` runs a Python condition variable (~3 µs a call). A wait is
    interruptible by Ctrl-C like a lock's."""

    __slots__ = ("_tokens",)

    def __init__(self, n: int) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(n):
            self._tokens.put(None)

    def __enter__(self) -> None:
        self._tokens.get()

    def __exit__(self, *exc: object) -> None:
        self._tokens.put(None)


@dataclass
class Gate:
    """Per-model call policy: ledger, token counter, price, concurrency and rate limits."""

    model: str
    ledger: RunLedger
    count_tokens: Callable[[str], int]
    price: tuple[float, float] | None = None
    concurrency: int = 8
    rpm: float | None = None
    tpm: float | None = None
    _slots: Slots = field(init=False, repr=False)
    _window: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _rate_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._slots = Slots(max(1, self.concurrency))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        if self.price is None:
            return None
        return prompt_tokens * self.price[0] + completion_tokens * self.price[1]

    def wait_for_rate(self, tokens: int) -> None:
        """Sleep until one more request of ``tokens`` tokens fits the per-minute limits."""
        if self.rpm is None and self.tpm is None:
            return
        while True:
            with self._rate_lock:
                now = time.monotonic()
                while self._window and now - self._window[0][0] >= 60.0:
                    self._window.popleft()
                used = sum(t for _, t in self._window)
                if (self.rpm is None or len(self._window) < self.rpm) and (
                    self.tpm is None or not self._window or used + tokens <= self.tpm
                ):
                    self._window.append((now, tokens))
                    return
                wait = 60.0 - (now - self._window[0][0])
            time.sleep(min(max(wait, 0.01), 1.0))


def request_messages(request: Request) -> list[dict[str, str]]:
    """The request as OpenAI-style ``[{role, content}]`` (system first), for keys and records."""
    messages = []
    if request.system is not None:
        system = (
            request.system
            if isinstance(request.system, str)
            else "".join(getattr(p, "text", "") or "" for p in request.system)
        )
        messages.append({"role": "system", "content": system})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


def cache_key(model: str, messages: list[dict[str, str]], request: Request, attempt: int) -> str:
    """SHA-256 of the model, settings, attempt and length-prefixed messages (so no two message
    lists hash alike). The hash state after the first message is kept per model, settings,
    attempt and message (:data:`_KEY_PREFIXES`): the calls of one step share their system
    message, and hashing it with the settings' ``repr`` again was a third of a gated call."""
    try:
        lookup = (model, request.config, attempt, messages[0]["role"], messages[0]["content"])
        prefix = _KEY_PREFIXES.get(lookup)
    except (TypeError, IndexError):  # unhashable settings (a dict response_format), no messages
        lookup, prefix = None, None
    if prefix is None:
        prefix = hashlib.sha256(f"{model}\0{request.config!r}\0{attempt}".encode())
        if messages:
            prefix.update(_message_bytes(messages[0]))
        if lookup is not None:
            if len(_KEY_PREFIXES) >= 256:  # a bounded memo: steps x attempts x settings
                _KEY_PREFIXES.clear()
            _KEY_PREFIXES[lookup] = prefix
    digest = prefix.copy()
    for message in messages[1:]:
        digest.update(_message_bytes(message))
    return digest.hexdigest()


_KEY_PREFIXES: dict[tuple[Any, ...], Any] = {}


def _message_bytes(message: dict[str, str]) -> bytes:
    role, content = message["role"].encode(), message["content"].encode()
    return b"".join((len(role).to_bytes(8, "big"), role, len(content).to_bytes(8, "big"), content))


def response_text(response: Response) -> str:
    return "".join(getattr(p, "text", "") or "" for p in response.message.parts)


class GatedEngine:
    """A DSPy engine that gates, caches and records every request to ``inner``."""

    def __init__(self, inner: Any, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    def complete(self, request: Request) -> Response:
        gate, ledger = self.gate, self.gate.ledger
        scope = _SCOPE.get() or _ROOT
        messages = request_messages(request)
        key = cache_key(gate.model, messages, request, scope.attempt)
        cached = ledger.cache.get(key)
        if cached is not None:
            ledger.hit()
            response = _text_response(gate.model, cached)
            self._record(scope, key, messages, response, datetime.now(UTC), time.perf_counter(),
                         (), text=cached, cached=True)
            return response
        budgets = ledger.budgets_for(scope.step)
        estimate = _estimate(gate, budgets, messages)
        reserve_all(budgets, estimate, gate.price is not None, scope.depth)
        gate.wait_for_rate(estimate)
        started, t0 = datetime.now(UTC), time.perf_counter()
        with gate._slots:
            try:
                response = self.inner.complete(request)
            except Exception as exc:
                self._record(scope, key, messages, None, started, t0, budgets, error=exc)
                raise
        text = response_text(response)
        self._record(scope, key, messages, response, started, t0, budgets, text=text)
        ledger.cache[key] = text
        if response.finish_reason == "length":
            ledger.cut_off(scope.step)
        return response

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()

    def _record(
        self,
        scope: Scope,
        key: str,
        messages: list[dict[str, str]],
        response: Response | None,
        started: datetime,
        t0: float,
        budgets: tuple[Budget, ...],
        text: str | None = None,
        error: BaseException | None = None,
        cached: bool = False,
    ) -> None:
        """Settle the call in ``budgets`` (none for a cached answer) and queue its row."""
        gate, ledger = self.gate, self.gate.ledger
        usage = response.usage if response is not None else None
        prompt_tokens = (usage.input_tokens or 0) if usage else 0
        completion_tokens = (usage.output_tokens or 0) if usage else 0
        cost = gate.cost(prompt_tokens, completion_tokens)
        for budget in budgets:
            budget.settle(prompt_tokens + completion_tokens, cost)
        ledger.writer.add(
            "lm_calls",
            {
                "call_id": ledger.new_call_id(),
                "run_id": ledger.run_id,
                "step": scope.step,
                "chunk_id": scope.chunk_id,
                "depth": scope.depth,
                "parent_id": scope.parent_id,
                "model": gate.model,
                "cache_key": key,
                "messages": messages,
                "response": text,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost_usd": cost,
                "latency_s": round(time.perf_counter() - t0, 6),
                "cached": cached,
                "error": None if error is None else f"{type(error).__name__}: {error}",
                "started_at": started.isoformat(),
            },
        )


def reserve_all(budgets: tuple[Budget, ...], tokens: int, priced: bool, depth: int) -> None:
    """Claim the call in every budget, or in none (the refusal is raised)."""
    for i, budget in enumerate(budgets):
        try:
            budget.reserve(tokens, priced, depth)
        except BudgetExhausted:
            for claimed in budgets[:i]:
                claimed.release(depth)
            raise


def _estimate(gate: Gate, budgets: tuple[Budget, ...], messages: list[dict[str, str]]) -> int:
    """Prompt tokens, counted only when a token cap or limit needs them (counting costs time)."""
    if gate.tpm is None and all(b.max_tokens is None for b in budgets):
        return 0
    return sum(gate.count_tokens(m["content"]) for m in messages)


def _text_response(model: str, text: str) -> Response:
    return Response(
        id=None,
        model=model,
        message=Message.assistant([TextPart(text)]),
        finish_reason="stop",
        usage=Usage(input_tokens=0, output_tokens=0, total_tokens=0),
    )


def new_run_id() -> str:
    return uuid.uuid4().hex


def _not_dspy_truncation_warning(record: logging.LogRecord) -> bool:
    """False for DSPy's "LM response was truncated" warning: the gate counts those per step."""
    return not record.getMessage().startswith("LM response was truncated")


logging.getLogger("dspy.clients.lm").addFilter(_not_dspy_truncation_warning)
