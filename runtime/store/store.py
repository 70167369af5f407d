"""Store stage: the one DuckDB database a run reads and writes.

:class:`Store` wraps a DuckDB connection (in memory, or a file given with ``--db``) and creates the
system tables of the store contract (``docs/architecture.md``) idempotently when it opens:
``runs``, ``step_status``, ``lm_calls``, ``failures``, ``rlm_iterations`` and
``step_fingerprints``. Every other table
(inputs, chunks, step results) is written by the stage that owns it and carries a dense, 0-based,
ordered ``id BIGINT``. The store is safe to share between threads: :attr:`Store.con` is a cursor
private to the calling thread, and :meth:`Store.write` is a lock that the helpers here take around
every write so concurrent writers never interleave half a batch.

API (others code against it)::

    store = Store.open(None)            # in memory; Store.open("run.duckdb") for a file
    Store.open("run.duckdb", memory_limit="1GB")  # bounded buffer pool (large inputs)
    store.con                           # this thread's DuckDB cursor (DuckDBPyConnection)
    store.path                          # the file path, or None in memory
    store.scalar("SELECT count(*) FROM t WHERE x = ?", [1])  # first value, fully fetched
    store.table_exists("chunks"); store.columns("chunks")  # [(name, type), ...]
    store.count("chunks"); store.rows("chunks", order_by="id")  # list[dict]
    store.insert_rows("lm_calls", [{"call_id": 1, ...}])  # missing columns are NULL
    store.create_table_as("t", "SELECT ...")  # replaces t
    store.drop("t")                       # a view goes with its table t__stored
    store.text_type                     # DDL type for long text columns (ZSTD where supported)
    with store.write(): ...             # hold the write lock for a multi-statement write
    with store.transaction() as con: ...  # write lock + BEGIN/COMMIT (ROLLBACK on error)
    store.close()                       # or use ``with Store.open(...) as store:``
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from rlm_dsl.errors import InputError

# The table behind a view the runtime writes (a log input, a lazy chunk table): view + STORED.
STORED = "__stored"
SYSTEM_TABLES: dict[str, str] = {
    "runs": """run_id VARCHAR, recipe VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
        status VARCHAR, params JSON, inputs JSON, summary JSON""",
    "step_status": """run_id VARCHAR, step VARCHAR, status VARCHAR, rows BIGINT,
        started_at TIMESTAMP, finished_at TIMESTAMP""",
    "lm_calls": """call_id VARCHAR, run_id VARCHAR, step VARCHAR, chunk_id BIGINT, depth INTEGER,
        parent_id VARCHAR, model VARCHAR, cache_key VARCHAR, messages JSON, response VARCHAR,
        prompt_tokens BIGINT, completion_tokens BIGINT, cost_usd DOUBLE, latency_s DOUBLE,
        cached BOOLEAN, error VARCHAR, started_at TIMESTAMP""",
    "failures": """run_id VARCHAR, step VARCHAR, chunk_id BIGINT, error VARCHAR,
        raw_response VARCHAR, attempts INTEGER, resolved BOOLEAN, "at" TIMESTAMP""",
    "rlm_iterations": """run_id VARCHAR, step VARCHAR, chunk_id BIGINT, depth INTEGER,
        parent_call_id VARCHAR, iteration INTEGER, reasoning VARCHAR, code VARCHAR,
        output VARCHAR, error VARCHAR, "at" TIMESTAMP""",
    "step_fingerprints": """step VARCHAR, fingerprint VARCHAR, parts JSON, status VARCHAR,
        run_id VARCHAR, "at" TIMESTAMP""",
}


def quote_ident(name: str) -> str:
    """``name`` as a DuckDB identifier (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """``text`` as a SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


class Store:
    """A run's DuckDB database. Build it with :meth:`open`."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: str | None, spill: str | None = None
    ) -> None:
        self._root = con
        self.path = path
        self._spill = spill
        self._local = threading.local()
        self._lock = threading.RLock()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._create_system_tables()
        self.text_type = _text_type(con)

    @classmethod
    def open(
        cls, path: str | os.PathLike[str] | None = None, memory_limit: str | None = None
    ) -> Store:
        """Open (or create) the store at ``path``; in memory when ``path`` is None.

        A path that exists but is not a DuckDB database raises :class:`InputError` naming it.
        ``memory_limit`` (DuckDB's setting, e.g. ``"1GB"``) bounds DuckDB's buffer pool: with a
        file store, larger inputs are then evicted to the file instead of held in memory.
        """
        store = cls._connect(path)
        # DuckDB's own progress bar would mix into `rlm run --json` output.
        store.con.execute("SET enable_progress_bar = false")
        if memory_limit:
            store.con.execute("SET memory_limit = ?", [memory_limit])
        return store

    @classmethod
    def _connect(cls, path: str | os.PathLike[str] | None) -> Store:
        if path is None:
            con = duckdb.connect(":memory:")
            # An in-memory store spills to a private temporary folder, never into the cwd.
            spill = tempfile.mkdtemp(prefix="rlm-spill-")
            con.execute("SET temp_directory = ?", [spill])
            return cls(con, None, spill)
        text = os.fspath(path)
        if os.path.isdir(text):
            raise InputError(f"{text}: is a directory, not a DuckDB database")
        try:
            os.makedirs(os.path.dirname(os.path.abspath(text)), exist_ok=True)
        except OSError as error:
            raise InputError(f"{text}: cannot create its directory: {error.strerror}") from None
        try:
            con = duckdb.connect(text)
        except duckdb.Error as error:
            if "not a valid DuckDB database" in str(error):
                raise InputError(f"{text}: not a DuckDB database") from None
            raise InputError(f"{text}: cannot open the database: {_first_line(error)}") from None
        return cls(con, text)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """This thread's own cursor on the database."""
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            with self._lock:
                cursor = self._root.cursor()
                self._cursors.append(cursor)
            self._local.cursor = cursor
        return cursor

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Hold the store's write lock; yields this thread's cursor."""
        with self._lock:
            yield self.con

    @contextmanager
    def transaction(self, bulk: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction on this thread's cursor, under the write lock (many-statement writes:
        one commit, so DuckDB writes large results straight to the file, not through the WAL).

        ``bulk``: few rows holding much text (chunk tables). DuckDB decides WAL or direct write
        from an estimated size (rows x fixed column widths: a 40 KB string counts 16 bytes), so
        25,000 chunks of 1 GB of text went to the WAL first and were written twice (4 s of a
        5 s commit); a bulk commit lowers ``checkpoint_threshold`` for itself so that DuckDB
        checkpoints the transaction straight into the file instead.
        """
        with self.write() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            if bulk and self.path is not None:
                _commit_checkpointed(con)
            else:
                con.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._cursors.clear()
            self._root.close()
        if self._spill:
            shutil.rmtree(self._spill, ignore_errors=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The first column of the first row of ``sql`` (None when it yields no row).

        Results are always fetched completely: DuckDB 2 refuses new work on a cursor whose
        last result is still open.
        """
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    def table_exists(self, name: str) -> bool:
        """Whether ``name`` is a table or a view (a log input, a lazy chunk table)."""
        return self._is_view(name) is not None

    def _is_view(self, name: str) -> bool | None:
        """True for a view, False for a table, None when ``name`` is neither."""
        sql = ("SELECT table_type = 'VIEW' FROM information_schema.tables "
               "WHERE table_name = ? AND table_schema = 'main'")
        return self.scalar(sql, [name])

    def tables_under(self, prefix: str) -> list[str]:
        """The tables and views whose names start with ``prefix``, sorted; a view's
        :data:`STORED` table is left out (it goes with its view)."""
        sql = ("SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
               "AND starts_with(table_name, ?) ORDER BY table_name")
        names = [row[0] for row in self.con.execute(sql, [prefix]).fetchall()]
        return [n for n in names if not (n.endswith(STORED) and n[:-len(STORED)] in names)]

    def columns(self, name: str) -> list[tuple[str, str]]:
        """``[(column name, DuckDB type), ...]`` in table order."""
        return [
            (row[0], row[1]) for row in self.con.execute(f"DESCRIBE {quote_ident(name)}").fetchall()
        ]

    def count(self, name: str) -> int:
        """Rows of ``name``; of a view the runtime wrote, the rows of its ``__stored`` table
        (one each: counting them is free, counting the view would derive its rows)."""
        counted = name + STORED if self._is_view(name) and self.table_exists(name + STORED) \
            else name
        return int(self.scalar(f"SELECT count(*) FROM {quote_ident(counted)}"))

    def rows(self, name: str, order_by: str | None = "id") -> list[dict[str, Any]]:
        """Every row of ``name`` as a dict, ordered by ``order_by`` (a SQL expression)."""
        sql = f"SELECT * FROM {quote_ident(name)}"
        if order_by:
            sql += f" ORDER BY {order_by}"
        cursor = self.con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def insert_rows(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` to ``table``; columns absent from a row are NULL."""
        if not rows:
            return
        names = list(dict.fromkeys(key for row in rows for key in row))
        cols = ", ".join(quote_ident(n) for n in names)
        marks = ", ".join("?" for _ in names)
        values = [[row.get(n) for n in names] for row in rows]
        with self.write() as con:
            con.executemany(f"INSERT INTO {quote_ident(table)} ({cols}) VALUES ({marks})", values)

    def create_table_as(self, name: str, sql: str) -> None:
        """``CREATE OR REPLACE TABLE name AS sql``."""
        with self.write() as con:
            con.execute(f"CREATE OR REPLACE TABLE {quote_ident(name)} AS {sql}")

    def drop(self, name: str) -> None:
        """Drop table ``name``, or view ``name`` and the table behind it (``name`` +
        :data:`STORED`)."""
        with self.write() as con:
            if self._is_view(name):
                con.execute(f"DROP VIEW {quote_ident(name)}")
            con.execute(f"DROP TABLE IF EXISTS {quote_ident(name)}; "
                        f"DROP TABLE IF EXISTS {quote_ident(name + STORED)}")

    def _create_system_tables(self) -> None:
        with self.write() as con:  # one round trip for all of them
            con.execute(";\n".join(f"CREATE TABLE IF NOT EXISTS {name} ({columns})"
                                    for name, columns in SYSTEM_TABLES.items()))


def _commit_checkpointed(con: duckdb.DuckDBPyConnection) -> None:
    """COMMIT with ``checkpoint_threshold`` at its minimum, restored afterwards (a global
    setting: the caller holds the store's write lock, so no other store write interleaves)."""
    threshold = con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0]
    con.execute("SET checkpoint_threshold = '1KB'")
    try:
        con.execute("COMMIT")
    finally:
        con.execute("SET checkpoint_threshold = ?", [threshold])


def _text_type(con: duckdb.DuckDBPyConnection) -> str:
    """The column type for long text (input lines, chunk and log text): ZSTD-compressed.

    Measured on 1 GB of log lines, DuckDB's default string compression (DICT_FSST) writes at
    about half the speed of ZSTD and gives a larger file (``docs/benchmarks.md``). A database
    whose storage version predates ZSTD refuses the option; it keeps plain ``VARCHAR``.
    """
    probe = quote_ident(f"rlm_zstd_probe_{uuid.uuid4().hex[:12]}")
    zstd = "VARCHAR USING COMPRESSION zstd"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE {probe} (text {zstd})")
    except duckdb.Error:
        return "VARCHAR"
    finally:
        con.execute("ROLLBACK")
    return zstd


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
