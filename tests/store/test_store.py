"""The store: system tables, file databases, bad databases, helpers, thread safety."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pytest

from rlm_dsl.errors import InputError
from rlm_dsl.runtime.store.store import SYSTEM_TABLES, Store

EXPECTED = {
    "runs": "run_id recipe started_at finished_at status params inputs summary",
    "step_status": "run_id step status rows started_at finished_at",
    "step_fingerprints": "step fingerprint parts status run_id at",
    "lm_calls": (
        "call_id run_id step chunk_id depth parent_id model cache_key messages response "
        "prompt_tokens completion_tokens cost_usd latency_s cached error started_at"
    ),
    "failures": "run_id step chunk_id error raw_response attempts resolved at",
    "rlm_iterations": (
        "run_id step chunk_id depth parent_call_id iteration reasoning code output error at"
    ),
}


def test_system_tables_follow_the_contract(store: Store) -> None:
    assert set(SYSTEM_TABLES) == set(EXPECTED)
    for table, names in EXPECTED.items():
        assert [name for name, _ in store.columns(table)] == names.split()
    assert dict(store.columns("lm_calls"))["messages"] == "JSON"
    assert dict(store.columns("failures"))["resolved"] == "BOOLEAN"
    assert store.path is None


def test_file_store_persists_and_reopens_idempotently(tmp_path: Path) -> None:
    path = str(tmp_path / "run.duckdb")
    with Store.open(path) as store:
        store.insert_rows("failures", [{"run_id": "r1", "step": "map-x", "chunk_id": 4}])
        assert store.path == path
    with Store.open(path) as store:
        rows = store.rows("failures", order_by="chunk_id")
    assert [(r["run_id"], r["step"], r["chunk_id"], r["error"]) for r in rows] == [
        ("r1", "map-x", 4, None)
    ]


def test_a_file_that_is_not_duckdb_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    with pytest.raises(InputError) as caught:
        Store.open(str(path))
    assert str(caught.value) == f"{path}: not a DuckDB database"
    assert caught.value.exit_code == 2


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not a DuckDB database"):
        Store.open(str(tmp_path))


def test_helpers(store: Store) -> None:
    store.create_table_as("t", "SELECT range AS id, 'v' || range AS text FROM range(3)")
    assert store.table_exists("t") and not store.table_exists("nope")
    assert store.columns("t") == [("id", "BIGINT"), ("text", "VARCHAR")]
    assert store.count("t") == 3
    assert store.scalar("SELECT max(id) FROM t WHERE text <> ?", ["v2"]) == 1
    store.insert_rows("t", [{"id": 3, "text": "v3"}, {"id": 4}])
    texts = [r["text"] for r in store.rows("t", order_by="id DESC")]
    assert texts == [None, "v3", "v2", "v1", "v0"]
    store.drop("t")
    assert not store.table_exists("t")


def test_concurrent_writers_and_readers(store: Store) -> None:
    store.create_table_as("t", "SELECT 0::BIGINT AS id, 0::BIGINT AS worker WHERE false")
    seen: list[int] = []

    def work(worker: int) -> None:
        for batch in range(10):
            rows = [{"id": worker * 100 + batch * 10 + i, "worker": worker} for i in range(10)]
            store.insert_rows("t", rows)
            seen.append(store.count("t"))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count("t") == 800
    assert store.scalar("SELECT count(DISTINCT id) FROM t") == 800
    assert len(seen) == 80 and max(seen) == 800


def test_transaction_commits_or_rolls_back(store: Store) -> None:
    store.create_table_as("t", "SELECT 1 AS id")
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as con:
        con.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert store.count("t") == 1
    with store.transaction() as con:
        con.execute("INSERT INTO t VALUES (3)")
    assert [r["id"] for r in store.rows("t")] == [1, 3]


def _wal_bytes(path: Path) -> int:
    wal = Path(f"{path}.wal")
    return wal.stat().st_size if wal.exists() else 0


@pytest.mark.parametrize("bulk", [False, True])
def test_a_bulk_transaction_is_checkpointed_into_the_file(tmp_path: Path, bulk: bool) -> None:
    """Few rows of long text: DuckDB estimates the commit small and logs it to the WAL first;
    a bulk commit goes straight into the file and leaves the setting as it was."""
    path = tmp_path / "run.duckdb"
    with Store.open(path) as store:
        store.con.execute("SET checkpoint_threshold = '64MiB'")
        with store.transaction(bulk=bulk) as con:
            con.execute(
                "CREATE TABLE big AS SELECT i AS id, repeat(md5(i::VARCHAR), 200) AS text "
                "FROM range(5000) t(i)"
            )
        wal = _wal_bytes(path)
        assert store.scalar("SELECT current_setting('checkpoint_threshold')") == "64.0 MiB"
        assert store.count("big") == 5000
    assert (wal < 1 << 20) if bulk else (wal > 20 << 20)  # 32 MB of text
    with Store.open(path) as store:
        assert store.scalar("SELECT sum(strlen(text)) FROM big") == 5000 * 32 * 200


def test_long_text_columns_are_zstd_where_the_storage_version_has_it(tmp_path: Path) -> None:
    with Store.open(tmp_path / "new.duckdb") as store:
        assert store.text_type == "VARCHAR USING COMPRESSION zstd"
        assert store.table_exists("runs") and not store.scalar(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'rlm_zstd_probe%'"
        )
    old = tmp_path / "old.duckdb"
    duckdb.connect().execute(f"ATTACH '{old}' AS old (STORAGE_VERSION 'v1.0.0')").close()
    with Store.open(old) as store:
        assert store.text_type == "VARCHAR"
