"""Write-behind store writer: rows recorded as work completes, flushed in small JSON batches.

Executor stage helper. A single-row ``INSERT`` costs about a millisecond in DuckDB — more than an
instant LM call — so LM-call records and step results are queued by the worker threads (a deque
append of the row's JSON text, encoded in the worker) and written every quarter second with one
``INSERT … SELECT`` over ``from_json(<row>, <schema>)`` per table (≈4 µs a row, typed LIST/STRUCT
columns included). The write is done by the first :meth:`Writer.add` after the quarter second is
up, in that worker: a background thread only covers quiet spells (a slow LM call), because a
thread waiting for the GIL can starve behind busy workers for whole seconds. :meth:`Writer.flush`
writes the rest in the calling thread. Batches are taken and written under one lock, so rows of
one table keep their queue order, and a call's record is queued before the result that used it:
a run killed at any moment leaves a consistent store — a result is never present without its
call, and a finished call is repeated at most if its record had not reached disk yet.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

from rlm_dsl.runtime.store.store import Store, quote_ident

FLUSH_EVERY_S = 0.25
_encode = json.JSONEncoder(default=str).encode  # one encoder: json.dumps(default=) builds one a row


class Writer:
    """Queue rows with :meth:`add`; they reach the store within ``FLUSH_EVERY_S`` seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: deque[tuple[str, str]] = deque()
        self._schemas: dict[str, str] = {}
        self._error: BaseException | None = None
        self._write_lock = threading.Lock()
        self._due = time.monotonic() + FLUSH_EVERY_S  # when the queue is next written
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlm-store-writer", daemon=True)
        self._thread.start()

    def add(self, table: str, row: dict[str, Any]) -> None:
        """Queue ``row`` for ``table`` (column names as keys; missing columns become NULL)."""
        if self._error is not None:
            raise self._error
        # Encode here, in the worker: the writer thread then holds the GIL only briefly, so
        # workers are not kept waiting for it after each I/O call (the convoy effect).
        self._queue.append((table, _encode(row)))
        if time.monotonic() >= self._due and self._write_lock.acquire(blocking=False):
            try:  # a batch is due and no other thread is writing one: write it here
                self._write_locked()
            finally:
                self._write_lock.release()

    def flush(self) -> None:
        """Write every row queued so far before returning (in the calling thread)."""
        self._write_queued()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()

    def forget(self, table: str) -> None:
        """Drop the cached schema of ``table`` (after it was re-created)."""
        self._schemas.pop(table, None)

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_EVERY_S):
            if time.monotonic() < self._due:
                continue  # a worker wrote a batch meanwhile
            try:
                self._write_queued()
            except BaseException:  # kept in _error: surfaced on the next add/flush
                return

    def _write_queued(self) -> None:
        """Take and write the whole queue; rows queued before the call are in the store after
        it, whichever thread wrote them (the lock orders the batches)."""
        with self._write_lock:
            self._write_locked()

    def _write_locked(self) -> None:
        self._due = time.monotonic() + FLUSH_EVERY_S
        batch: list[tuple[str, str]] = []
        while self._queue:
            batch.append(self._queue.popleft())
        if batch:
            try:
                self._write(batch)
            except BaseException as exc:
                self._error = exc
                raise

    def _write(self, batch: list[tuple[str, str]]) -> None:
        by_table: dict[str, list[str]] = {}
        for table, row in batch:
            by_table.setdefault(table, []).append(row)
        with self.store.write() as con:
            for table, rows in by_table.items():
                con.execute(self._insert_sql(table), [rows])

    def _insert_sql(self, table: str) -> str:
        if table not in self._schemas:
            types = {name: kind for name, kind in self.store.columns(table)}
            schema = json.dumps(types).replace("'", "''")
            # One JSON text per row in a list parameter: about half the cost of one JSON array.
            self._schemas[table] = (
                f"INSERT INTO {quote_ident(table)} BY NAME SELECT "
                f"unnest(from_json(row, '{schema}')) FROM (SELECT unnest(?::VARCHAR[]) AS row)"
            )
        return self._schemas[table]
