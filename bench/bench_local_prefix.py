"""Benchmark: prompt-prefix reuse on the embedded local model (issue 19, item 4).

Run ``python bench/bench_local_prefix.py [--chunks N]``. Each call is what a map step sends:
``dspy.Predict`` with :class:`RobustAdapter` over the step's signature (system message with the
instructions and field structure, then the chunk), through :class:`LlamaEngine` on one loaded
model, temperature 0. Two workloads:

* *one map*: N chunks of one step, one after another;
* *two maps taking turns*: two steps with different instructions whose calls alternate (what
  overlapping branches, or an ``rlm`` step's sub-calls, do to the one local model), N each.

Variants, in one process on one model: *empty cache* (``reset()`` before every call: every
prompt token is evaluated), *llama-cpp-python's reuse* (the engine without kept caches: only the
previous call's prefix is reused), *kept per-step caches* (:class:`PrefixStates`, the runtime's
default). Prompt tokens evaluated come from llama.cpp's perf counters; tokens/s is prompt plus
generated tokens sent per wall second; answers must be identical across variants. Prints a table
and saves ``bench/results/local_prefix.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import dspy
import llama_cpp

from rlm_dsl.compiler.types import Prim
from rlm_dsl.runtime.lm import resolve_lm
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.gate import call_scope
from rlm_dsl.runtime.lm.local import LlamaEngine, PrefixStates
from rlm_dsl.runtime.lm.signatures import make_signature

RESULTS = Path(__file__).resolve().parent / "results" / "local_prefix.json"
STEPS = {  # step → (instructions, prompt template)
    "severity": ("Classify how severe a log line is.",
                 "Say ERROR, WARN or INFO for this log line:\n{line}"),
    "host": ("Find which machine wrote a log line.",
             "Name the host (one word) that wrote this log line:\n{line}"),
}


def log_line(i: int) -> str:
    host, unit = ("web01", "web02", "db01")[i % 3], ("nginx", "app", "postgres")[i % 3]
    level = ("request served", "slow request", "FATAL: disk full")[i % 3]
    return f"Nov 24 10:{i // 60:02d}:{i % 60:02d} {host} {unit}[{1000 + i}]: {level} ({i})"


def workload(name: str, chunks: int) -> list[tuple[str, str]]:
    """(step, prompt) in call order."""
    lines = [log_line(i) for i in range(chunks)]
    if name == "one map":
        return [("severity", STEPS["severity"][1].format(line=line)) for line in lines]
    return [(step, STEPS[step][1].format(line=line)) for line in lines for step in STEPS]


def run(engine: LlamaEngine, calls: list[tuple[str, str]], empty_cache: bool,
        max_tokens: int) -> dict:
    llama = engine.llama
    llama.reset()
    llama_cpp.llama_perf_context_reset(llama._ctx.ctx)
    predictors = {step: dspy.Predict(make_signature("map", "answer", Prim("str"), instructions))
                  for step, (instructions, _) in STEPS.items()}
    lm = dspy.LM("local", engine=engine, cache=False, num_retries=0, max_tokens=max_tokens)
    answers, started = [], time.perf_counter()
    with dspy.context(lm=lm, adapter=RobustAdapter(), disable_history=False):
        for step, prompt in calls:
            if empty_cache:
                llama.reset()
            with call_scope(step=step):
                answers.append(predictors[step](prompt=prompt).answer)
    wall = time.perf_counter() - started
    perf = llama_cpp.llama_perf_context(llama._ctx.ctx)
    sent = sum(entry["usage"]["prompt_tokens"] for entry in lm.history)
    generated = sum(entry["usage"]["completion_tokens"] for entry in lm.history)
    return {"calls": len(calls), "prompt_tokens_sent": sent,
            "prompt_tokens_evaluated": perf.n_p_eval, "generated_tokens": generated,
            "wall_s": round(wall, 2), "tokens_per_s": round((sent + generated) / wall, 1),
            "answers": answers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100, help="chunks per step")
    parser.add_argument("--max-tokens", type=int, default=24)
    args = parser.parse_args()
    resolved = resolve_lm("local", {"n_ctx": 2048})
    kept = resolved.engine
    plain = LlamaEngine(kept.llama, kept.lock)
    with_states = LlamaEngine(kept.llama, kept.lock, prefixes=PrefixStates(kept.llama))
    variants = {"empty cache": (plain, True), "llama-cpp-python's reuse": (plain, False),
                "kept per-step caches": (with_states, False)}
    load = os.getloadavg()
    rows = []
    for name in ("one map", "two maps taking turns"):
        calls = workload(name, args.chunks)
        for variant, (engine, empty) in variants.items():
            if name != "one map" and variant == "empty cache":
                continue  # the same per call as for one map, and the slowest: not repeated
            rows.append({"workload": name, "variant": variant,
                         **run(engine, calls, empty, args.max_tokens)})
    for name in ("one map", "two maps taking turns"):
        answers = [r["answers"] for r in rows if r["workload"] == name]
        assert all(a == answers[0] for a in answers), f"{name}: answers differ between variants"
    print(f"{'workload':<22} {'variant':<26} {'calls':>5} {'sent':>7} {'evaluated':>9} "
          f"{'wall s':>7} {'tok/s':>6}")
    for r in rows:
        print(f"{r['workload']:<22} {r['variant']:<26} {r['calls']:>5} "
              f"{r['prompt_tokens_sent']:>7} {r['prompt_tokens_evaluated']:>9} "
              f"{r['wall_s']:>7.1f} {r['tokens_per_s']:>6.1f}")
    print("answers identical across variants: yes")
    report = {"chunks": args.chunks, "max_tokens": args.max_tokens, "rows": rows,
              "load_before": [round(x, 2) for x in load],
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
