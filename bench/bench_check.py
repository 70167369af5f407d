"""Benchmark of the front end: parse + check (+ lowering) of a generated 2,000-line spec.

Run ``python bench/bench_check.py``. It writes a realistic spec (inputs, chunks, filters, maps with
multi-line prompts, reduces of every strategy, an rlm step) of about 2,000 lines, times each
front-end stage in-process (best and median of several runs), times ``rlm check`` as a fresh
process, prints a table and saves the numbers to ``bench/results/bench_check.json``.
Target on the 2-core build machine: parse + check under 1 s.
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
from collections.abc import Callable
from pathlib import Path

from rlm_dsl.compiler.checks import CHECKS
from rlm_dsl.compiler.context import Context
from rlm_dsl.compiler.lower import lower
from rlm_dsl.compiler.parser import grammar, parse
from rlm_dsl.compiler.scope import build_scope

RESULTS = Path(__file__).parent / "results" / "bench_check.json"
TARGET_LINES = 2000
RUNS = 5


def block(i: int) -> str:
    """One pipeline of 25 lines: input, chunk, filters, a typed map, three reduces."""
    return f'''
input logs{i}: log with path="logs/app{i}.log"
type Incident{i} {{ at: str, component: str, what: str, severity: low | medium | high }}
chunk logs{i} -> windows{i} by lines(400, overlap=20)
filter windows{i} where sql "level IN ('ERROR', 'FATAL')"
filter windows{i} where regex "(?i)exception|timeout"
map windows{i} -> incidents{i}: list[Incident{i}] using fast with retries=2 """
  Log lines {{{{ chunk.first_line }}}}-{{{{ chunk.last_line }}}} of {{{{ chunk.source }}}}:
  {{{{ chunk.text }}}}
  List every distinct incident that answers: {{{{ question }}}}
"""
map windows{i} -> label{i}: low | medium | high using fast """{{{{ chunk.text }}}}"""
reduce label{i} -> counts{i} by sql "SELECT label{i}, count(*) AS n FROM {{{{ input }}}} GROUP BY 1"
reduce label{i} -> top{i} by vote
reduce incidents{i} -> report{i}: str by tree(fanin=8) using strong """
  {{% for batch in items %}}
  - {{{{ batch | tojson }}}}
  {{% endfor %}}
  Merge into one report (level {{{{ level }}}}).
"""
reduce incidents{i} -> story{i}: str by fold(init="") using strong """
  {{{{ state }}}}
  {{{{ items | tojson }}}}
"""
'''


def generate() -> str:
    head = ('recipe bench "Generated benchmark spec."\n'
            'param question: str = "What failed?"\n'
            'lm fast = env("RLM_FAST_LM", "local")\nlm strong = env("RLM_LM", "local")\n'
            'input doc: text\nrlm doc -> answer: str using strong sub fast with depth=2 """\n'
            '  {{ question }}\n"""\n')
    blocks, outputs, i = [], ["answer"], 0
    while (head + "".join(blocks)).count("\n") < TARGET_LINES - 1:
        blocks.append(block(i))
        outputs += [f"report{i}", f"counts{i}", f"top{i}", f"story{i}"]
        i += 1
    return head + "".join(blocks) + f"output {', '.join(outputs)}\n"


def timed(fn: Callable[[], object]) -> tuple[list[tuple[float, float]], object]:
    """(wall s, cpu s) per run: CPU time stays meaningful when other jobs share the machine."""
    times, result = [], None
    for _ in range(RUNS):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times, result


def main() -> None:
    text = generate()
    grammar()  # built once per process; not part of a check
    parse_t, spec = timed(lambda: parse(text, "bench.rlm"))

    def check() -> Context:
        scope, diags = build_scope(spec)
        ctx = Context(spec, scope, text)
        for c in CHECKS:
            diags.extend(c(ctx))
        assert not diags, diags[:3]
        return ctx

    check_t, ctx = timed(check)
    lower_t, plan = timed(lambda: lower(ctx))
    both = [(p[0] + c[0], p[1] + c[1]) for p, c in zip(parse_t, check_t, strict=True)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.rlm"
        path.write_text(text, encoding="utf-8")
        start = time.perf_counter()
        entry = "from rlm_dsl.cli.main import main; main()"
        proc = subprocess.run([sys.executable, "-c", entry, "check", str(path)],
                              capture_output=True, text=True, check=False)
        cli = time.perf_counter() - start
    rows = [("parse", parse_t), ("check", check_t), ("parse + check", both), ("lower", lower_t)]
    print(f"spec: {text.count(chr(10))} lines, {len(text):,} chars, "
          f"{plan.graph.number_of_nodes()} steps")
    print(f"{'stage':<16}{'best s':>10}{'median s':>10}{'best cpu s':>12}")
    for name, times in rows:
        wall = [w for w, _ in times]
        print(f"{name:<16}{min(wall):>10.3f}{statistics.median(wall):>10.3f}"
              f"{min(c for _, c in times):>12.3f}")
    print(f"{'rlm check (cli)':<16}{cli:>10.3f}  (process start + imports; exit {proc.returncode})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "lines": text.count("\n"), "chars": len(text), "steps": plan.graph.number_of_nodes(),
        "runs": RUNS, "machine": platform.platform(), "python": platform.python_version(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average": os.getloadavg()[0], "cores": os.cpu_count(),
        "stages": {name: {"best_s": min(w for w, _ in t),
                          "median_s": statistics.median(w for w, _ in t),
                          "best_cpu_s": min(c for _, c in t)} for name, t in rows},
        "cli_check_s": cli, "cli_exit": proc.returncode, "target_parse_check_s": 1.0,
    }, indent=2) + "\n", encoding="utf-8")
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
