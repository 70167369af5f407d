"""The perf targets table: every target, its measure, the same run's baseline, PASS/FAIL.

Bench perf stage. :func:`target_rows` reads the JSON that each perf script saved in
``bench/results/`` (a script that did not run leaves its row "not run") and
:func:`format_table` prints one table; ``python -m bench --perf`` prints it after the scripts and
stores the rows in ``bench/results/perf.json``. Every ratio is against a baseline measured in
the same run as the figure it divides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def _row(target: str, measured: str, baseline: str, ok: bool | str | None) -> dict[str, str]:
    """``ok``: True/False for PASS/FAIL, None when the script did not run, a word otherwise."""
    verdict = ok if isinstance(ok, str) else (
        "not run" if ok is None else ("PASS" if ok else "FAIL"))
    return {"target": target, "measured": measured, "baseline": baseline, "verdict": verdict}


def _concurrency() -> list[dict[str, str]]:
    data = _load("bench_concurrency.json")
    if data is None or "cases" not in data:
        return [_row("400 x 100 ms map at concurrency 32 <= 1.11 x ideal", "", "", None)]
    rows = []
    for case in data["cases"]:
        mine = case["rlm map, async engine"]
        raw, bare = case["raw HTTP (http.client threads)"], case["bare LiteLLM threads"]
        label = f"{case['chunks']} x 100 ms map at concurrency {case['concurrency']}"
        target = (case["chunks"], case["concurrency"]) == tuple(data["target"]["case"])
        rows.append(_row(
            f"{label} <= 1.11 x ideal" if target else f"{label} (reported)",
            f"{mine['wall_s']:.2f} s = {mine['x_ideal']:.2f} x ideal (median "
            f"{mine.get('median_x_ideal', mine['x_ideal']):.2f} x, "
            f"{mine['cpu_ms_per_call']:.2f} ms CPU/call)",
            f"raw HTTP {raw['x_ideal']:.2f} x ({raw['cpu_ms_per_call']:.2f} ms CPU/call), "
            f"bare LiteLLM {bare['x_ideal']:.2f} x, "
            f"LiteLLM engine {case['rlm map, LiteLLM engine']['x_ideal']:.2f} x",
            mine["x_ideal"] <= 1.11 if target else "reported"))
    return rows


def _overlap() -> list[dict[str, str]]:
    data = _load("bench_overlap.json")
    target = "two independent 100-call map branches <= 1.15 x one branch"
    if data is None:
        return [_row(target, "", "", None)]
    by = {r["variant"]: r for r in data["rows"]}
    two, one = by["two branches, two LMs"], by["one branch"]
    return [_row(target, f"{two['best_s']:.2f} s = {two['x_one_branch']:.2f} x",
                 f"one branch {one['best_s']:.2f} s; both on one LM "
                 f"{by['two branches, one LM']['x_one_branch']:.2f} x",
                 data["verdict"] == "PASS")]


def _overhead() -> list[dict[str, str]]:
    data = _load("bench_overhead.json")
    names = ("runtime CPU per call <= 1.05 x plain loop, concurrency 1",
             "runtime CPU per call <= 1.05 x plain loop, concurrency 8",
             "runtime CPU per call <= 1.2 x plain loop with the same adapter")
    if data is None or "cpu_ms_per_call" not in data["results"]["plain dspy.Predict loop"]:
        return [_row(name, "", "", None) for name in names]
    result = data["results"]
    plain, same = result["plain dspy.Predict loop"], result["plain loop, RobustAdapter"]
    rows = []
    for name, key in zip(names[:2], ("runtime, concurrency 1", "runtime, concurrency 8"),
                         strict=True):
        mine = result[key]
        rows.append(_row(name, f"{mine['cpu_ms_per_call']:.3f} CPU ms/call = "
                         f"{mine['per_call_ratio']:.2f} x (wall {mine['wall_per_call_ratio']:.2f}"
                         f" x; whole run with its {mine['start_up_cpu_s']:.3f} s start-up: CPU "
                         f"{mine['cpu_ratio']:.2f} x, wall {mine['wall_ratio']:.2f} x)",
                         f"ChatAdapter loop {plain['cpu_ms_per_call']:.3f} CPU ms/call",
                         mine["per_call_ratio"] <= 1.05))
    mine = result["runtime, concurrency 1"]
    rows.append(_row(names[2], f"{mine['per_call_vs_same_adapter']:.2f} x (CPU per call)",
                     f"RobustAdapter loop {same['cpu_ms_per_call']:.3f} CPU ms/call",
                     mine["per_call_vs_same_adapter"] <= 1.2))
    return rows


def _prefix() -> list[dict[str, str]]:
    """From the interleaved run (``--interleave``: both variants chunk by chunk, throughput per
    CPU second) when it ran, else from the plain one (wall-clock tokens/s)."""
    target = "local model map: prefix reuse evaluates fewer prompt tokens, faster, same answers"
    data = _load("local_prefix_interleaved.json") or _load("local_prefix.json")
    rows = {r["variant"]: r for r in (data or {}).get("rows", [])
            if r["workload"].startswith("one map")}
    if "runtime engine" not in rows:
        return [_row(target, "", "", None)]
    mine, off = rows["runtime engine"], rows["empty cache"]
    rate = "tokens_per_cpu_s" if "tokens_per_cpu_s" in mine else "tokens_per_s"
    unit = "tok per CPU s" if rate == "tokens_per_cpu_s" else "tok/s"
    how = "interleaved" if rate == "tokens_per_cpu_s" else "one after the other"
    return [_row(f"{target} ({data['chunks']} chunks, {how})",
                 f"{mine['prompt_tokens_evaluated']} of {mine['prompt_tokens_sent']} prompt tokens"
                 f" evaluated, {mine[rate]:.1f} {unit}",
                 f"reuse off: {off['prompt_tokens_evaluated']} evaluated, {off[rate]:.1f} {unit}",
                 mine["prompt_tokens_evaluated"] < off["prompt_tokens_evaluated"]
                 and mine[rate] > off[rate])]


SECTIONS: list[Callable[[], list[dict[str, str]]]] = [_concurrency, _overlap, _overhead, _prefix]


def target_rows() -> list[dict[str, str]]:
    return [row for section in SECTIONS for row in section()]


def format_table(rows: list[dict[str, str]]) -> str:
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
    lines = ["  ".join(k.ljust(widths[k]) for k in widths)]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in widths) for r in rows]
    return "\n".join(lines)
