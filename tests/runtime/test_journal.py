"""Zero repeated calls after SIGKILL: every finished answer is in ``<db>.journal`` before use.

The run happens in a subprocess whose LM appends one line per call it actually answers to a
side file (the truth, which ``lm_calls`` cannot tell: a call whose record was lost never shows
up there). The run is killed mid-map, run again with the same ``--db``, and the calls actually
made by both processes together must equal the distinct prompts — nothing answered twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer

ITEMS_SPEC = '''
    recipe items "Count bad items."
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> n: int """
      COUNT "bad"
      {{ chunk.text }}
    """
    reduce n -> total by sql "SELECT sum(n) AS total FROM {{ input }}"
    output total
'''

COUNTING_RLM = """
import dataclasses, os, sys
from rlm_dsl.runtime.lm.resolve import register_backend, resolve_lm

class Counting:
    def __init__(self, inner, log):
        self.inner, self.log = inner, log
    def complete(self, request):
        response = self.inner.complete(request)
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, b"1\\n")
        os.close(fd)
        return response
    def __getattr__(self, name):
        return getattr(self.inner, name)

def counting(model, options):
    inner = resolve_lm("test:delay=0.02", options)
    return dataclasses.replace(inner, model_id=model, engine=Counting(inner.engine, sys.argv[1]))

register_backend("counting", counting)
from rlm_dsl.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def _rlm(log, *args) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", COUNTING_RLM, str(log), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _made(log) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_sigkill_mid_map_repeats_no_finished_call(tmp_path, spec, query):
    data = tmp_path / "many.txt"
    data.write_text("".join(f"item {i} {'bad' if i % 3 == 0 else 'ok'}\n" for i in range(240)))
    recipe, db, log = spec(ITEMS_SPEC), tmp_path / "run.duckdb", tmp_path / "made.log"
    args = ("run", recipe, "--input", f"items={data}", "--lm", "counting", "--db", db,
            "--concurrency", "8", "-q")
    for kill_after in (60, 150):  # two kills, at different points of the map
        first = _rlm(log, *args)
        deadline = time.monotonic() + 120
        while first.poll() is None and time.monotonic() < deadline and _made(log) < kill_after:
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        assert first.returncode == -signal.SIGKILL
    second = _rlm(log, *args)
    _, err = second.communicate(timeout=180)
    assert second.returncode == 0, err
    # Every finished call is recorded once and never sent again. A call the server had answered
    # but the killed process had not yet journaled (the engine counts it before the gate records
    # it: at most the 8 in flight per kill) is the only kind sent twice.
    assert 240 <= _made(log) <= 240 + 2 * 8
    assert query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached")[0] == (240,)
    assert query(db, "SELECT total FROM total") == [(80,)]
    assert not (tmp_path / "run.duckdb.journal").exists()


def test_the_journal_replays_only_what_the_store_lacks(tmp_path):
    db = str(tmp_path / "run.duckdb")
    journal = f"{db}.journal"
    rows = [{"call_id": f"c{i}", "run_id": "r", "response": str(i)} for i in range(3)]
    with Store.open(db) as store:
        store.insert_rows("lm_calls", rows[:1])  # c0 reached the store before the kill
    with open(f"{journal}.writing", "w") as out:
        out.write(json.dumps(rows[0]) + "\n" + json.dumps(rows[1]) + "\n")
    with open(journal, "w") as out:
        out.write(json.dumps(rows[2]) + "\n" + '{"call_id": "c3", "resp')  # cut by the kill
    with Store.open(db) as store:
        writer = Writer(store, journal=journal)
        writer.close()
        got = store.con.execute("SELECT call_id FROM lm_calls ORDER BY call_id").fetchall()
    assert got == [("c0",), ("c1",), ("c2",)]
    assert not (tmp_path / "run.duckdb.journal").exists()
    assert not (tmp_path / "run.duckdb.journal.writing").exists()
