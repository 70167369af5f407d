"""Spec SQL with a time limit: a query that runs too long is interrupted, and the step says why.

A spec's own SQL (``filter … by sql``, ``reduce … by sql``, ``chunk … by sql``) runs on the run's
DuckDB connection, where an unbounded ``WITH RECURSIVE`` or a runaway cross join would never end.
:func:`time_limited` interrupts the connection after :data:`SPEC_SQL_TIMEOUT_S` and turns
whatever the interrupted statement raised (callers wrap DuckDB errors in their own messages) into
one :class:`~rlm_dsl.errors.SpecError`, which the executor reports as the step's failure with its
spec position.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

from rlm_dsl.errors import SpecError

SPEC_SQL_TIMEOUT_S = 300.0


@contextmanager
def time_limited(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Interrupt ``con`` if the block runs longer than :data:`SPEC_SQL_TIMEOUT_S`."""
    limit = SPEC_SQL_TIMEOUT_S
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        con.interrupt()

    timer = threading.Timer(limit, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    except Exception:
        if fired.is_set():
            raise SpecError(f"its SQL ran longer than {limit:g} s and was stopped (an unbounded "
                            "WITH RECURSIVE, or a join that multiplies rows?)") from None
        raise
    finally:
        timer.cancel()
