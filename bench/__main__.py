"""``python -m bench``: the long-context quality suite and, with ``--perf``, the perf benches.

Bench entry point. The quality suite builds seeded instances of each task from public data (see
``docs/benchmarks_quality.md``), answers each with ``vanilla``, the task's ``recipe`` and the
free-form ``rlm`` step using one model (``--lm``, default ``$RLM_LM`` or the local model), prints
a line per run and writes ``bench/results/quality.json``, ``docs/benchmarks_quality.md`` and
``docs/img/quality.png``. ``--perf`` runs the ``bench/bench_*.py`` scripts instead (each saves its
own JSON in ``bench/results/``); ``--quick`` shrinks either to a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.quality import report
from bench.quality.methods import METHODS
from bench.quality.perf import run_perf
from bench.quality.perf_targets import format_table, target_rows
from bench.quality.suite import FULL, run_suite

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small sizes, one instance")
    parser.add_argument("--lm", default=os.environ.get("RLM_LM", "local"), help="model id")
    parser.add_argument("--tasks", nargs="+", choices=list(FULL), default=list(FULL))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--instances", type=int, help="per task and size (default 1 quick, 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizes", type=int, nargs="+", help="only these of each task's sizes")
    parser.add_argument("--perf", action="store_true", help="run the perf benches instead")
    parser.add_argument("--only", nargs="+", metavar="WORD",
                        help="with --perf: only the bench scripts whose name has one of these")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other tasks' rows of an earlier results file")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs",
                        help="where benchmarks_quality.md and img/quality.png go")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "bench", *argv])
    if args.perf:
        rows = run_perf(args.quick, args.only)
        targets = target_rows()
        print(format_table(targets))
        report.write_json(ROOT / "bench" / "results" / "perf.json", rows,
                          {"command": command, "targets": targets,
                           "load_after": [round(x, 2) for x in os.getloadavg()]})
        return max(r["rc"] for r in rows)
    instances = args.instances or (1 if args.quick else 3)
    earlier = load_earlier(args) if args.merge and args.out.is_file() else None
    started, clock = datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), time.perf_counter()

    def describe() -> dict:
        return {"command": command, "lm": args.lm, "quick": args.quick, "seed": args.seed,
                "instances": instances, "started": started,
                "wall_s": round(time.perf_counter() - clock, 1),
                "load": [round(x, 2) for x in os.getloadavg()]}

    rows = run_suite(args.tasks, args.quick, args.lm, instances, args.seed, args.methods,
                     only_sizes=args.sizes,
                     keep=lambda done: report.write_json(args.out, done,
                                                        describe() | {"partial": True}))
    meta = describe()
    if earlier:
        rows, meta = merge(earlier, rows, meta, set(args.tasks))
    report.write_json(args.out, rows, meta)
    report.write_markdown(args.docs / "benchmarks_quality.md", rows, meta)
    if not report.write_plot(args.docs / "img" / "quality.png", rows, meta["command"]):
        print("matplotlib is not installed: no plot written (pip install matplotlib)")
    print(report.markdown_table(rows))
    print(json.dumps({"results": str(args.out), "wall_s": meta["wall_s"]}))
    return 0


def load_earlier(args: argparse.Namespace) -> dict:
    """The results file ``--merge`` adds to; it must be for the same model and seed."""
    earlier = json.loads(args.out.read_text())
    old = earlier["meta"]
    if (old.get("lm"), old.get("seed")) != (args.lm, args.seed):
        raise SystemExit(f"--merge: {args.out} holds model {old.get('lm')!r}, seed "
                         f"{old.get('seed')}; this run is {args.lm!r}, seed {args.seed}")
    return earlier


def merge(earlier: dict, rows: list[dict], meta: dict, tasks: set[str]) -> tuple[list, dict]:
    """The earlier file's rows of other tasks, then this run's; commands joined with &&."""
    kept = [r for r in earlier["rows"] if r["task"] not in tasks]
    old = earlier["meta"]
    meta = meta | {"command": f"{old['command']} && {meta['command']}",
                   "wall_s": round(old["wall_s"] + meta["wall_s"], 1)}
    return kept + rows, meta


if __name__ == "__main__":
    sys.exit(main())
