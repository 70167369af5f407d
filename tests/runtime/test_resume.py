"""Never lose finished work: resume after SIGKILL, budget exhaustion, faults and --retry-failed."""

from __future__ import annotations

import signal
import time
from pathlib import Path

ITEMS_SPEC = '''
    recipe items "Count bad items."
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> n: int with retries=1 """
      COUNT "bad"
      {{ chunk.text }}
    """
    reduce n -> total by sql "SELECT sum(n) AS total, count(*) AS rows FROM {{ input }}"
    output total
'''


def test_resume_after_sigkill_repeats_no_finished_call(tmp_path, spec, run_spec, query,
                                                         rlm_process):
    data = tmp_path / "many.txt"
    data.write_text("".join(f"item {i} {'bad' if i % 3 == 0 else 'ok'}\n" for i in range(160)))
    path = spec(ITEMS_SPEC)
    reference = run_spec(path, inputs={"items": str(data)})
    db = tmp_path / "run.duckdb"
    args = ("run", path, "--input", f"items={data}", "--lm", "test:delay=0.05", "--db", db,
            "--concurrency", "2")
    first = rlm_process(*args)
    wal = Path(f"{db}.wal")
    deadline = time.monotonic() + 120
    while first.poll() is None and time.monotonic() < deadline:
        if wal.exists() and wal.stat().st_size > 90_000:  # about a third of the map recorded
            first.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    (before,) = query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached")[0]
    assert 0 < before < 160
    second = rlm_process(*args)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    (after,) = query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached")[0]
    assert after == reference.summary["calls"] == 160
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM n")[0] == (160, 160)
    assert query(db, "SELECT total, rows FROM total") == [(54, 160)]
    assert '"total": 54' in out


def test_budget_exhaustion_keeps_results_and_says_how_to_resume(tmp_path, spec, items, cli,
                                                                  query):
    path = spec(ITEMS_SPEC)
    db = tmp_path / "run.duckdb"
    code, out, err = cli("run", path, "--input", f"items={items}", "--lm", "test", "--db", db,
                         "--max-calls", "10")
    assert code == 3
    assert err.splitlines() == [
        "budget exhausted: --max-calls 10 reached",
        f"step 'map-n' ({path}:4:1): 10 of 100 rows done, 90 missing",
        f"step 'reduce-total' ({path}:8:1): not run",
        f"finished results are kept in {db}",
        f"resume with: rlm run {path} --input items={items} --lm test --db {db} "
        "--max-calls 109",
    ]
    assert query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached") == [(10,)]
    assert query(db, "SELECT count(*) FROM n") == [(10,)]
    code, out, err = cli("run", path, "--input", f"items={items}", "--lm", "test", "--db", db,
                         "--max-calls", "109", "--json")
    assert code == 0
    assert '"total": 25' in out and '"rows": 100' in out
    assert "calls: 90 · cache hits: 0" in err


def test_faults_go_to_failures_and_retry_failed_finishes_them(tmp_path, spec, items, cli, query):
    path = spec(ITEMS_SPEC)
    db = tmp_path / "run.duckdb"
    lm = "test:fail=0.2,garbage=0.1,seed=1"
    code, out, err = cli("run", path, "--input", f"items={items}", "--lm", lm, "--db", db)
    assert code == 4  # the outputs miss 9 rows: not a success
    assert "failures: 9 (rows in the failures table; re-run with --retry-failed)" in err
    assert "run incomplete: 9 row(s) failed after their retries; the outputs miss them" in err
    assert query(db, "SELECT count(*) FROM n") == [(91,)]
    failed = query(db, "SELECT chunk_id, attempts, error FROM failures ORDER BY chunk_id")
    assert len(failed) == 9 and all(attempts == 2 for _, attempts, _ in failed)
    errors = {error.split(":")[0] for _, _, error in failed}
    assert errors <= {"unparseable LM answer", "LMRateLimitError", "LMTimeoutError"}
    retried = query(db, "SELECT count(*) FROM lm_calls WHERE error IS NOT NULL")[0][0]
    assert retried > 9  # transient errors were retried, most of them successfully
    code, out, err = cli("run", path, "--input", f"items={items}", "--lm", lm, "--db", db,
                         "--retry-failed", "--json")
    assert code == 0
    assert "failures: 0" in err
    assert '"total": 25' in out and '"rows": 100' in out
    assert query(db, "SELECT count(*) FROM failures WHERE NOT resolved") == [(0,)]


def test_rerun_with_the_same_db_repeats_no_call(tmp_path, spec, items, run_spec):
    path = spec(ITEMS_SPEC)
    db = str(tmp_path / "run.duckdb")
    first = run_spec(path, inputs={"items": str(items)}, db=db)
    again = run_spec(path, inputs={"items": str(items)}, db=db)
    assert first.summary["calls"] == 100 and again.summary["calls"] == 0
    assert again.outputs == first.outputs == {"total": [{"total": 25, "rows": 100}]}


def test_rlm_step_is_dispatched_and_shares_the_budget(tmp_path, spec, items, cli, query):
    path = spec('''
        recipe free "Free-form."
        input items: lines
        rlm items -> answer: str with max_iterations=3, max_llm_calls=5 """
          How many items are bad?
        """
        output answer
    ''')
    db = tmp_path / "run.duckdb"
    code, _, err = cli("run", path, "--input", f"items={items}", "--lm", "test", "--db", db,
                       "--max-calls", "1")  # the action's llm_query is the second call
    assert code == 3
    assert err.splitlines()[:2] == ["budget exhausted: --max-calls 1 reached",
                                    f"step 'rlm-answer' ({path}:3:1): not run"]
    assert query(db, "SELECT DISTINCT step FROM lm_calls WHERE NOT cached") == [("rlm-answer",)]
    assert query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached") == [(1,)]


def test_a_failed_step_is_resolved_when_a_later_run_finishes_it(tmp_path, spec, items, cli,
                                                                 query, monkeypatch):
    path = spec('''
        recipe sf "Count, then add up with another LM."
        lm base = "test"
        lm judge = env("RLM_JUDGE", "test:fail=1.0")
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> n: int using base """
          COUNT "bad"
          {{ chunk.text }}
        """
        reduce n -> total: int by concat using judge with retries=0 """
          SUM {{ items | tojson }}
        """
        output total
    ''')
    db = tmp_path / "run.duckdb"
    args = ("run", path, "--input", f"items={items}", "--db", db)
    monkeypatch.delenv("RLM_JUDGE", raising=False)
    assert cli(*args)[0] == 4  # the reduce failed: its output is missing
    open_failures = "SELECT step, chunk_id FROM failures WHERE NOT resolved"
    assert query(db, open_failures) == [("reduce-total", None)]
    monkeypatch.setenv("RLM_JUDGE", "test")
    code, _, err = cli(*args)
    assert code == 0 and "failures: 0" in err
    assert query(db, open_failures) == []
    assert query(db, "SELECT count(*) FROM failures WHERE resolved") == [(1,)]
