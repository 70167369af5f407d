"""Host tools: the read-only SQL guard and the context sources, without a worker."""

from __future__ import annotations

import pytest

from rlm_dsl.runtime.repl.snapshot import SqlSnapshot
from rlm_dsl.runtime.repl.tools import (
    SqlRefused,
    TableSource,
    TextSource,
    check_readonly,
    readonly_sql,
)


@pytest.fixture
def store(store):
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'line ' || range AS text, "
                      "range % 3 AS bucket FROM range(30)")
    store.con.execute("CREATE TABLE labels AS SELECT range AS id, 'l' || (range % 2) AS label "
                      "FROM range(30)")
    store.con.execute("CREATE VIEW odd AS SELECT * FROM logs WHERE id % 2 = 1")
    return store


@pytest.fixture
def snap(store):
    snapshot = SqlSnapshot(store)
    yield snapshot
    snapshot.close()


@pytest.mark.parametrize("query", [
    "SELECT count(*) FROM logs",
    "WITH b AS (SELECT bucket, count(*) AS n FROM logs GROUP BY 1) SELECT * FROM b ORDER BY 1",
    "SELECT l.label, count(*) FROM logs JOIN labels l USING (id) GROUP BY 1",
    "SELECT * FROM odd WHERE id IN (SELECT id FROM labels WHERE label = 'l1')",
    "DESCRIBE logs",
    "SHOW TABLES",
    "SUMMARIZE logs",
    "PRAGMA table_info('logs')",
    "SELECT table_name FROM information_schema.tables",
    "SELECT * FROM range(3)",
    "SELECT unnest([1, 2, 3]) AS x",
])
def test_reading_statements_run(snap, query):
    result = readonly_sql(snap, query)
    assert result["rows"] and not result["truncated"]


@pytest.mark.parametrize(("query", "message"), [
    ("SELECT 1; SELECT 2", "sql() runs exactly one statement, got 2"),
    ("CREATE TABLE t AS SELECT 1", "sql() is read-only: CREATE statements are refused"),
    ("INSERT INTO logs VALUES (99, 'x', 0)", "INSERT statements are refused"),
    ("UPDATE logs SET text = 'x'", "UPDATE statements are refused"),
    ("DELETE FROM logs", "DELETE statements are refused"),
    ("DROP TABLE logs", "DROP statements are refused"),
    ("SET threads = 1", "SET statements are refused"),
    ("PRAGMA enable_profiling", "PRAGMA statements are refused"),
    ("SELECT * FROM glob('/*')", "table function glob() is refused"),
    ("SELECT * FROM read_parquet('http://example.com/x.parquet')",
     "table function read_parquet() is refused"),
    ("SELECT * FROM duckdb_secrets()", "table function duckdb_secrets() is refused"),
    ("SUMMARIZE '/etc/passwd'", "unknown table '/etc/passwd'"),
    ("SELECT * FROM host_frame", "unknown table 'host_frame'"),
    ("SELECT * FROM other.main.logs", "sql() reads only this run's database, not 'other'"),
    ("SELECT current_setting('temp_directory')", "function current_setting() is refused"),
    ("SELEC 1", "Parser Error: syntax error at or near \"SELEC\""),
    ("", "sql() needs a query string"),
])
def test_everything_else_is_refused(store, query, message):
    with pytest.raises(SqlRefused) as caught:
        check_readonly(store.con, query)
    assert message in str(caught.value)


def test_host_python_variables_are_not_reachable(snap):
    host_frame = {"secret": [1]}  # noqa: F841 - a replacement scan would find this local
    with pytest.raises(SqlRefused, match="unknown table 'host_frame'"):
        readonly_sql(snap, "SELECT * FROM host_frame")


def test_results_are_capped_and_flagged(snap):
    result = readonly_sql(snap, "SELECT id FROM logs ORDER BY id", max_rows=10)
    assert [r["id"] for r in result["rows"]] == list(range(10)) and result["truncated"]


def test_long_queries_are_interrupted(snap):
    with pytest.raises(SqlRefused, match=r"the query ran longer than 0.2 s and was stopped"):
        readonly_sql(snap, "SELECT sum(hash(a.range * b.range)) FROM range(100000) a, "
                            "range(100000) b", timeout_s=0.2)


def test_table_source_without_text_renders_rows_as_json(store):
    source = TableSource(store, "labels")
    assert source("info") == {"table": "labels", "columns": ["id", "label"], "n_rows": 30,
                              "n_chars": 30 * len('{"label":"l0"}')}
    assert source("rows", 1, 2) == [{"id": 1, "label": "l1", "text": '{"label":"l1"}'}]
    assert source("search", "l1", 2) == [{"id": 1, "text": '{"label":"l1"}'},
                                         {"id": 3, "text": '{"label":"l1"}'}]


def test_table_source_refuses_huge_pages_and_bad_patterns(store):
    source = TableSource(store, "logs")
    with pytest.raises(ValueError, match=r"at most 10,000 rows per call \(asked for 20,000\)"):
        TextSource(["x"] * 20_000)("lines", 0, 20_000)
    with pytest.raises(ValueError, match=r"bad search pattern '\('"):
        source("search", "(")
    with pytest.raises(ValueError, match="unknown context operation 'drop'"):
        source("drop")


def test_text_source_behaves_like_a_table():
    source = TextSource(["alpha", "beta", "gamma"])
    assert source("info") == {"table": "sub_context", "columns": ["id", "text"], "n_rows": 3,
                              "n_chars": 14}
    assert source("lines", -2, None) == "beta\ngamma"
    assert source("search", "^[bg]", 1) == [{"id": 1, "text": "beta"}]
