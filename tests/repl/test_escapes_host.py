"""Escape suite, host side: model SQL cannot reach files, and no worker can make the host hang.

SQL path tricks run twice: through ``readonly_sql`` (checker and snapshot) and straight on the
snapshot's cursor with no checker at all, so the boundary is shown to be DuckDB's locked
``enable_external_access = false``, not the parser. Protocol attacks grab the worker's own
channel through its frames and flood, garble, stall or close it; tool-time loops call host tools
forever. Each case bounds the time the host spent and checks the REPL goes on after a restart.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time

import duckdb
import pytest
from dspy.primitives.code_interpreter import CodeExecutionError, CodeInterpreterError

from rlm_dsl.runtime.repl.isolation import isolation
from rlm_dsl.runtime.repl.sandbox import SandboxInterpreter, SandboxLimits
from rlm_dsl.runtime.repl.snapshot import SqlSnapshot
from rlm_dsl.runtime.repl.tools import SqlRefused, TableSource, readonly_sql
from rlm_dsl.runtime.store.store import Store

SECRET = "root-only-4c1d"
CTE = 'WITH "{p}" AS (SELECT 1 AS k) SELECT 1'
SQL_TRICKS = {  # {p}: a root-only CSV file of the host; {j}: the same secret as JSON
    "cte-scope": 'SELECT * FROM (' + CTE + ') s, "{p}" t',
    "cte-scalar": 'SELECT (SELECT k FROM "{p}") FROM (' + CTE + ') s',
    "cte-union": 'SELECT k FROM "{p}" UNION ALL '
                 '(WITH "{p}" AS (SELECT 1 AS k) SELECT k FROM "{p}")',
    "cte-in": "SELECT 1 WHERE 'x' IN (SELECT k FROM \"{p}\") OR EXISTS (" + CTE + ")",
    "cte-lateral": 'SELECT * FROM (' + CTE + ') a, LATERAL (SELECT * FROM "{p}") b',
    "cte-materialized": 'SELECT * FROM (WITH "{p}" AS MATERIALIZED (SELECT 1) SELECT 1) s, "{p}"',
    "cte-json": 'SELECT * FROM (WITH "{j}" AS (SELECT 1) SELECT 1) s, "{j}" t',
    "cte-friendly-from": 'FROM (' + CTE + ') s, "{p}"',
    "summarize-cte": 'SUMMARIZE SELECT * FROM (' + CTE + ') s, "{p}" t',
    "describe-cte": 'DESCRIBE SELECT * FROM (' + CTE + ') s, "{p}" t',
    "quoted-path": "SELECT * FROM '{p}'",
    "read-csv-spoof": "WITH read_csv AS (SELECT 1) SELECT * FROM read_csv('{p}')",
    "read-text-spoof": "WITH read_text AS (SELECT 1) SELECT * FROM read_text('{p}')",
    "glob-spoof": "WITH glob AS (SELECT 1) SELECT * FROM glob('{d}/*')",
    "query-function": "SELECT * FROM query('SELECT * FROM \"{p}\"')",
    "query-table": "SELECT * FROM query_table('{p}')",
    "sniff-csv": "SELECT * FROM sniff_csv('{p}')",
    "read-blob-scalar": "SELECT content FROM read_blob('{p}')",
}


@pytest.fixture(scope="module")
def secret_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("secrets")
    csv, js = root / "secret.csv", root / "secret.json"
    csv.write_text(f"k\n{SECRET}\n")
    js.write_text(json.dumps({"k": SECRET}) + "\n")
    for path in (csv, js):
        path.chmod(0o600)
    return {"p": str(csv), "j": str(js), "d": str(root)}


@pytest.fixture(scope="module")
def snapshot():
    store = Store.open(None)
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'line ' || range AS text "
                      "FROM range(10)")
    snap = SqlSnapshot(store)
    yield snap
    snap.close()
    store.close()


@pytest.mark.parametrize("trick", SQL_TRICKS.values(), ids=SQL_TRICKS.keys())
def test_sql_path_tricks_never_read_the_file(snapshot, secret_files, trick):
    query = trick.format(**secret_files)
    try:
        seen = json.dumps(readonly_sql(snapshot, query))
    except SqlRefused as exc:
        seen = str(exc)
    assert SECRET not in seen


@pytest.mark.parametrize("trick", SQL_TRICKS.values(), ids=SQL_TRICKS.keys())
def test_without_the_checker_the_snapshot_still_has_no_file_access(snapshot, secret_files,
                                                                     trick):
    cursor = snapshot.cursor()
    with pytest.raises(duckdb.Error) as caught:
        cursor.execute(trick.format(**secret_files)).fetchall()
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("statement", [
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "ATTACH '{d}/planted.db' AS planted",
    "COPY (SELECT 1) TO '{d}/planted.csv'",
    "CREATE TABLE planted AS SELECT 1",
])
def test_the_snapshot_cannot_be_unlocked_or_written(snapshot, secret_files, statement):
    with pytest.raises(duckdb.Error):
        snapshot.cursor().execute(statement.format(**secret_files))
    assert sorted(os.listdir(secret_files["d"])) == ["secret.csv", "secret.json"]


def test_the_snapshot_holds_the_run_tables_and_nothing_else(snapshot):
    tables = {name for (name,) in snapshot.cursor().execute("SHOW TABLES").fetchall()}
    assert tables == {"logs"}
    assert readonly_sql(snapshot, "SELECT count(*) AS n FROM logs")["rows"] == [{"n": 10}]


# -- protocol and tool-time attacks --------------------------------------------------------------

CHANNEL = ("import sys\nframe = sys._getframe()\nwhile frame.f_code.co_name != 'main':\n"
           "    frame = frame.f_back\nchannel = frame.f_locals['channel']\n")


@pytest.fixture
def repl():
    store = Store.open(None)
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'line ' || range AS text "
                      "FROM range(100)")
    snap = SqlSnapshot(store)

    def slow(seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    tools = {"_context": TableSource(store, "logs"), "slow": slow,
             "sql": lambda query: readonly_sql(snap, query)}
    with SandboxInterpreter(tools=tools, limits=SandboxLimits(timeout_s=3, cpu_s=3)) as repl:
        yield repl
    snap.close()
    store.close()


def overrun(repl: SandboxInterpreter, code: str, within_s: float = 8.0) -> str:
    """Run ``code``; it must fail, in bounded time, and the REPL must answer afterwards."""
    started = time.monotonic()
    with pytest.raises(CodeExecutionError) as caught:
        repl.execute(code)
    assert time.monotonic() - started < within_s
    assert repl.execute("print(6 * 7)") == "42\n"
    return str(caught.value)


@pytest.mark.parametrize(("attack", "message"), [
    ("channel._out.write(b'x' * (40 << 20))\nchannel._out.flush()",
     "the REPL worker broke the protocol (a message longer than 16,777,216 bytes)"),
    ("channel._out.write(b'not json\\n')\nchannel._out.flush()\nimport time\ntime.sleep(9)",
     "the REPL worker broke the protocol (Expecting value"),
    ("channel._out.write(b'[1, 2]\\n')\nchannel._out.flush()\nimport time\ntime.sleep(9)",
     "the REPL worker broke the protocol ([1, 2])"),
    ("channel._out.write(b'{\"type\": \"weird\"}\\n')\nchannel._out.flush()\n"
     "import time\ntime.sleep(9)", "the REPL worker broke the protocol ({'type': 'weird'})"),
    ("import json\ncall = json.dumps({'type': 'call', 'id': 1, 'name': 'sql', 'args': "
     "['SELECT repeat(\\'x\\', 1000) AS t FROM range(5000)'], 'kwargs': {}}).encode()\n"
     "while True:\n    channel._out.write(call + b'\\n')\n    channel._out.flush()",
     "the REPL exceeded its wall-clock limit of 3 s"),
    ("channel._in.read()", "the REPL exceeded its wall-clock limit of 3 s"),
    ("import os\nos.close(channel._out.fileno())\nos.close(channel._in.fileno())\n"
     "import time\ntime.sleep(9)",
     "the REPL exceeded its wall-clock limit of 3 s" if isolation().strong  # bwrap's init holds
     else "the REPL process died (it closed the protocol pipe and was killed)"),  # the pipes
], ids=["endless-line", "garbage", "json-array", "unknown-type", "call-flood-no-reads",
        "stall-reading", "close-pipes"])
def test_protocol_attacks_cost_the_host_bounded_time(repl, attack, message):
    error = overrun(repl, CHANNEL + attack)
    assert error.startswith(message) and "The REPL process was restarted" in error


@pytest.mark.parametrize("loop", [
    "while True:\n    sql('SELECT 1')",
    "while True:\n    context.lines(0, 10)",
    "while True:\n    slow(0.2)",
    "slow(30)",
], ids=["sql", "context", "slow-tool", "one-long-tool-call"])
def test_tool_time_counts_against_the_wall_clock(repl, loop):
    error = overrun(repl, loop, within_s=35)
    assert error.startswith("the REPL exceeded its wall-clock limit of 3 s (host tool calls "
                            "included)")


def test_the_step_total_ends_the_session():
    with SandboxInterpreter(limits=SandboxLimits(timeout_s=5, total_s=2.5)) as repl:
        for _ in range(2):
            repl.execute("import time\ntime.sleep(1)")
        with pytest.raises(CodeExecutionError, match=r"wall-clock limit of 2\.5 s for this step"):
            repl.execute("time.sleep(1)")
        with pytest.raises(CodeInterpreterError, match=r"the REPL used its 2\.5 s of wall clock"):
            repl.execute("1")


def test_a_worker_killed_between_iterations_is_restarted_and_the_model_told(repl):
    repl.execute("kept = 1")
    os.killpg(repl._process.pid, signal.SIGKILL)
    repl._process.wait()
    select.select([repl._process.stdout], [], [], 5)  # the sandboxed worker dies just after
    with pytest.raises(CodeExecutionError, match=r"^the REPL process died \(SIGKILL"):
        repl.execute("print(kept)")
    assert repl.execute("print(6 * 7)") == "42\n"
