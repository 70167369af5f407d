"""Benchmark: the executor's per-call overhead against a plain loop of ``dspy.Predict`` calls.

Run ``python bench/bench_overhead.py``. Every variant answers the same 2,000 prompts with the same
instant in-process engine (the deterministic test LM, no delay):

* *plain*: ``dspy.Predict`` over the step's signature, called in a Python loop on the rendered
  prompts — what a hand-written DSPy script does, with no store, cache or budget — with DSPy's
  default ``ChatAdapter`` (the baseline of the target), and again with rlm-dsl's
  ``RobustAdapter`` (same prompts; it builds each signature's system message once);
* *runtime*: ``rlm_dsl`` executing a spec (input → ``lines(1)`` chunks → map) — Jinja2
  rendering, context-window fit checks, the call gate (budget, cache lookup, concurrency,
  ``lm_calls`` records), typed result rows in DuckDB — at ``--concurrency`` 1 and 8.

Each variant runs in its own fresh process (one warm-up run, then timed runs; the variants take
turns over ``ROUNDS`` rounds): in one shared process the variants slowed each other (a runtime run
measured 0.69 s after one plain loop and 0.83 s after two). The ratio compares best wall times
(the shared 2-core build machine is noisy; best-of is the stable statistic); the table also shows
medians and process CPU time (all threads). The ratio runtime / plain (ChatAdapter) must stay ≤
1.15. Prints a table and saves ``bench/results/bench_overhead.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dspy

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime import executor
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.signatures import make_signature
from rlm_dsl.runtime.lm.testing import resolve_test_lm
from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer

RESULTS = Path(__file__).parent / "results" / "bench_overhead.json"
CALLS = 2000
ROUNDS = 3  # processes per variant
RUNS = 3  # timed runs per process
VARIANTS = {  # name → what one process runs
    "plain dspy.Predict loop": "plain",
    "plain loop, RobustAdapter": "plain-robust",
    "runtime, concurrency 1": "runtime-1",
    "runtime, concurrency 8": "runtime-8",
    "runtime, --db, journal": "runtime-1-db",
    "runtime, --db, no journal": "runtime-1-db-nojournal",
}
TARGET = 1.05  # issue 19 (issue 3 asked 1.15)
SAME_ADAPTER_TARGET = 1.2
SPEC = '''recipe overhead "Count marked lines."
input items: lines
chunk items -> pieces by lines(1)
map pieces -> n: int """
  COUNT "mark"
  {{ chunk.text }}
"""
output n
'''


def _lines() -> list[str]:
    return [f"item {i} {'mark' if i % 3 == 0 else 'plain'} payload {i * 7919 % 10007}"
            for i in range(CALLS)]


def plain(lines: list[str], adapter: dspy.Adapter | None = None) -> tuple[float, float]:
    """Seconds for a plain loop of dspy.Predict over the same prompts and engine, with DSPy's
    default ``ChatAdapter`` or the given one."""
    lm = resolve_test_lm("test", {}).make_lm(num_retries=0)
    predict = dspy.Predict(make_signature("map", "n", _int_type()))
    prompts = [f'COUNT "mark"\n{line}' for line in lines]
    started, cpu = time.perf_counter(), time.process_time()
    with dspy.context(lm=lm, adapter=adapter or dspy.ChatAdapter()):
        answers = [predict(prompt=p).n for p in prompts]
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    assert sum(answers) == sum("mark" in line for line in lines)
    return elapsed


def runtime(folder: Path, concurrency: int, db: str | None = None) -> tuple[float, float]:
    """Seconds for the executor running the spec (store in memory, or the file ``db``)."""
    plan = compile_file(folder / "overhead.rlm")
    if db is not None:
        Path(db).unlink(missing_ok=True)
    options = RunOptions(inputs={"items": str(folder / "items.txt")}, lm="test",
                         concurrency=concurrency, db=db)
    started, cpu = time.perf_counter(), time.process_time()
    result = execute(plan, options)
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    assert result.summary["calls"] == CALLS
    assert sum(result.outputs["n"]) == sum("mark" in line for line in _lines())
    return elapsed


class _WithoutJournal(Writer):
    def __init__(self, store: Store, journal: str | None = None) -> None:
        super().__init__(store)


def _int_type():
    from rlm_dsl.compiler.types import Prim

    return Prim("int")


def measure(variant: str) -> list[tuple[float, float]]:
    """One process's share: a warm-up run of ``variant``, then ``RUNS`` timed ones."""
    lines = _lines()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.txt").write_text("\n".join(lines) + "\n")
        (folder / "overhead.rlm").write_text(SPEC)
        if variant.startswith("runtime-"):
            concurrency = int(variant.split("-")[1])
            db = str(folder / "run.duckdb") if "-db" in variant else None
            if variant.endswith("nojournal"):  # the same --db run without the call journal
                executor.Writer = _WithoutJournal
            return [runtime(folder, concurrency, db) for _ in range(RUNS + 1)][1:]
        adapter = RobustAdapter if variant == "plain-robust" else dspy.ChatAdapter
        return [plain(lines, adapter()) for _ in range(RUNS + 1)][1:]


def _in_process(variant: str) -> list[tuple[float, float]]:
    out = subprocess.run([sys.executable, __file__, "--variant", variant], check=True,
                         capture_output=True, text=True).stdout
    return [tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])]


def main() -> None:
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in VARIANTS}
    for _ in range(ROUNDS):
        for name, variant in VARIANTS.items():
            rows[name].extend(_in_process(variant))
    base_wall = min(w for w, _ in rows["plain dspy.Predict loop"])
    base_cpu = min(c for _, c in rows["plain dspy.Predict loop"])
    report = {name: {"best_wall_s": round(min(w for w, _ in v), 3),
                     "median_wall_s": round(statistics.median(w for w, _ in v), 3),
                     "best_cpu_s": round(min(c for _, c in v), 3),
                     "ms_per_call": round(min(w for w, _ in v) / CALLS * 1000, 3),
                     "wall_ratio": round(min(w for w, _ in v) / base_wall, 3),
                     "cpu_ratio": round(min(c for _, c in v) / base_cpu, 3)}
              for name, v in rows.items()}
    print(f"{'':26} {'best s':>7} {'median s':>9} {'cpu s':>7} {'ms/call':>8} {'wall x':>7} "
          f"{'cpu x':>6}")
    for name, r in report.items():
        print(f"{name:26} {r['best_wall_s']:>7.3f} {r['median_wall_s']:>9.3f} "
              f"{r['best_cpu_s']:>7.3f} {r['ms_per_call']:>8.3f} {r['wall_ratio']:>7.3f} "
              f"{r['cpu_ratio']:>6.3f}")
    best_ratio = min(r["wall_ratio"] for k, r in report.items() if k.startswith("runtime"))
    same = report["runtime, concurrency 1"]["best_wall_s"] / report[
        "plain loop, RobustAdapter"]["best_wall_s"]
    verdict = "PASS" if best_ratio <= TARGET and same <= SAME_ADAPTER_TARGET else "FAIL"
    print(f"targets: runtime / plain (best wall time) <= {TARGET} ({best_ratio:.3f}) and "
          f"runtime / plain loop with the same adapter <= {SAME_ADAPTER_TARGET}: {verdict}; "
          f"runtime / plain loop with the same adapter: {same:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "calls": CALLS, "rounds": ROUNDS, "runs_per_round": RUNS, "target_ratio": TARGET,
        "results": report, "best_runtime_ratio": best_ratio,
        "runtime_vs_same_adapter": round(same, 3), "verdict": verdict,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--variant"]:
        print(json.dumps(measure(sys.argv[2])))
    else:
        main()
