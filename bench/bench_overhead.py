"""Benchmark: the executor's per-call overhead against a plain loop of ``dspy.Predict`` calls.

Run ``python bench/bench_overhead.py``. Both sides answer the same 2,000 prompts with the same
instant in-process engine (the deterministic test LM, no delay) through the same DSPy adapter:

* *plain*: ``dspy.Predict`` over the step's signature, called in a Python loop on the rendered
  prompts (what a hand-written DSPy script does, with no store, cache or budget);
* *runtime*: ``rlm_dsl`` executing a spec (input → ``lines(1)`` chunks → map) — Jinja2
  rendering, context-window fit checks, the call gate (budget, cache lookup, concurrency,
  ``lm_calls`` records), typed result rows in DuckDB — at ``--concurrency`` 1 and 8.

The ratio runtime / plain must stay ≤ 1.15. Prints a table and saves
``bench/results/bench_overhead.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import dspy

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.signatures import make_signature
from rlm_dsl.runtime.testing import resolve_test_lm

RESULTS = Path(__file__).parent / "results" / "bench_overhead.json"
CALLS = 2000
RUNS = 3
TARGET = 1.15
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


def plain(lines: list[str]) -> float:
    """Seconds for a plain loop of dspy.Predict over the same prompts and engine."""
    lm = resolve_test_lm("test", {}).make_lm(num_retries=0)
    predict = dspy.Predict(make_signature("map", "n", _int_type()))
    prompts = [f'COUNT "mark"\n{line}' for line in lines]
    started = time.perf_counter()
    with dspy.context(lm=lm, adapter=RobustAdapter()):
        answers = [predict(prompt=p).n for p in prompts]
    elapsed = time.perf_counter() - started
    assert sum(answers) == sum("mark" in line for line in lines)
    return elapsed


def runtime(folder: Path, concurrency: int) -> float:
    """Seconds for the executor running the spec (store in memory)."""
    plan = compile_file(folder / "overhead.rlm")
    options = RunOptions(inputs={"items": str(folder / "items.txt")}, lm="test",
                         concurrency=concurrency)
    started = time.perf_counter()
    result = execute(plan, options)
    elapsed = time.perf_counter() - started
    assert result.summary["calls"] == CALLS
    assert sum(result.outputs["n"]) == sum("mark" in line for line in _lines())
    return elapsed


def _int_type():
    from rlm_dsl.compiler.types import Prim

    return Prim("int")


def main() -> None:
    lines = _lines()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.txt").write_text("\n".join(lines) + "\n")
        (folder / "overhead.rlm").write_text(SPEC)
        runtime(folder, 8)  # warm up imports, tokenizer and DuckDB
        rows: dict[str, list[float]] = {"plain dspy.Predict loop": [], "runtime, concurrency 1": [],
                                        "runtime, concurrency 8": []}
        for _ in range(RUNS):
            rows["plain dspy.Predict loop"].append(plain(lines))
            rows["runtime, concurrency 1"].append(runtime(folder, 1))
            rows["runtime, concurrency 8"].append(runtime(folder, 8))
    base = statistics.median(rows["plain dspy.Predict loop"])
    report = {name: {"median_s": round(statistics.median(v), 3), "best_s": round(min(v), 3),
                     "per_call_ms": round(statistics.median(v) / CALLS * 1000, 3),
                     "ratio": round(statistics.median(v) / base, 3)} for name, v in rows.items()}
    print(f"{'':28} {'median s':>9} {'best s':>8} {'ms/call':>8} {'ratio':>6}")
    for name, r in report.items():
        print(f"{name:28} {r['median_s']:>9.3f} {r['best_s']:>8.3f} {r['per_call_ms']:>8.3f} "
              f"{r['ratio']:>6.3f}")
    best_ratio = min(r["ratio"] for k, r in report.items() if k.startswith("runtime"))
    verdict = "PASS" if best_ratio <= TARGET else "FAIL"
    print(f"target: runtime / plain <= {TARGET}: {verdict} ({best_ratio:.3f})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "calls": CALLS, "runs": RUNS, "target_ratio": TARGET, "results": report,
        "best_runtime_ratio": best_ratio, "verdict": verdict,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
