"""``--executor ray``: LM calls answered by Ray worker processes, everything else as locally.

One module-scoped local Ray instance (2 CPUs, no dashboard) serves every test. Each run through
Ray records its :class:`RayEngine` (a recording subclass patched in), so the tests can check which
processes answered and compare that with the ``lm_calls`` rows the driver wrote.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import dspy
import pytest

ray = pytest.importorskip("ray")

from test_resume import ITEMS_SPEC  # noqa: E402  (tests/runtime is on sys.path)

import rlm_dsl  # noqa: E402
from rlm_dsl.runtime.lm import ray_engine  # noqa: E402
from rlm_dsl.runtime.lm.gate import call_scope  # noqa: E402

N = 24
SPEC = ITEMS_SPEC  # the resume tests' spec: COUNT "bad" per line, summed in SQL


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list[ray_engine.RayEngine]:
    """Every RayEngine the runs of one test create, in order."""
    made: list[ray_engine.RayEngine] = []

    class Recording(ray_engine.RayEngine):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ray_engine, "RayEngine", Recording)
    return made


@pytest.fixture
def items(write_items) -> Path:
    return write_items(N)


def calls(query, db: Path) -> list[tuple[str, str]]:
    return query(db, "SELECT cache_key, response FROM lm_calls WHERE NOT cached ORDER BY 1")


def test_cli_map_through_ray_matches_local_and_workers_answer(tmp_path, spec, items, cli, query,
                                                             engines):
    path = spec(SPEC)
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    args = ("run", path, "--input", f"items={items}", "--lm", "test", "--json")
    code, local_out, _ = cli(*args, "--db", local_db)
    assert code == 0
    code, ray_out, err = cli(*args, "--db", ray_db, "--executor", "ray", "--ray-workers", "2")
    assert code == 0, err
    assert json.loads(ray_out)["outputs"] == json.loads(local_out)["outputs"] == {
        "total": [{"total": N // 4, "rows": N}]
    }
    assert "executor: ray (using the running cluster at " in err
    assert "2 worker(s) per model" in err
    assert calls(query, ray_db) == calls(query, local_db)  # same requests, same answers
    (engine,) = engines
    assert len(set(engine.pids)) == 2 and os.getpid() not in engine.pids
    assert set(engine.answered_by) == set(engine.pids)  # both workers answered
    assert sum(engine.answered_by.values()) == len(calls(query, ray_db)) == N


def test_api_run_through_ray_matches_local(tmp_path, spec, items, engines):
    program = rlm_dsl.load(spec(SPEC))
    local = program.run({"items": str(items)}, lm="test")
    remote = program.run({"items": str(items)}, lm="test", executor="ray", ray_workers=2)
    assert remote.outputs == local.outputs
    assert remote.summary["calls"] == local.summary["calls"] == N
    (engine,) = engines
    assert sum(engine.answered_by.values()) == N and os.getpid() not in engine.answered_by


def test_budget_stops_at_cap_and_rerun_repeats_no_call(tmp_path, spec, items, cli, query,
                                                       engines):
    path = spec(SPEC)
    db = tmp_path / "run.duckdb"
    args = ("run", path, "--input", f"items={items}", "--lm", "test", "--db", db,
            "--executor", "ray", "--ray-workers", "2")
    code, _, err = cli(*args, "--max-calls", "5")
    assert code == 3
    assert f"step 'map-n' ({path}:4:1): 5 of {N} rows done, {N - 5} missing" in err
    resume = next(line for line in err.splitlines() if line.startswith("resume with: "))
    assert "--executor ray --ray-workers 2" in resume and "--max-calls " in resume
    assert query(db, "SELECT count(*) FROM n") == [(5,)]
    assert query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached") == [(5,)]
    code, _, err = cli(*args)
    assert code == 0, err
    code, out, err = cli(*args, "--incremental", "--json")  # every row again, via the cache
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert (summary["calls"], summary["cache_hits"]) == (0, N)
    assert query(db, "SELECT count(*), count(DISTINCT cache_key) FROM lm_calls WHERE NOT cached"
                 ) == [(N, N)]
    assert [sum(e.answered_by.values()) for e in engines] == [5, N - 5, 0]


def test_faults_retry_and_fail_exactly_as_locally(tmp_path, spec, items, cli, query, engines):
    path = spec(SPEC)
    local_db, ray_db = tmp_path / "local.duckdb", tmp_path / "ray.duckdb"
    args = ("run", path, "--input", f"items={items}", "--lm", "test:fail=0.3,seed=3")
    assert cli(*args, "--db", local_db)[0] == 4  # rows failed: the outputs miss them
    code, _, err = cli(*args, "--db", ray_db, "--executor", "ray")
    assert code == 4 and "run incomplete:" in err, err
    failures = "SELECT chunk_id, attempts, error FROM failures ORDER BY chunk_id"
    errors = "SELECT chunk_id, error FROM lm_calls WHERE error IS NOT NULL ORDER BY 1, 2"
    assert query(ray_db, failures) == query(local_db, failures) != []
    retried = query(ray_db, errors)
    assert retried == query(local_db, errors)
    assert len(retried) > len(query(ray_db, failures))  # some rows succeeded on their retry
    assert {e.split(":")[0] for _, e in retried} == {"RateLimitError", "TimeoutError"}
    (engine,) = engines
    assert sum(engine.answered_by.values()) == len(calls(query, ray_db))


def test_worker_errors_arrive_as_the_same_types():
    engine = ray_engine.RayEngine("test:fail=1.0,window=60", {}, workers=1)
    short = dspy.lm15.Request(model="test", messages=(dspy.lm15.Message.user("hi"),))
    with call_scope(attempt=0), pytest.raises((dspy.lm15.RateLimitError,
                                               dspy.lm15.TimeoutError)) as raised:
        engine.complete(short)
    assert raised.value.retry_after == 0.0
    long = dspy.lm15.Request(model="test", messages=(dspy.lm15.Message.user("x " * 200),))
    with pytest.raises(dspy.lm15.ContextLengthError):
        engine.complete(long)
    lm = dspy.LM("test", engine=engine, cache=False, num_retries=0)
    with pytest.raises(dspy.utils.exceptions.ContextWindowExceededError):
        lm("x " * 200)
    with pytest.raises(rlm_dsl.errors.LMError, match="unknown test LM option"):
        ray_engine.RayEngine("test:bogus=1", {}, workers=1)
    engine.close()


def test_without_ray_says_how_to_install(spec, items, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, out, err = cli("run", spec(SPEC), "--input", f"items={items}", "--lm", "test",
                         "--executor", "ray")
    assert (code, out) == (1, "")
    assert err.strip() == "--executor ray needs Ray: pip install 'rlm-dsl[ray]'"
