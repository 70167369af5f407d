"""Benchmark: the executor's per-call overhead against a plain loop of ``dspy.Predict`` calls.

Run ``python bench/bench_overhead.py``. Every variant answers the same 2,000 prompts with the same
instant in-process engine (the deterministic test LM, no delay):

* *plain*: ``dspy.Predict`` over the step's signature, called in a Python loop on the rendered
  prompts — what a hand-written DSPy script does, with no store, cache or budget — with DSPy's
  default ``ChatAdapter`` (the baseline of the target), and again with rlm-dsl's
  ``RobustAdapter`` (same prompts; it builds each signature's system message once);
* *runtime*: ``rlm_dsl`` executing a spec (input → ``lines(1)`` chunks → map) — Jinja2
  rendering, context-window fit checks, the call gate (budget, cache lookup, concurrency,
  ``lm_calls`` records), typed result rows in DuckDB — at ``--concurrency`` 1 and 8. Its steps
  call the predictor's adapter themselves when nothing observes the predictor
  (``runtime/steps/predict.py``), where the loops go through ``Predict.forward``.

Each variant runs in its own fresh process (one warm-up run, then timed runs; the variants take
turns over ``ROUNDS`` rounds): in one shared process the variants slowed each other (a runtime run
measured 0.69 s after one plain loop and 0.83 s after two). Ratios compare best wall times (the
shared 2-core build machine is noisy; best-of is the stable statistic); the table also shows
medians and process CPU time (all threads). A runtime run also pays a start-up that does not
grow with the calls (DuckDB store, input, chunks, tables: tens of ms, a tenth of these 2,000
instant calls), so each runtime process also times the same spec over a one-line input: *per
call* is (whole run - one-line run) / (calls - 1), the plain loop's is its time / calls. Every
variant is CPU-bound (the engine answers at once), so on an idle machine wall time equals CPU
time; on this shared one a loaded spell stretches wall time by whatever share of the 2 cores the
process got, so the targets are judged on CPU time per call (best of the runs), wall time shown
beside it. Targets (issue 19): the runtime at concurrency 1 and 8 within 1.05 x the plain
``ChatAdapter`` loop, and at concurrency 1 within 1.2 x the loop with the same adapter — per
call, with the whole-run ratios reported too. Prints a table and saves
``bench/results/bench_overhead.json``.
"""

from __future__ import annotations

import json
import os
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


def runtime(folder: Path, concurrency: int, db: str | None = None,
            items: str = "items.txt") -> tuple[float, float]:
    """Seconds for the executor running the spec over ``items`` (store in memory, or the file
    ``db``)."""
    plan = compile_file(folder / "overhead.rlm")
    if db is not None:
        Path(db).unlink(missing_ok=True)
    options = RunOptions(inputs={"items": str(folder / items)}, lm="test",
                         concurrency=concurrency, db=db)
    started, cpu = time.perf_counter(), time.process_time()
    result = execute(plan, options)
    elapsed = time.perf_counter() - started, time.process_time() - cpu
    lines = (folder / items).read_text().splitlines()
    assert result.summary["calls"] == len(lines)
    assert sum(result.outputs["n"]) == sum("mark" in line for line in lines)
    return elapsed


class _WithoutJournal(Writer):
    def __init__(self, store: Store, journal: str | None = None) -> None:
        super().__init__(store)


def _int_type():
    from rlm_dsl.compiler.types import Prim

    return Prim("int")


def measure(variant: str) -> list[tuple[float, ...]]:
    """One process's share: a warm-up run of ``variant``, then ``RUNS`` timed ones: (wall, CPU,
    wall and CPU of the one-line run — 0 for a plain loop, which has no start-up)."""
    lines = _lines()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.txt").write_text("\n".join(lines) + "\n")
        (folder / "one.txt").write_text(lines[0] + "\n")
        (folder / "overhead.rlm").write_text(SPEC)
        if variant.startswith("runtime-"):
            concurrency = int(variant.split("-")[1])
            db = str(folder / "run.duckdb") if "-db" in variant else None
            if variant.endswith("nojournal"):  # the same --db run without the call journal
                executor.Writer = _WithoutJournal
            runtime(folder, concurrency, db)
            return [(*runtime(folder, concurrency, db),
                     *runtime(folder, concurrency, db, "one.txt")) for _ in range(RUNS)]
        adapter = RobustAdapter if variant == "plain-robust" else dspy.ChatAdapter
        return [(*plain(lines, adapter()), 0.0, 0.0) for _ in range(RUNS + 1)][1:]


def _in_process(variant: str) -> list[tuple[float, ...]]:
    out = subprocess.run([sys.executable, __file__, "--variant", variant], check=True,
                         capture_output=True, text=True).stdout
    return [tuple(pair) for pair in json.loads(out.strip().splitlines()[-1])]


def main() -> None:
    rows: dict[str, list[tuple[float, ...]]] = {name: [] for name in VARIANTS}
    for _ in range(ROUNDS):
        for name, variant in VARIANTS.items():
            rows[name].extend(_in_process(variant))
    report = {name: _summary(v) for name, v in rows.items()}
    plain_, same = report["plain dspy.Predict loop"], report["plain loop, RobustAdapter"]
    for r in report.values():
        r["wall_ratio"] = round(r["best_wall_s"] / plain_["best_wall_s"], 3)
        r["cpu_ratio"] = round(r["best_cpu_s"] / plain_["best_cpu_s"], 3)
        r["per_call_ratio"] = round(r["cpu_ms_per_call"] / plain_["cpu_ms_per_call"], 3)
        r["per_call_vs_same_adapter"] = round(r["cpu_ms_per_call"] / same["cpu_ms_per_call"], 3)
        r["wall_per_call_ratio"] = round(r["wall_ms_per_call"] / plain_["wall_ms_per_call"], 3)
    print(f"{'':26} {'best s':>7} {'median s':>9} {'cpu s':>7} {'start s':>8} "
          f"{'wall ms/call':>12} {'cpu ms/call':>11} {'call x':>7} {'wall x':>7} {'run x':>6}")
    for name, r in report.items():
        print(f"{name:26} {r['best_wall_s']:>7.3f} {r['median_wall_s']:>9.3f} "
              f"{r['best_cpu_s']:>7.3f} {r['start_up_s']:>8.3f} {r['wall_ms_per_call']:>12.3f} "
              f"{r['cpu_ms_per_call']:>11.3f} {r['per_call_ratio']:>7.3f} "
              f"{r['wall_per_call_ratio']:>7.3f} {r['wall_ratio']:>6.3f}")
    targets = {
        f"runtime, concurrency {n} CPU per call <= {TARGET} x plain loop":
            report[f"runtime, concurrency {n}"]["per_call_ratio"] <= TARGET for n in (1, 8)}
    same_ratio = report["runtime, concurrency 1"]["per_call_vs_same_adapter"]
    targets[f"runtime CPU per call <= {SAME_ADAPTER_TARGET} x loop with the same adapter"] = (
        same_ratio <= SAME_ADAPTER_TARGET)
    verdict = "PASS" if all(targets.values()) else "FAIL"
    for name, ok in targets.items():
        print(f"target: {name}: {'PASS' if ok else 'FAIL'}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "calls": CALLS, "rounds": ROUNDS, "runs_per_round": RUNS, "target_ratio": TARGET,
        "same_adapter_target": SAME_ADAPTER_TARGET, "results": report,
        "targets": {name: "PASS" if ok else "FAIL" for name, ok in targets.items()},
        "runtime_vs_same_adapter": same_ratio, "verdict": verdict,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }, indent=2) + "\n")


def _summary(runs: list[tuple[float, ...]]) -> dict[str, float]:
    """Best and median wall, best CPU, best one-line run, and the per-call times they give."""
    walls, cpus, one_walls, one_cpus = zip(*runs, strict=True)
    calls = CALLS - (1 if min(one_cpus) else 0)  # the one-line run made one call
    return {"best_wall_s": round(min(walls), 3),
            "median_wall_s": round(statistics.median(walls), 3),
            "best_cpu_s": round(min(cpus), 3), "start_up_s": round(min(one_walls), 3),
            "start_up_cpu_s": round(min(one_cpus), 3),
            "wall_ms_per_call": round((min(walls) - min(one_walls)) / calls * 1e3, 4),
            "cpu_ms_per_call": round((min(cpus) - min(one_cpus)) / calls * 1e3, 4)}


if __name__ == "__main__":
    if sys.argv[1:2] == ["--variant"]:
        print(json.dumps(measure(sys.argv[2])))
    else:
        main()
