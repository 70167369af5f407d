"""Unit tests of the executor's parts: signatures, budget, call gate, test LM, API, step kinds."""

from __future__ import annotations

import threading
import time
from typing import Literal

import dspy
import pytest
from dspy.lm15 import Message, Request, Response, TextPart, Usage

import rlm_dsl
from rlm_dsl.compiler.types import Enum, Field, ListOf, Optional, Prim, Record
from rlm_dsl.errors import BudgetExhausted, LMError
from rlm_dsl.runtime.budget import Budget
from rlm_dsl.runtime.calls import Gate, GatedEngine, RunLedger, call_scope
from rlm_dsl.runtime.signatures import annotation, combine, duckdb_type, make_signature
from rlm_dsl.runtime.store import Store
from rlm_dsl.runtime.testing import compute, parse_options
from rlm_dsl.runtime.writer import Writer

INCIDENT = Record("Incident", (Field("at", Prim("str")), Field("severity", Enum(("low", "high")))))


def test_signature_is_readable_and_typed():
    sig = make_signature("map", "incidents", ListOf(INCIDENT), "Find incidents.")
    assert sig.__name__ == "MapIncidents"
    assert list(sig.input_fields) == ["prompt"] and list(sig.output_fields) == ["incidents"]
    assert sig.instructions == "Find incidents."
    assert annotation(Enum(("a", "b"))) == Literal["a", "b"]
    assert annotation(Optional(Prim("int"))) == int | None


def test_duckdb_types():
    assert duckdb_type(ListOf(INCIDENT)) == 'STRUCT("at" VARCHAR, "severity" VARCHAR)[]'
    assert duckdb_type(Optional(Prim("float"))) == "DOUBLE"
    assert duckdb_type(ListOf(Prim("bool"))) == "BOOLEAN[]"


@pytest.mark.parametrize(("t", "parts", "expected"), [
    (ListOf(Prim("str")), [["a"], None, ["b", "c"]], ["a", "b", "c"]),
    (Prim("int"), [2, 3, 4], 9),
    (Prim("bool"), [False, True], True),
    (Prim("str"), ["left", "", "right"], "left\nright"),
    (Enum(("x", "y")), ["y", "x", "x", "y"], "y"),
    (INCIDENT, [{"at": "a", "severity": "low"}, {"at": "b", "severity": "high"},
                {"at": "c", "severity": "high"}], {"at": "a\nb\nc", "severity": "high"}),
])
def test_combine_by_type(t, parts, expected):
    assert combine(t, parts) == expected


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


@pytest.mark.parametrize(("prompt", "kind", "answer"), [
    ('COUNT "err"\nerr one\nok\nerr two', "int", "2"),
    ('FIND "key"\nno\nthe key is here\n', "list[str]", '["the key is here"]'),
    ('FIND "key"\nnothing\n', "str", "NONE"),
    ("LABELS\nq label=human\nq label=entity\nq none", "list[str]", '["human", "entity"]'),
    ("NUMBERS\n[3, 1]\n[\"record 2\"]", "list[int]", "[3, 1, 2]"),
    ('MERGE\n[["a"], ["b", "a"], []]', "list[str]", '["a", "b"]'),
    ("SUM\n[4, 5]", "int", "9"),
    ('YES IF "x"\nabc\nxyz', "bool", "True"),
    ("just text\nmore", "str", "just text"),
    ("Where is the human here?", "Literal['entity', 'human']", "human"),
    ("No label word", "Literal['entity', 'human']", "entity"),
    ("no number here", "Union[int, NoneType]", "0"),  # an int? answer is still an int
    ('COUNT "a"\na\nb\na', "Optional[int]", "2"),
])
def test_test_lm_conventions(prompt, kind, answer):
    assert compute(prompt, kind) == answer


def test_test_lm_options():
    assert parse_options("test:window=4096,fail=0.2", {"seed": 3}) == {
        "window": 4096, "fail": 0.2, "seed": 3}
    with pytest.raises(LMError, match="unknown test LM option"):
        parse_options("test:speed=9", {})


def test_load_returns_an_optimizable_module(spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a bad\nb ok\nc bad\n")
    path = spec('''
        recipe api "API."
        input items: lines
        chunk items -> pieces by lines(1)
        filter pieces where regex "bad"
        map pieces -> n: int with reason=true """
          COUNT "bad"
          {{ chunk.text }}
        """
        reduce n -> total: int by tree(fanin=2) """
          SUM
          {{ items | tojson }}
        """
        output total
    ''')
    program = rlm_dsl.load(path)
    assert isinstance(program, dspy.Module)
    names = [name for name, _ in program.named_predictors()]
    assert names == ["map-n.predict.predict", "reduce-total.predict"]
    result = program.run(inputs={"items": str(data)}, lm="test")
    assert result.outputs == {"total": 2}
    assert result.summary["calls"] == 3
    assert program(items=str(data), lm="test").total == 2


def test_use_runs_a_sub_recipe_per_row(spec, run_spec, tmp_path, query):
    spec('''
        recipe counter "Count words in one text."
        param word: str = "bad"
        input doc: text
        chunk doc -> parts by lines(2)
        map parts -> n: int """
          COUNT "{{ word }}"
          {{ chunk.text }}
        """
        reduce n -> total: int by tree(fanin=4) """
          SUM
          {{ items | tojson }}
        """
        output total
    ''', "counter.rlm")
    data = tmp_path / "tickets.csv"
    data.write_text("ticket,text\n1,bad\n2,ugly\n1,bad again\n1,fine\n2,ugly ugly\n")
    path = spec('''
        recipe main "Per ticket."
        input rows: csv
        use "counter.rlm" as counter
        chunk rows -> threads by column("ticket")
        map threads -> counts: int using recipe counter with params={word: "ugly"}
        output counts
    ''')
    db = tmp_path / "run.duckdb"
    result = run_spec(path, inputs={"rows": str(data)}, db=str(db))
    assert result.outputs["counts"] == [0, 2]
    tables = {r[0] for r in query(db, "SELECT table_name FROM duckdb_tables()")}
    assert {"map-counts__0__parts", "map-counts__1__n"} <= tables


def test_lm_filter_vote_and_record_fields(spec, run_spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a high\nb keep low\nc keep high\nd keep high\ne low\n")
    path = spec('''
        recipe kinds "Filter, map records, vote on a field."
        type Verdict { line: str, level: low | high }
        input items: lines
        chunk items -> pieces by lines(1)
        filter pieces where lm """
          YES IF "keep"
          {{ chunk.text }}
        """
        map pieces -> verdict: Verdict """
          {{ chunk.text }}
        """
        reduce verdict.level -> usual by vote
        output usual, verdict
    ''')
    data.write_text("a high\nb keep low\nc keep high\nd keep high\ne low\n")
    result = run_spec(path, inputs={"items": str(data)}, max_usd=1.0)
    assert [v["line"] for v in result.outputs["verdict"]] == ["b keep low", "c keep high",
                                                               "d keep high"]
    assert result.outputs["usual"] == "high"
    assert result.warnings == ["warning: no price is known for model 'test': --max-usd cannot "
                               "be enforced for its calls; only call and token caps apply"]


def test_rate_limits_wait_for_the_minute_window(ledger, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("rlm_dsl.runtime.calls.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("rlm_dsl.runtime.calls.time.sleep",
                        lambda s: clock.__setitem__(0, clock[0] + s))
    gate = Gate("fake", ledger, count_tokens=len, rpm=2, tpm=1000)
    for _ in range(2):
        gate.wait_for_rate(10)
    assert clock[0] == 100.0
    gate.wait_for_rate(10)  # a third request in the same minute waits for the window
    assert clock[0] >= 160.0
    gate.wait_for_rate(990)  # fits the token budget once the older requests left the window
    assert clock[0] >= 160.0
