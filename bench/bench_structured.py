"""Benchmark: how often the local model's typed answers need a re-ask or a lenient-parse rescue.

Runs every shipped recipe (or the ones named) in-process with ``--lm local`` and counts, per 100
LM calls: answers read by the strict chat-format parse, answers only the JSON fallback or the
lenient parser could read (rescues), answers nothing could read, and re-asks — calls that repeat
an earlier call's messages for the same step and chunk (a retry after an unparseable answer) —
from ``lm_calls``; re-asks with grounding feedback are counted apart. The parse counts come from
wrapping the adapter's three stages, so the script measures any version of the runtime the same
way (run it from a checkout of ``main`` for the "before" column).

    python bench/bench_structured.py --db-dir /tmp/structured --out /tmp/structured.json
    python bench/bench_structured.py --recipes triage needle_search
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import dspy
import duckdb

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.lm import adapter as robust

ROOT = Path(__file__).resolve().parents[1]
SKIP = {"summarize"}  # a sub-recipe; ticket_digest runs it


def count_parses(stats: Counter) -> None:
    """Wrap the adapter's parse stages so each answer is counted by the stage that read it."""
    chat_parse, json_parse, lenient = dspy.ChatAdapter.parse, dspy.JSONAdapter.parse, \
        robust.lenient_fields

    def strict(self, signature, completion):
        try:
            result = chat_parse(self, signature, completion)
        except Exception:
            stats["strict_failed"] += 1
            raise
        if isinstance(self, robust.RobustAdapter):
            stats["strict"] += 1
        return result

    def as_json(self, signature, completion):
        result = json_parse(self, signature, completion)
        stats["json"] += 1
        return result

    def rescue(fields, completion):
        result = lenient(fields, completion)
        stats["lenient"] += 1
        return result

    dspy.ChatAdapter.parse, dspy.JSONAdapter.parse, robust.lenient_fields = strict, as_json, \
        rescue


def call_counts(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        total, distinct, grounding = con.execute(
            "SELECT count(*), count(DISTINCT (step, chunk_id, depth, messages)), "
            "count(*) FILTER (WHERE messages LIKE '%Your previous answer gave%') FROM lm_calls "
            "WHERE error IS NULL").fetchone()
    return {"calls": total, "reasks": total - distinct, "grounding_reasks": grounding}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", default=None)
    parser.add_argument("--db-dir", default="/tmp/bench_structured")
    parser.add_argument("--out", default=None)
    parser.add_argument("--lm", default="local")
    args = parser.parse_args()
    os.chdir(ROOT)
    names = args.recipes or sorted(p.stem for p in (ROOT / "recipes").glob("*.rlm")
                                   if p.stem not in SKIP)
    Path(args.db_dir).mkdir(parents=True, exist_ok=True)
    rows = []
    stats: Counter = Counter()
    count_parses(stats)
    for name in names:
        stats.clear()
        db = Path(args.db_dir) / f"{name}.duckdb"
        db.unlink(missing_ok=True)
        began = time.perf_counter()
        try:
            execute(compile_file(f"recipes/{name}.rlm"), RunOptions(lm=args.lm, db=str(db)))
            status = "ok"
        except Exception as exc:  # a budget stop or failed step still leaves its calls to count
            status = f"{type(exc).__name__}: {str(exc)[:80]}"
        row = {"recipe": name, "status": status, "wall_s": round(time.perf_counter() - began, 1),
               **call_counts(db), **{k: stats[k] for k in ("strict", "json", "lenient")},
               "unparsed": stats["strict_failed"] - stats["json"] - stats["lenient"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    totals = Counter()
    for row in rows:
        totals.update({k: v for k, v in row.items() if isinstance(v, int)})
    per100 = {k: round(100 * v / max(1, totals["calls"]), 1) for k, v in totals.items()}
    print(json.dumps({"totals": totals, "per_100_calls": per100}))
    if args.out:
        Path(args.out).write_text(json.dumps({"rows": rows, "totals": totals,
                                              "per_100_calls": per100,
                                              "load": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
