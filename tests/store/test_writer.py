"""The write-behind writer and the worker pool: rows reach the store without a flush when a batch
is due (written by the writer thread, or by the adding thread when that thread is late), batches
keep their order, and a failing job stops the pool with the budget stop preferred."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.runtime.steps.map import run_parallel
from rlm_dsl.runtime.steps.predict import BudgetStop
from rlm_dsl.runtime.store import writer as writer_module
from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer


@pytest.fixture
def store():
    store = Store.open(None)
    store.con.execute("CREATE TABLE t (id BIGINT, v VARCHAR)")
    yield store
    store.close()


def test_due_batches_are_written_by_the_writer_thread_not_the_adding_one(store, monkeypatch):
    # a worker that writes a batch holds its next LM call back by the batch's write
    monkeypatch.setattr(writer_module, "FLUSH_EVERY_S", 0.2)
    writers: list[str] = []
    write = Writer._write

    def recorded(self, batch):
        writers.append(threading.current_thread().name)
        write(self, batch)

    monkeypatch.setattr(Writer, "_write", recorded)
    writer = Writer(store)
    for i in range(60):  # 0.6 s of adds: the batches fall due while rows keep coming
        writer.add("t", {"id": i, "v": f"row {i}"})
        if i == 5:  # a flush (a step's end) moves the next batch's due time off the thread's tick
            writer.flush()
            writers.clear()
        time.sleep(0.01)
    assert len(writers) >= 2 and set(writers) == {"rlm-store-writer"}
    writer.close()
    assert store.con.execute("SELECT count(*) FROM t").fetchone() == (60,)


def test_a_batch_the_writer_thread_leaves_is_written_by_the_adding_thread(store, monkeypatch):
    monkeypatch.setattr(writer_module, "FLUSH_EVERY_S", 0.0)  # every add finds a batch late
    writer = Writer(store)
    writer._stop.set()  # no background writes: only the adding thread can have written
    writer._thread.join()
    for i in range(3):
        writer.add("t", {"id": i, "v": f"row {i}"})
        assert store.con.execute("SELECT max(id) FROM t").fetchone() == (i,)
    writer.close()


def test_flush_writes_in_order_from_many_threads(store):
    writer = Writer(store)

    def add(start: int) -> None:
        for i in range(start, start + 200):
            writer.add("t", {"id": i, "v": str(i)})

    threads = [threading.Thread(target=add, args=(k * 200,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.flush()
    assert store.con.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (800, 800)
    for k in range(4):  # one thread's rows keep their order
        ids = [r[0] for r in store.con.execute(
            f"SELECT id FROM t WHERE id >= {k * 200} AND id < {(k + 1) * 200}").fetchall()]
        assert ids == sorted(ids)
    writer.close()


def test_rows_of_every_kind_of_value_reach_the_store_as_written(store):
    """The row encoding (orjson, the standard encoder for what orjson refuses) keeps what the
    standard encoder kept: dates and decimals as their text, non-ASCII text, integers beyond 64
    bits, numbers under non-string keys; a NaN becomes NULL (JSON has no NaN)."""
    store.con.execute("CREATE TABLE k (id BIGINT, stamp TIMESTAMP, day DATE, price DECIMAL(6, 2), "
                      "big HUGEINT, name VARCHAR, data JSON, x DOUBLE)")
    writer = Writer(store)
    writer.add("k", {"id": 0, "stamp": datetime(2026, 12, 7, 6, 5, 4), "day": date(2026, 1, 2),
                     "price": Decimal("12.50"), "big": 2**70, "name": "Zürich ✓",
                     "data": {1: ["a", 2.5]}, "x": 0.25})
    writer.add("k", {"id": 1, "x": float("nan")})
    writer.flush()
    assert store.con.execute("SELECT * FROM k ORDER BY id").fetchall() == [
        (0, datetime(2026, 12, 7, 6, 5, 4), date(2026, 1, 2), Decimal("12.50"), 2**70,
         "Zürich ✓", '{"1":["a",2.5]}', 0.25),
        (1, None, None, None, None, None, None, None)]
    writer.close()


def test_store_errors_surface_on_the_next_add_or_flush(store):
    writer = Writer(store)
    writer.add("missing_table", {"id": 1})
    with pytest.raises(Exception, match="missing_table"):
        writer.flush()
    with pytest.raises(Exception, match="missing_table"):
        writer.add("t", {"id": 2})


@pytest.mark.parametrize("concurrency", [1, 4])
def test_worker_pool_runs_every_job_in_the_callers_context(concurrency):
    import contextvars

    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")
    marker.set("caller")
    seen: list[tuple[int, str]] = []
    jobs = [(lambda i: seen.append((i, marker.get())), i) for i in range(50)]
    ctx = SimpleNamespace(concurrency=concurrency, stopping=threading.Event())
    assert run_parallel(ctx, jobs) == 50
    assert sorted(seen) == [(i, "caller") for i in range(50)]


def test_worker_pool_stops_on_error_and_prefers_the_budget_stop():
    started: list[int] = []
    gate = threading.Barrier(2)

    def job(i: int) -> None:
        started.append(i)
        if i == 0:
            gate.wait()
            raise ValueError("boom")
        if i == 1:
            gate.wait()
            raise BudgetStop(BudgetExhausted("budget exhausted: --max-calls 1 reached"))

    jobs = [(job, i) for i in range(100)]
    with pytest.raises(BudgetStop):
        run_parallel(SimpleNamespace(concurrency=2, stopping=threading.Event()), jobs)
    assert len(started) < 100  # no job starts after the first error
