"""Publishing quality results: the JSON file, the markdown table and the score-vs-length plot.

Bench report stage. :func:`write_json` saves the rows and the run's metadata (command, model,
seed, sizes); :func:`table` averages rows per (task, size, method); :func:`write_markdown`
writes ``docs/benchmarks_quality.md`` (what the tasks and methods are, where the data comes
from, the command, the table); :func:`write_plot` draws one panel per task, score against input
tokens, a line per method (matplotlib, Agg back end).
"""

from __future__ import annotations

import json
import textwrap
from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from bench.quality.methods import METHODS

DOC_HEAD = Path(__file__).with_name("doc_head.md")
STYLE = {"vanilla": {"marker": "s", "linestyle": ":"}, "recipe": {"marker": "o"},
         "rlm": {"marker": "^", "linestyle": "--"}, "ask": {"marker": "D", "linestyle": "-."}}


def write_json(path: Path, rows: list[dict], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str) + "\n")


def table(rows: list[dict]) -> list[dict]:
    """Mean score, calls, tokens and wall time per (task, size, method), in run order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["task"], row["size"], row["method"])].append(row)
    return [{"task": task, "size": size, "method": method,
             "tokens": round(mean(r["tokens"] for r in group)),
             "score": round(mean(r["score"] for r in group), 3),
             "calls": _mean(r["calls"] for r in group),
             "tokens_used": _mean(r["tokens_used"] for r in group),
             "wall_s": round(mean(r["wall_s"] for r in group), 1),
             "errors": sum(1 for r in group if r["error"])}
            for (task, size, method), group in groups.items()]


def _mean(values: Any) -> int | None:
    known = [v for v in values if v is not None]
    return round(mean(known)) if known else None


def markdown_table(rows: list[dict]) -> str:
    head = "| task | size | input tokens | method | score | calls | LM tokens | wall s | errors |"
    lines = [head, "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in table(rows):
        lines.append(f"| {r['task']} | {r['size']:,} | {r['tokens']:,} | {r['method']} | "
                     f"{r['score']:.2f} | {_num(r['calls'])} | {_num(r['tokens_used'])} | "
                     f"{r['wall_s']} | {r['errors']} |")
    return "\n".join(lines) + "\n"


def _num(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def write_markdown(path: Path, rows: list[dict], meta: dict[str, Any], notes: str = "") -> None:
    body = (DOC_HEAD.read_text(encoding="utf-8")
            + f"\n## Results\n\nCommand: `{meta['command']}` (model `{meta['lm']}`, "
            f"seed {meta['seed']}, {meta['instances']} instance(s) per task and size, "
            f"{meta['started']} UTC, {meta['wall_s']:.0f} s in all; rows in "
            f"`bench/results/quality.json`).\n\n{markdown_table(rows)}\n"
            f"![score vs input length](img/quality.png)\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body + (f"\n{notes}\n" if notes else ""), encoding="utf-8")


def write_plot(path: Path, rows: list[dict], title: str) -> bool:
    """Draw the plot; False (nothing written) when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    summary = table(rows)
    tasks = list(dict.fromkeys(r["task"] for r in summary))
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for method in METHODS:
            points = sorted((r["tokens"], r["score"]) for r in summary
                            if r["task"] == task and r["method"] == method)
            if points:
                ax.plot(*zip(*points, strict=True), label=method, **STYLE[method])
        ax.set(title=task, xscale="log", xlabel="input tokens", ylim=(-0.05, 1.05))
        ticks = sorted({r["tokens"] for r in summary if r["task"] == task})
        ax.set_xticks(ticks, [f"{t / 1000:.0f}K" if t >= 1000 else str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0][0].set_ylabel("score")
    axes[0][0].legend(fontsize="small")
    fig.suptitle(textwrap.fill(title, 45 * len(tasks)), fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
