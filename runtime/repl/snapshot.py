"""REPL host tools: the separate DuckDB database that model SQL runs in.

Model-written SQL never runs on the run's own connection. On the first ``sql()`` call of an `rlm`
step, :class:`SqlSnapshot` copies the store's tables and views (not the system tables) into a
private file, opens it read-only in a DuckDB instance of its own with
``enable_external_access = false`` and ``lock_configuration = true`` set at connect time, before
any model query: a replacement scan of a quoted path, ``read_*``, ``glob``, ``COPY``, ``ATTACH`` or
an extension cannot reach the file system, whatever the statement checker in
:mod:`rlm_dsl.runtime.repl.tools` accepts (that checker stays, for clear refusals). The copy is
taken once per step invocation and deleted by :meth:`SqlSnapshot.close`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid

import duckdb

from rlm_dsl.runtime.store.store import SYSTEM_TABLES, Store, quote_ident

LOCKED = {"enable_external_access": False, "lock_configuration": True,
          "autoinstall_known_extensions": False, "autoload_known_extensions": False}


class SqlSnapshot:
    """A read-only, file-system-less copy of a store's tables, made on first use."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._con: duckdb.DuckDBPyConnection | None = None
        self._dir: str | None = None
        self._lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor on the snapshot (taken now if this is the first call)."""
        with self._lock:
            if self._con is None:
                self._con = self._take()
            return self._con.cursor()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None

    def _take(self) -> duckdb.DuckDBPyConnection:
        self._dir = tempfile.mkdtemp(prefix="rlm-sql-")
        path = os.path.join(self._dir, "snapshot.duckdb")
        alias = f"rlm_snapshot_{uuid.uuid4().hex}"
        con = self.store.con
        names = [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main' UNION ALL SELECT view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main' AND NOT internal"
        ).fetchall() if name not in SYSTEM_TABLES]
        con.execute(f"ATTACH {_literal(path)} AS {alias}")
        try:
            for name in names:
                con.execute(f"CREATE TABLE {alias}.main.{quote_ident(name)} AS "
                            f"FROM main.{quote_ident(name)}")
        finally:
            con.execute(f"DETACH {alias}")
        return duckdb.connect(path, read_only=True, config=LOCKED)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
