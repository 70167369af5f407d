"""Write-behind store writer: rows recorded as work completes, flushed in small JSON batches.

Executor stage helper. A single-row ``INSERT`` costs about a millisecond in DuckDB — more than an
instant LM call — so LM-call records and step results are queued by the worker threads and a
background thread appends them every quarter second with one ``INSERT … SELECT`` over
``from_json(?, <schema>)`` per table (≈10 µs a row, typed LIST/STRUCT columns included). Rows of
one table keep their queue order, and a call's record is queued before the result that used it,
so a run killed at any moment leaves a consistent store: a result is never present without its
call, and a finished call is repeated at most if its record had not reached disk yet.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from rlm_dsl.runtime.store import Store, quote_ident

FLUSH_EVERY_S = 0.25
_STOP = object()


class Writer:
    """Queue rows with :meth:`add`; they reach the store within ``FLUSH_EVERY_S`` seconds."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: queue.Queue[Any] = queue.Queue()
        self._schemas: dict[str, str] = {}
        self._error: BaseException | None = None
        self._idle = threading.Condition()
        self._pending = 0
        self._hurry = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rlm-store-writer", daemon=True)
        self._thread.start()

    def add(self, table: str, row: dict[str, Any]) -> None:
        """Queue ``row`` for ``table`` (column names as keys; missing columns become NULL)."""
        if self._error is not None:
            raise self._error
        with self._idle:
            self._pending += 1
        # Encode here, in the worker: the writer thread then holds the GIL only briefly, so
        # workers are not kept waiting for it after each I/O call (the convoy effect).
        self._queue.put((table, json.dumps(row, default=str)))

    def flush(self) -> None:
        """Block until every queued row is in the store (the writer is woken at once)."""
        self._hurry.set()
        with self._idle:
            self._idle.wait_for(lambda: self._pending == 0 or self._error is not None)
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        self.flush()
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = self._drain(batch)
            try:
                self._write(batch)
            except BaseException as exc:  # surfaced to the workers on their next add/flush
                self._error = exc
            with self._idle:
                self._pending -= len(batch)
                self._idle.notify_all()
            if stop:
                return

    def _drain(self, batch: list[Any]) -> bool:
        self._hurry.wait(FLUSH_EVERY_S)  # gather a batch, unless someone waits in flush()
        self._hurry.clear()
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            batch.append(item)

    def _write(self, batch: list[tuple[str, str]]) -> None:
        by_table: dict[str, list[str]] = {}
        for table, row in batch:
            by_table.setdefault(table, []).append(row)
        with self.store.write() as con:
            for table, rows in by_table.items():
                con.execute(self._insert_sql(table), ["[" + ",".join(rows) + "]"])

    def _insert_sql(self, table: str) -> str:
        if table not in self._schemas:
            types = {name: kind for name, kind in self.store.columns(table)}
            schema = json.dumps([types]).replace("'", "''")
            self._schemas[table] = (
                f"INSERT INTO {quote_ident(table)} BY NAME SELECT r.* FROM "
                f"(SELECT unnest(from_json(?, '{schema}')) AS r)"
            )
        return self._schemas[table]

    def forget(self, table: str) -> None:
        """Drop the cached schema of ``table`` (after it was re-created)."""
        self._schemas.pop(table, None)
