"""The call gate and its budgets: caps, concurrency, the store cache, retries in the cache key,
rate-limit windows."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest
from dspy.lm15 import Config, Message, Request, Response, TextPart, Usage

from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.lm.gate import (
    Gate,
    GatedEngine,
    RunLedger,
    Scope,
    cache_key,
    call_scope,
    current_scope,
    request_messages,
    set_scope,
)
from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer


def test_budget_caps_calls_and_tokens():
    budget = Budget(max_calls=2, max_tokens=100)
    budget.reserve(10, priced=False)
    budget.settle(60, None)
    with pytest.raises(BudgetExhausted, match="--max-tokens 100 reached"):
        budget.reserve(50, priced=False)
    budget = Budget(max_calls=1, max_usd=0.01)
    budget.reserve(0, priced=True)
    with pytest.raises(BudgetExhausted, match="--max-calls 1 reached"):
        budget.reserve(0, priced=True)
    assert str(budget.exhausted) == "budget exhausted: --max-calls 1 reached"


class _Inner:
    """An engine that sleeps a little and tracks how many calls run at once."""

    def __init__(self) -> None:
        self.active = self.peak = self.calls = 0
        self.lock = threading.Lock()

    def complete(self, request: Request) -> Response:
        with self.lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.02)
        with self.lock:
            self.active -= 1
        return Response(id=None, model="fake", message=Message.assistant([TextPart("ok")]),
                        finish_reason="stop", usage=Usage(input_tokens=7, output_tokens=1,
                                                          total_tokens=8))


@pytest.fixture
def ledger():
    store = Store.open(None)
    writer = Writer(store)
    yield RunLedger.open(writer, "run-1", Budget())
    writer.close()
    store.close()


def test_gate_limits_concurrency_caches_and_records(ledger):
    inner = _Inner()
    gate = Gate("fake", ledger, count_tokens=len, price=(0.001, 0.002), concurrency=2)
    engine = GatedEngine(inner, gate)
    requests = [Request(model="fake", messages=(Message.user(f"q{i % 4}"),)) for i in range(8)]

    def ask(i: int) -> None:
        with call_scope(step="map-x", chunk_id=i):
            engine.complete(requests[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert inner.peak == 2 and inner.calls == 4
    for i in range(4, 8):  # the same four prompts again: answered from the cache
        ask(i)
    assert inner.calls == 4 and ledger.cache_hits == 4
    ledger.writer.flush()
    rows = ledger.writer.store.con.execute(
        "SELECT chunk_id, cached, prompt_tokens, cost_usd FROM lm_calls ORDER BY chunk_id"
    ).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(i, i >= 4) for i in range(8)]
    assert rows[0][2:] == (7, pytest.approx(0.009))
    assert ledger.budget.calls == 4 and ledger.budget.usd == pytest.approx(0.036)


def test_gate_refuses_before_calling_when_budget_is_spent(ledger):
    inner = _Inner()
    ledger.budget.max_calls = 1
    engine = GatedEngine(inner, Gate("fake", ledger, count_tokens=len))
    engine.complete(Request(model="fake", messages=(Message.user("one"),)))
    with pytest.raises(BudgetExhausted):
        engine.complete(Request(model="fake", messages=(Message.user("two"),)))
    assert inner.calls == 1


def test_retry_attempt_is_part_of_the_cache_key(ledger):
    inner = _Inner()
    engine = GatedEngine(inner, Gate("fake", ledger, count_tokens=len))
    request = Request(model="fake", messages=(Message.user("same"),))
    engine.complete(request)
    with call_scope(attempt=1):
        engine.complete(request)
    assert inner.calls == 2


@pytest.mark.parametrize(("request_", "attempt", "digest"), [
    (Request(model="m", messages=(Message.user("hello ✓"),), system="You are terse."), 0,
     "bccbc9820a31145f9277d8793a219d9ae81cc2d9c00e49127cd4858be16c91d9"),
    (Request(model="m", messages=(Message.user("hello"),)), 1,
     "cd111a5e382c14734cce21752283ff0afdc1ee5b160c0c192258edc38b7c7e41"),
    (Request(model="m", messages=(Message.user("a"), Message.assistant("b"), Message.user("c")),
             system="S", config=Config(temperature=0.5, max_tokens=9)), 0,
     "0e5256c53ef1a19105fc872d97b9779ff1a6cdd0f194e81202200612aea6936b"),
    (Request(model="m", messages=(Message.user("x"),), system="S",  # unhashable settings
             config=Config(response_format={"type": "json_object"})), 1,
     "b19f7dfa0e3d035ee29221b95747f483c0e55e46846b8f9403e1eecf5ca53eca"),
])
def test_cache_keys_are_those_earlier_runs_stored(request_, attempt, digest):
    """The digests the key had before its hash prefix was memoised: a resume across versions
    still finds its finished calls. Asked twice (the second from the memo)."""
    messages = request_messages(request_)
    assert cache_key("test", messages, request_, attempt) == digest
    assert cache_key("test", messages, request_, attempt) == digest


def test_rate_limits_wait_for_the_minute_window(ledger, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("rlm_dsl.runtime.lm.gate.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("rlm_dsl.runtime.lm.gate.time.sleep",
                        lambda s: clock.__setitem__(0, clock[0] + s))
    gate = Gate("fake", ledger, count_tokens=len, rpm=2, tpm=1000)
    for _ in range(2):
        gate.wait_for_rate(10)
    assert clock[0] == 100.0
    gate.wait_for_rate(10)  # a third request in the same minute waits for the window
    assert clock[0] >= 160.0
    gate.wait_for_rate(990)  # fits the token budget once the older requests left the window
    assert clock[0] >= 160.0


def test_a_call_scope_changes_only_its_fields_and_refuses_unknown_ones():
    with call_scope(step="map-x", chunk_id=3, parent_id="0"):
        with call_scope(depth=2, attempt=1) as inner:
            assert inner == Scope("map-x", 3, 2, "0", 1)
            assert current_scope() == inner
        assert current_scope() == Scope("map-x", 3, 0, "0", 0)
    assert current_scope() == Scope()
    with pytest.raises(ValueError, match="chunk"), call_scope(chunk=1):
        pass


def test_set_scope_lasts_for_its_context_copy_only():
    def job() -> tuple[Scope, Scope]:
        first = set_scope(step="map-x", chunk_id=4)
        with call_scope(attempt=1):
            pass
        return first, current_scope()

    with call_scope(parent_id="0"):
        first, after = contextvars.copy_context().run(job)
        assert first == after == Scope("map-x", 4, 0, "0", 0)
        assert current_scope() == Scope(parent_id="0")  # the caller's scope is untouched
    with pytest.raises(ValueError, match="chunk"):
        contextvars.copy_context().run(set_scope, chunk=1)


class _Cut:
    """An engine whose every answer stops at max_tokens."""

    def complete(self, request: Request) -> Response:
        return Response(id=None, model="fake", message=Message.assistant([TextPart("[[ ## a")]),
                        finish_reason="length", usage=Usage(input_tokens=7, output_tokens=8,
                                                            total_tokens=15))


def test_an_answer_cut_at_max_tokens_is_counted_for_its_step_not_logged_by_dspy(ledger):
    import logging

    import dspy

    from rlm_dsl.runtime.runinfo import summary_line

    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger = logging.getLogger("dspy.clients.lm")
    logger.addHandler(handler)
    try:
        lm = dspy.LM("fake", engine=GatedEngine(_Cut(), Gate("fake", ledger, count_tokens=len)),
                     num_retries=0, cache=False)
        with call_scope(step="map-label"):
            lm("one")
            lm("two")
    finally:
        logger.removeHandler(handler)
    assert [r.getMessage() for r in seen if "truncated" in r.getMessage()] == []
    assert ledger.truncated == {"map-label": 2}
    line = summary_line({"calls": 2, "cache_hits": 0, "tokens": 30, "cost_usd": None,
                         "wall_s": 0.1, "failures": 0, "truncated": {"map-label": 2}})
    assert "2 answers of map-label stopped at max_tokens" in line
