"""Benchmark of the embedded local model: our DSPy engine path vs raw llama-cpp-python.

Same process, same GGUF, same settings (n_ctx, threads, temperature 0, max_tokens), same
messages: "ours" is ``dspy.Predict`` with :class:`RobustAdapter` over
``resolve_lm("local").make_lm()`` (formatting, the DSPy LM layer, our engine, parsing); "raw" is
``Llama.create_chat_completion`` on a separately loaded ``Llama`` given the exact messages the
adapter produces. Both start each call with an empty KV cache (``reset()``) so neither reuses
the other's prompt prefix, and the order alternates per repeat. Prompt and generation rates come
from llama.cpp's own perf counters. Prints a table and saves ``bench/results/local.json``.
Target (issue 4): ours/raw tokens-per-second ratio ≥ 0.95. Both the wall-clock ratio and a
tokens-per-CPU-second ratio are reported: on a shared machine other processes steal wall time
from whichever call happens to run at the moment, while CPU time measures only the work done.

    python bench/bench_local.py                 # 4 prompts x 2 repeats x 2 paths
    python bench/bench_local.py --repeats 1 --max-tokens 16
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

from rlm_dsl.runtime.lm import resolve_lm
from rlm_dsl.runtime.lm.adapter import RobustAdapter

RESULTS = Path(__file__).resolve().parent / "results" / "local.json"
QUESTION = "Which component failed first, and with what error?"
SIGNATURE = "log, question -> answer: str"
LINES = (2, 6, 12, 24)  # log windows of about 150 to 1,000 prompt tokens with the adapter's text


def log_window(lines: int) -> str:
    """A syslog-style window with one distinctive error two thirds of the way in."""
    rows = []
    for i in range(lines):
        host, unit = ("web01", "web02", "db01")[i % 3], ("nginx", "app", "cron")[i % 3]
        rows.append(f"Nov 24 10:{i // 60:02d}:{i % 60:02d} {host} {unit}[{1000 + i}]: "
                    f"request {i} served in {(i * 37) % 250} ms")
    rows.insert(2 * lines // 3, "Nov 24 10:59:59 db01 postgres[4242]: FATAL: could not extend "
                                "file base/16384/2619: No space left on device")
    return "\n".join(rows)


def _perf(llm: llama_cpp.Llama) -> tuple[float, int, float, int]:
    data = llama_cpp.llama_perf_context(llm._ctx.ctx)
    return data.t_p_eval_ms, data.n_p_eval, data.t_eval_ms, data.n_eval


def _measure(llm: llama_cpp.Llama, call, inputs: dict) -> dict:
    llm.reset()
    llama_cpp.llama_perf_context_reset(llm._ctx.ctx)
    start, cpu_start = time.perf_counter(), time.process_time()
    prompt_tokens, completion_tokens, text = call(inputs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    p_ms, n_p, e_ms, n_e = _perf(llm)
    tokens = prompt_tokens + completion_tokens
    return {"wall_s": wall, "cpu_s": cpu, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "prompt_tok_s": n_p / p_ms * 1000 if p_ms else None,
            "gen_tok_s": n_e / e_ms * 1000 if e_ms else None,
            "tok_s": tokens / wall, "tok_cpu_s": tokens / cpu, "answer": text}


def run(repeats: int, max_tokens: int) -> dict:
    resolved = resolve_lm("local")
    ours_llm = resolved.engine.llama
    raw_llm = llama_cpp.Llama(model_path=ours_llm.model_path, n_ctx=ours_llm.n_ctx(),
                              n_threads=ours_llm.n_threads, verbose=False)
    lm = resolved.make_lm(max_tokens=max_tokens, temperature=0.0)
    predict, adapter = dspy.Predict(SIGNATURE), RobustAdapter()

    def ours(inputs):
        with dspy.context(lm=lm, adapter=adapter):
            answer = predict(**inputs).answer
        usage = lm.history[-1]["usage"]
        return usage["prompt_tokens"], usage["completion_tokens"], answer

    def raw(inputs):
        messages = adapter.format(predict.signature, [], inputs)
        out = raw_llm.create_chat_completion(messages=messages, max_tokens=max_tokens,
                                             temperature=0.0, seed=None)
        usage = out["usage"]
        return usage["prompt_tokens"], usage["completion_tokens"], out["choices"][0]["message"][
            "content"]

    rows = []
    for repeat in range(repeats):
        for lines in LINES:
            inputs = {"log": log_window(lines), "question": QUESTION}
            order = [("raw", raw_llm, raw), ("ours", ours_llm, ours)]
            for path, llm, call in order if (repeat + lines) % 2 == 0 else order[::-1]:
                row = _measure(llm, call, inputs)
                rows.append({"path": path, "lines": lines, "repeat": repeat, **row})
                print(f"  {path} lines={lines} repeat={repeat}: {row['wall_s']:.1f} s", flush=True)
    return {"rows": rows, "summary": _summary(rows), "settings": {
        "n_ctx": ours_llm.n_ctx(), "n_threads": ours_llm.n_threads, "max_tokens": max_tokens,
        "repeats": repeats, "model": os.path.basename(ours_llm.model_path)}}


def _summary(rows: list[dict]) -> dict:
    out = {}
    for path in ("raw", "ours"):
        mine = [r for r in rows if r["path"] == path]
        tokens = sum(r["prompt_tokens"] + r["completion_tokens"] for r in mine)
        wall, cpu = sum(r["wall_s"] for r in mine), sum(r["cpu_s"] for r in mine)
        out[path] = {
            "tok_s": tokens / wall, "tok_cpu_s": tokens / cpu, "cpu_s": cpu,
            "prompt_tok_s": _mean([r["prompt_tok_s"] for r in mine]),
            "gen_tok_s": _mean([r["gen_tok_s"] for r in mine]),
            "tokens": tokens, "wall_s": wall,
        }
    out["ratio"] = out["ours"]["tok_s"] / out["raw"]["tok_s"]
    out["ratio_cpu"] = out["ours"]["tok_cpu_s"] / out["raw"]["tok_cpu_s"]
    out["same_completions"] = all(
        a["completion_tokens"] == b["completion_tokens"]
        for a, b in zip(*([r for r in rows if r["path"] == p] for p in ("raw", "ours")),
                        strict=True))
    return out


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _print(result: dict) -> None:
    print(f"{'path':<5} {'lines':>5} {'rep':>3} {'prompt':>6} {'gen':>4} {'wall s':>7} "
          f"{'cpu s':>7} {'tok/s':>7} {'tok/cpu-s':>9} {'prompt tok/s':>12} {'gen tok/s':>9}")
    for r in result["rows"]:
        print(f"{r['path']:<5} {r['lines']:>5} {r['repeat']:>3} {r['prompt_tokens']:>6} "
              f"{r['completion_tokens']:>4} {r['wall_s']:>7.2f} {r['cpu_s']:>7.2f} "
              f"{r['tok_s']:>7.1f} {r['tok_cpu_s']:>9.1f} "
              f"{r['prompt_tok_s'] or 0:>12.1f} {r['gen_tok_s'] or 0:>9.1f}")
    s = result["summary"]
    for path in ("raw", "ours"):
        p = s[path]
        print(f"{path:<5} total: {p['tokens']} tokens in {p['wall_s']:.2f} s wall "
              f"({p['tok_s']:.1f} tok/s), {p['cpu_s']:.2f} CPU-s ({p['tok_cpu_s']:.1f} tok/CPU-s); "
              f"llama.cpp rates: prompt {p['prompt_tok_s']:.1f} tok/s, "
              f"generation {p['gen_tok_s']:.1f} tok/s")
    for key, label in (("ratio", "wall-clock"), ("ratio_cpu", "CPU-time")):
        verdict = "PASS" if s[key] >= 0.95 else "FAIL"
        print(f"ratio ours/raw ({label}) = {s[key]:.3f} (target >= 0.95: {verdict})")
    print(f"same completion lengths: {s['same_completions']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    result = run(args.repeats, args.max_tokens)
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(),
                         "llama_cpp": llama_cpp.__version__, "load_avg": os.getloadavg()}
    _print(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
