"""Benchmark: independent branches of a plan overlap (issue 19, item 1).

Run ``python bench/bench_overlap.py``. The loopback OpenAI-compatible server of
``bench_concurrency`` (own process) answers after 50 ms. A spec maps 100 one-line chunks through
``openai/…`` at ``--concurrency 16``:

* *one branch*: one map step;
* *two branches, two LMs*: two independent map steps over the same chunks, each with its own LM
  binding (its own gate and concurrency slots) — they should take as long as one;
* *two branches, one LM*: both maps on one binding — they share its 16 slots, so about twice
  as long is the expected floor, not a shortfall.

The wall of a variant is from the first map step's start to the last one's end
(``step_status``), best of ``--repeats``. Target: two branches on two LMs within 1.15 x one
branch. Prints a table and saves ``bench/results/bench_overlap.json``; exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from datetime import datetime
from pathlib import Path

import bench_concurrency as loopback  # the script's folder is on sys.path
import duckdb

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, execute

RESULTS = Path(__file__).resolve().parent / "results" / "bench_overlap.json"
CHUNKS, CONCURRENCY, DELAY_S, TARGET = 100, 16, 0.05, 1.15
HEAD = '''recipe branches "Two independent maps."
lm a = "openai/a" with api_base="{base}", api_key_env="RLM_BENCH_KEY"
lm b = "openai/b" with api_base="{base}", api_key_env="RLM_BENCH_KEY"
input items: lines
chunk items -> pieces by lines(1)
'''
MAP = '''map pieces -> {name}: int using {lm} """
  COUNT "{word}"
  {{{{ chunk.text }}}}
"""
'''
VARIANTS = {
    "one branch": [("x", "a", "mark")],
    "two branches, two LMs": [("x", "a", "mark"), ("y", "b", "plain")],
    "two branches, one LM": [("x", "a", "mark"), ("y", "a", "plain")],
}


def spec(base: str, maps: list[tuple[str, str, str]]) -> str:
    return HEAD.format(base=base) + "".join(
        MAP.format(name=name, lm=lm, word=word) for name, lm, word in maps) + (
        f"output {', '.join(name for name, _, _ in maps)}\n")


def run(base: str, lines: list[str], maps: list[tuple[str, str, str]]) -> float:
    """Seconds from the first map step's start to the last one's end; outputs checked."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "items.txt").write_text("\n".join(lines) + "\n")
        (folder / "branches.rlm").write_text(spec(base, maps))
        db = folder / "run.duckdb"
        result = execute(compile_file(folder / "branches.rlm"),
                         RunOptions(inputs={"items": str(folder / "items.txt")}, db=str(db),
                                    concurrency=CONCURRENCY))
        for name, _, word in maps:
            assert result.outputs[name] == [int(word in line) for line in lines], name
        with duckdb.connect(str(db), read_only=True) as con:
            rows = con.execute("SELECT started_at, finished_at FROM step_status "
                               "WHERE step LIKE 'map-%' AND status = 'done'").fetchall()
    assert len(rows) == len(maps)
    times = [[v if isinstance(v, datetime) else datetime.fromisoformat(v) for v in row]
             for row in rows]
    return (max(t[1] for t in times) - min(t[0] for t in times)).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    loopback.DELAY_S = DELAY_S  # the forked server process reads it
    process, root = loopback._start_server(lifetime_s=900)
    os.environ["RLM_BENCH_KEY"] = "loopback"
    lines = [f"item {i} {'mark' if i % 5 == 0 else 'plain'}" for i in range(CHUNKS)]
    load = os.getloadavg()
    run(f"{root}/v1", lines[:CONCURRENCY], VARIANTS["two branches, two LMs"])  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # variants take turns, so load changes hit each alike
        for name, maps in VARIANTS.items():
            walls[name].append(run(f"{root}/v1", lines, maps))
    loopback._stats(root, "/quit")
    process.join(timeout=10)
    one = min(walls["one branch"])
    rows = [{"variant": name, "best_s": round(min(w), 3), "all_s": [round(x, 3) for x in w],
             "x_one_branch": round(min(w) / one, 3)} for name, w in walls.items()]
    achieved = rows[1]["x_one_branch"]
    verdict = "PASS" if achieved <= TARGET else "FAIL"
    ideal = CHUNKS / CONCURRENCY * DELAY_S
    print(f"{CHUNKS} chunks x {DELAY_S * 1e3:.0f} ms at concurrency {CONCURRENCY} "
          f"(one branch ideal {ideal:.2f} s)")
    print(f"{'variant':<24} {'best s':>7} {'x one branch':>13}  all runs")
    for r in rows:
        print(f"{r['variant']:<24} {r['best_s']:>7.2f} {r['x_one_branch']:>13.2f}  {r['all_s']}")
    print(f"target: two branches on two LMs <= {TARGET} x one branch: {achieved:.2f} x: "
          f"{verdict}")
    loopback.save(RESULTS, {"chunks": CHUNKS, "concurrency": CONCURRENCY, "delay_s": DELAY_S,
                            "rows": rows, "target": TARGET, "achieved": achieved,
                            "verdict": verdict}, load)
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
