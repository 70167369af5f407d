"""Templates and dedup: variable parts masked; 200K repetitive lines collapse to < 1% rows."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from rlm_dsl.runtime.logs import load_log, template_sql
from rlm_dsl.runtime.logs.templates import mine_templates_sql


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("took 12 ms for 10.0.0.7:8080", "took <*> ms for <*>"),
        ("request 3f2b8c1e-9a4d-4b6e-8f00-1234567890ab done", "request <*> done"),
        ("at 2026-03-14T09:12:03.412Z retry", "at <*> retry"),
        ("connection from 1.2.3.4 () at Fri Jun 17 07:07:00 2005", "connection from <*> () at <*>"),
        ("open /var/log/app2/x.log: denied", "open <*> denied"),
        ("logname= uid=0 user=root rhost=host.example.com", "logname= uid=<*> user=<*> rhost=<*>"),
        ("worker-3 exited with -1", "<*> exited with <*>"),
        ("no variables here", "no variables here"),
    ],
)
def test_template_masks(message, template):
    assert duckdb.execute(f"SELECT {template_sql('?')}", [message]).fetchone()[0] == template


def test_mining_merges_a_position_with_many_values_and_keeps_events_apart():
    messages = [
        *(f"session opened for user {u}" for u in ("alice", "bob", "carol", "dave")),
        "session closed for user alice",
        "session closed for user bob",
        "connection from 10.0.0.1 () at x",
        "connection from 10.0.0.2 (gw1.example.com) at x",
        "Accepted password for alice",
    ]
    con = duckdb.connect()
    con.execute("CREATE TABLE m AS SELECT * FROM unnest(?) WITH ORDINALITY t(msg, i)", [messages])
    mined = con.execute(f"SELECT template FROM ({mine_templates_sql('m', 'i', 'msg')}) ORDER BY i")
    assert [r[0] for r in mined.fetchall()] == [
        *["session opened for user <*>"] * 4,  # 4 users: a variable
        "session closed for user alice",  # 2 values without a <*>: kept apart
        "session closed for user bob",
        *["connection from <*> <*> at x"] * 2,  # "()" next to a masked "(gw1…)": a variable
        "Accepted password for alice",
    ]


def test_dedup_of_200k_repetitive_lines(store, tmp_path: Path, repetitive_log):
    path = tmp_path / "repetitive.log"
    repetitive_log(path, 200_000)
    report = load_log(store, "logs", [str(path)], dedup=True)
    assert report.rows == 200_000  # rows parsed before collapsing
    n, total, ids = store.con.execute(
        "SELECT count(*), sum(count), list(id ORDER BY id) = range(count(*)) FROM logs"
    ).fetchone()
    assert n < 2_000  # < 1% of the lines reach the LM
    assert (total, ids) == (200_000, True)
    error = store.con.execute(
        "SELECT line_no, end_line_no, count, template, text FROM logs WHERE level = 'ERROR'"
    ).fetchall()
    assert error == [
        (
            150001,
            150001,
            1,
            "disk full on <*>",
            "2026-03-14 04:10:00 ERROR disk full on /dev/sda1",
        )
    ]
    first = store.con.execute(
        "SELECT line_no, end_line_no, count, ts, last_ts, template, text FROM logs WHERE id = 0"
    ).fetchone()
    assert first[:3] == (1, 199_993, 16_666)
    assert (str(first[3]), str(first[4])) == ("2026-03-14 00:00:00", "2026-03-14 05:33:19")
    assert first[5] == "GET <*> <*> in <*> ms"
    assert first[6] == (
        "2026-03-14 00:00:00 INFO GET /api/items/0 200 in 0 ms (repeated 16666 times)"
    )


def test_dedup_keeps_levels_apart(store, write_log):
    path = write_log(
        "x.log",
        "2026-03-14T09:00:00Z INFO job 1 done\n"
        "2026-03-14T09:00:01Z INFO job 2 done\n"
        "2026-03-14T09:00:02Z ERROR job 3 done\n",
    )
    load_log(store, "logs", [path], dedup=True)
    assert store.con.execute("SELECT level, count, template FROM logs ORDER BY id").fetchall() == [
        ("INFO", 2, "job <*> done"),
        ("ERROR", 1, "job <*> done"),
    ]
