"""Benchmark: prompt-prefix reuse on the embedded local model (issue 19, item 4).

Run ``python bench/bench_local_prefix.py [--chunks N] [--turns]``. Each call is what a map step
sends:
``dspy.Predict`` with :class:`RobustAdapter` over the step's signature (system message with the
instructions and field structure, then the chunk), through :class:`LlamaEngine` on one loaded
model, temperature 0. The target workload (issue 19) is *one map*: N short chunks of one step,
one after another, with prefix reuse off (*empty cache*: ``reset()`` before every call, so every
prompt token is evaluated) against the engine the runtime binds for ``local`` (*runtime engine*:
llama-cpp-python's reuse of the previous call's prefix plus :class:`PrefixStates`). With
``--turns`` it also runs *two maps taking turns*: two steps with different instructions whose
calls alternate (what overlapping branches, or an ``rlm`` step's sub-calls, do to the one local
model), N each, with llama-cpp-python's reuse alone and with the runtime engine.

All variants run in one process on one model. Prompt tokens evaluated come from llama.cpp's perf
counters; tokens/s is prompt plus generated tokens sent per wall second; answers must be
identical across variants. Prints a table and saves ``bench/results/local_prefix.json``.

On a shared machine the load drifts between two variants run one after the other, so
``--interleave`` runs the one-map workload's two variants chunk by chunk instead (each chunk
with reuse off, then through the runtime engine, whose own KV cache is set aside meanwhile and
restored by :class:`PrefixStates` — one ~2 MB copy a call that a real map does not pay) and also
times each call's CPU (llama.cpp on ``--threads 1`` computes in the calling thread), so tokens
per CPU second compare the variants whatever share of the cores the process got. It saves
``bench/results/local_prefix_interleaved.json``.
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
from rlm_dsl.runtime.lm.local import LlamaEngine
from rlm_dsl.runtime.lm.signatures import make_signature

RESULTS = Path(__file__).resolve().parent / "results" / "local_prefix.json"
INTERLEAVED = RESULTS.with_name("local_prefix_interleaved.json")
SET_ASIDE = ("bench: reuse off", 0)  # the prefix key the reuse-off calls run under
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
    if engine.prefixes is not None:  # no variant starts with caches an earlier one kept
        engine.prefixes.saved.clear()
        engine.prefixes.current = None
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


def interleaved(runtime: LlamaEngine, plain: LlamaEngine, calls: list[tuple[str, str]],
                max_tokens: int) -> list[dict]:
    """The one-map workload with reuse off and through the runtime engine, chunk by chunk."""
    llama, prefixes = runtime.llama, runtime.prefixes
    llama.reset()
    prefixes.saved.clear()
    prefixes.current = None
    predictors = {step: dspy.Predict(make_signature("map", "answer", Prim("str"), instructions))
                  for step, (instructions, _) in STEPS.items()}
    lms = {name: dspy.LM("local", engine=engine, cache=False, num_retries=0,
                         max_tokens=max_tokens)
           for name, engine in (("empty cache", plain), ("runtime engine", runtime))}
    totals = {name: {"wall_s": 0.0, "cpu_s": 0.0, "evaluated": 0, "answers": []} for name in lms}
    with dspy.context(adapter=RobustAdapter(), disable_history=False):
        for step, prompt in calls:
            for name, lm in lms.items():
                if name == "empty cache":
                    prefixes.switch_to(SET_ASIDE)  # keeps the runtime step's cache aside
                llama.reset()  # reuse off; before the runtime call: nothing of the other's kept
                if name == "runtime engine":
                    prefixes.current = None
                before = llama_cpp.llama_perf_context(llama._ctx.ctx).n_p_eval
                wall, cpu = time.perf_counter(), time.process_time()
                with dspy.context(lm=lm), call_scope(step=step):
                    answer = predictors[step](prompt=prompt).answer
                total = totals[name]
                total["wall_s"] += time.perf_counter() - wall
                total["cpu_s"] += time.process_time() - cpu
                total["evaluated"] += llama_cpp.llama_perf_context(llama._ctx.ctx).n_p_eval - before
                total["answers"].append(answer)
    rows = []
    for name, lm in lms.items():
        total = totals[name]
        sent = sum(entry["usage"]["prompt_tokens"] for entry in lm.history)
        generated = sum(entry["usage"]["completion_tokens"] for entry in lm.history)
        rows.append({"workload": "one map, interleaved", "variant": name, "calls": len(calls),
                     "prompt_tokens_sent": sent, "prompt_tokens_evaluated": total["evaluated"],
                     "generated_tokens": generated, "wall_s": round(total["wall_s"], 2),
                     "cpu_s": round(total["cpu_s"], 2),
                     "tokens_per_s": round((sent + generated) / total["wall_s"], 1),
                     "tokens_per_cpu_s": round((sent + generated) / total["cpu_s"], 1),
                     "answers": total["answers"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100, help="chunks per step")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--threads", type=int, help="llama.cpp threads (default: its own)")
    parser.add_argument("--interleave", action="store_true",
                        help="one map only, the two variants chunk by chunk, CPU timed")
    parser.add_argument("--turns", action="store_true",
                        help="also two maps taking turns (llama-cpp-python's reuse alone too)")
    args = parser.parse_args()
    options = {"n_ctx": 2048, **({"n_threads": args.threads} if args.threads else {})}
    resolved = resolve_lm("local", options)
    runtime = resolved.engine  # what `--lm local` binds: PrefixStates on the loaded model
    assert runtime.prefixes is not None, "the runtime's local engine keeps no prefix states"
    plain = LlamaEngine(runtime.llama, runtime.lock)
    workloads = {"one map": {"empty cache": (plain, True), "runtime engine": (runtime, False)}}
    if args.turns:
        workloads["two maps taking turns"] = {"llama-cpp-python's reuse": (plain, False),
                                              "runtime engine": (runtime, False)}
    load = os.getloadavg()
    if args.interleave:
        workloads = {"one map, interleaved": {}}
        rows = interleaved(runtime, plain, workload("one map", args.chunks), args.max_tokens)
    else:
        rows = []
    for name, variants in workloads.items():
        calls = workload(name, args.chunks)
        for variant, (engine, empty) in variants.items():
            rows.append({"workload": name, "variant": variant,
                         **run(engine, calls, empty, args.max_tokens)})
    for name in workloads:
        answers = [r["answers"] for r in rows if r["workload"] == name]
        assert all(a == answers[0] for a in answers), f"{name}: answers differ between variants"
    print(f"{'workload':<22} {'variant':<26} {'calls':>5} {'sent':>7} {'evaluated':>9} "
          f"{'wall s':>7} {'tok/s':>6} {'tok/CPU s':>9}")
    for r in rows:
        print(f"{r['workload']:<22} {r['variant']:<26} {r['calls']:>5} "
              f"{r['prompt_tokens_sent']:>7} {r['prompt_tokens_evaluated']:>9} "
              f"{r['wall_s']:>7.1f} {r['tokens_per_s']:>6.1f} "
              f"{r.get('tokens_per_cpu_s', float('nan')):>9.1f}")
    print("answers identical across variants: yes")
    report = {"chunks": args.chunks, "max_tokens": args.max_tokens, "threads": args.threads,
              "rows": rows,
              "load_before": [round(x, 2) for x in load],
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}
    out = INTERLEAVED if args.interleave else RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
