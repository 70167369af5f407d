"""Write-behind store writer: rows recorded as work completes, flushed in small JSON batches.

Executor stage helper. A single-row ``INSERT`` costs about a millisecond in DuckDB — more than an
instant LM call — so LM-call records and step results are queued by the worker threads (a deque
append of the row's JSON text, encoded in the worker) and written every quarter second with one
``INSERT … SELECT`` over ``from_json(<row>, <schema>)`` per table (≈4 µs a row, typed LIST/STRUCT
columns included). A background thread writes each batch when it is due, off the workers' path:
a worker that wrote it would hold its own next LM call back by the batch's 10–35 ms, and the
slowest worker decides when a map ends. A thread waiting for the GIL can starve behind busy
workers (an instant LM) for whole seconds, so a batch still unwritten a whole interval after it
was due is written by the next :meth:`Writer.add`, in that worker. :meth:`Writer.flush` writes
the rest in the calling thread. Batches are taken and written under one lock, so rows of one
table keep their queue order, and a call's record is queued before the result that used it: a
run killed at any moment leaves a consistent store — a result is never present without its
call. With a journal (a ``--db`` run), an ``lm_calls`` record is also appended to
``<db>.journal`` in the worker, before the answer is used: one ``write`` per call, which a SIGKILL
cannot undo. Each batch rotates the journal (``.journal`` → ``.journal.writing``, deleted once the
batch is committed); the next run replays whatever the files still hold and the store lacks, so a
finished call is never repeated.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections import deque
from typing import Any

import orjson

from rlm_dsl.runtime.store.store import Store, quote_ident

FLUSH_EVERY_S = 0.25
JOURNALED = "lm_calls"  # finished LM answers: the work a resume must never repeat
_stdlib_encode = json.JSONEncoder(default=str).encode  # one encoder, not one per json.dumps
_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def _plain(value: Any) -> Any:
    """What orjson cannot write itself, as the standard encoder writes it."""
    return float(value) if isinstance(value, float) else str(value)


def encode_row(row: dict[str, Any]) -> str:
    """``row`` as one JSON text: orjson (~1.5 µs for a 1.2 KB ``lm_calls`` row, against ~12 µs for
    the standard encoder), with values it does not write natively (dates, decimals, sets) written
    as their ``str`` like the standard encoder's ``default=str``; the standard encoder takes what
    orjson refuses (integers beyond 64 bits). NaN becomes null (the standard encoder's ``NaN`` is
    not JSON)."""
    try:
        return orjson.dumps(row, default=_plain, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return _stdlib_encode(row)


class Writer:
    """Queue rows with :meth:`add`; they reach the store within ``FLUSH_EVERY_S`` seconds."""

    def __init__(self, store: Store, journal: str | None = None) -> None:
        self.store = store
        self._queue: deque[tuple[str, str]] = deque()
        self._schemas: dict[str, str] = {}
        self._error: BaseException | None = None
        self._write_lock = threading.Lock()
        self._journal = Journal(journal) if journal else None
        if self._journal is not None:
            self._replay(self._journal.recover())
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
        line = encode_row(row)
        if self._journal is not None and table == JOURNALED:
            with self._journal.lock:  # journal and queue in one step: a batch holds both or not
                self._journal.append(line)
                self._queue.append((table, line))
        else:
            self._queue.append((table, line))
        if (time.monotonic() >= self._due + FLUSH_EVERY_S
                and self._write_lock.acquire(blocking=False)):
            try:  # the writer thread is a whole interval late and no one is writing: write here
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
        if self._journal is not None:
            self._journal.close()

    def forget(self, table: str) -> None:
        """Drop the cached schema of ``table`` (after it was re-created)."""
        self._schemas.pop(table, None)

    def _run(self) -> None:
        while not self._stop.wait(max(0.0, self._due - time.monotonic())):
            if time.monotonic() < self._due:
                continue  # a worker or a flush wrote a batch meanwhile
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
        journal = self._journal
        with journal.lock if journal is not None else contextlib.nullcontext():
            while self._queue:
                batch.append(self._queue.popleft())
            if journal is not None and batch:
                journal.rotate()  # the rotated file holds exactly this batch's journaled rows
        if batch:
            try:
                self._write(batch)
            except BaseException as exc:
                self._error = exc
                raise
            if journal is not None:
                journal.committed()

    def _replay(self, lines: list[str]) -> None:
        """Write journaled ``lm_calls`` rows the store does not have yet (a killed run's)."""
        rows = {}
        for line in lines:
            try:
                rows[json.loads(line)["call_id"]] = line
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by the kill
        if rows:
            have = {call_id for (call_id,) in self.store.con.execute(
                "SELECT call_id FROM lm_calls WHERE call_id IN (SELECT unnest(?))",
                [list(rows)]).fetchall()}
            missing = [(JOURNALED, line) for call_id, line in rows.items() if call_id not in have]
            if missing:
                self._write(missing)
        assert self._journal is not None
        self._journal.discard()

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


class Journal:
    """``<db>.journal``: append-only JSON lines of finished LM calls not yet committed."""

    def __init__(self, path: str) -> None:
        self.path, self.writing = path, f"{path}.writing"
        self.lock = threading.Lock()
        self._fd = -1

    def recover(self) -> list[str]:
        """The lines a killed run left (oldest first); :meth:`discard` once they are stored."""
        lines: list[str] = []
        for path in (self.writing, self.path):
            if os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as handle:
                    lines.extend(line for line in handle.read().split("\n") if line)
        return lines

    def discard(self) -> None:
        for path in (self.writing, self.path):
            if os.path.exists(path):
                os.unlink(path)

    def append(self, line: str) -> None:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, (line + "\n").encode())

    def rotate(self) -> None:
        """Start a new file; the old one becomes ``.writing`` until the batch is committed."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            os.replace(self.path, self.writing)

    def committed(self) -> None:
        if os.path.exists(self.writing):
            os.unlink(self.writing)

    def close(self) -> None:
        with self.lock:
            self.rotate()
            self.committed()

