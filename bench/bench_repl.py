"""Benchmark of the REPL sandbox: what the isolation costs per iteration and per tool call.

Run ``python bench/bench_repl.py``. Over a 1,000,000-line table in an in-memory store it measures
the sandboxed worker's cold start (network + mount namespace, preloads, uid drop), the round trip
of a trivial execution, one ``sql()`` RPC, paging 1,000 rows through ``context.lines``, a regex
``context.search`` over all rows, and ``llm_query_batched`` of 100 prompts against a fake sub-LM
that sleeps 50 ms (wall time vs. the 5 s a sequential loop would take). Prints a table and saves
``bench/results/repl.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rlm_dsl.runtime.repl import isolation as isolation_module
from rlm_dsl.runtime.repl import sandbox
from rlm_dsl.runtime.repl.sandbox import SandboxInterpreter, isolation
from rlm_dsl.runtime.repl.snapshot import SqlSnapshot
from rlm_dsl.runtime.repl.tools import TableSource, readonly_sql
from rlm_dsl.runtime.store.store import Store

RESULTS = Path(__file__).parent / "results" / "repl.json"
RUNS = 20


def timed(fn: Callable[[], object], runs: int = RUNS) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return {"best_ms": min(samples) * 1e3, "median_ms": statistics.median(samples) * 1e3}


def fake_batched(prompts: list[str]) -> list[str]:
    def one(prompt: str) -> str:
        time.sleep(0.05)
        return str(len(prompt))

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, prompts))


def main() -> None:
    isolation()  # the one-off probe is not part of a worker start
    store = Store.open(None)
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'INFO request ' || range || "
                      "' served in ' || (range % 97) || ' ms' AS text FROM range(1000000)")
    snapshot = SqlSnapshot(store)
    tools = {"_context": TableSource(store, "logs"),
             "sql": lambda query: readonly_sql(snapshot, query),
             "llm_query_batched": fake_batched}
    results: dict[str, dict[str, float]] = {}

    def cold_start() -> None:
        with SandboxInterpreter(tools=tools) as repl:
            repl.execute("1")

    results["worker cold start + first execute"] = timed(cold_start, runs=5)
    strong = sandbox.isolation
    sandbox.isolation = isolation_module._unshare_isolation  # the wrapping before bubblewrap
    try:
        results["same, unshare wrapping (no bwrap)"] = timed(cold_start, runs=5)
    finally:
        sandbox.isolation = strong

    def take_snapshot() -> None:
        fresh = SqlSnapshot(store)
        fresh.cursor().close()
        fresh.close()

    results["sql() snapshot of the 1M-row store"] = timed(take_snapshot, runs=3)
    with SandboxInterpreter(tools=tools) as repl:
        repl.execute("len(context)")
        results["trivial execute round trip"] = timed(lambda: repl.execute("x = 1"))
        results["sql() RPC: SELECT count(*)"] = timed(
            lambda: repl.execute("sql('SELECT count(*) FROM logs')"))
        results["context.lines(500000, 501000)"] = timed(
            lambda: repl.execute("t = context.lines(500000, 501000)"))
        results["context.search over 1M rows"] = timed(
            lambda: repl.execute("h = context.search(r'served in 96 ms$', limit=100)"), runs=5)
        results["llm_query_batched, 100 x 50 ms"] = timed(
            lambda: repl.execute("a = llm_query_batched(['p%d' % i for i in range(100)])"),
            runs=3)
        warnings = list(repl.warnings)
    snapshot.close()
    store.close()
    print(f"{'measure':40} {'best ms':>10} {'median ms':>10}")
    for name, row in results.items():
        print(f"{name:40} {row['best_ms']:10.1f} {row['median_ms']:10.1f}")
    print("sequential llm_query of 100 x 50 ms would take 5000 ms")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "machine": platform.platform(), "isolation": str(isolation()), "warnings": warnings,
        "results": results}, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
