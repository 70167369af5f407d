"""The quality grid: which tasks at which sizes, how many seeded instances, which budgets.

Bench suite stage. :data:`FULL` and :data:`QUICK` give each task's sizes in its own unit
(``niah``: tokens of essay; ``oolong`` / ``pairs``: labelled items; ``docqa``: documents;
``logs``: log lines). :func:`run_suite` builds every instance (seed = base seed + instance
number, so a run is reproducible), runs every method on it with the same model and returns the
result rows, printing one line per run as it goes.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Callable, Iterable

from bench.quality.data import cache_dir
from bench.quality.methods import METHODS, Budget, model_window, run_method
from bench.quality.tasks import BUILDERS

FULL: dict[str, list[int]] = {
    "niah": [8_000, 32_000, 128_000, 1_000_000],
    "oolong": [50, 200, 1_000],
    "pairs": [50, 200, 1_000],
    "docqa": [100, 300, 1_000],
    "logs": [1_000, 10_000, 100_000],
}
QUICK: dict[str, list[int]] = {     # sized so the local 0.5B model on 2 cores fits ~20 min
    "niah": [2_000, 8_000],
    "oolong": [12, 24],
    "pairs": [12, 24],
    "docqa": [10, 30],
    "logs": [100, 1_000],
}
FULL_BUDGET = Budget(iterations=12, llm_calls=40, max_calls=2_000, action_tokens=1_024)
# Quick: the 0.5B model's actions run to the token cap when it loops, ~30 s each at 1,024.
QUICK_BUDGET = Budget(iterations=3, llm_calls=4, max_calls=300, action_tokens=256)


def run_suite(
    tasks: Iterable[str], quick: bool, lm: str, instances: int, seed: int,
    methods: Iterable[str] = METHODS, say: Callable[[str], None] = print,
    only_sizes: Iterable[int] | None = None, keep: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """Every (task, size, instance, method) run; rows as :func:`run_method` returns them
    (``only_sizes``: just those of each task's sizes; ``keep`` gets the rows so far after each
    run, so a long grid that is stopped keeps what it finished)."""
    sizes, budget = (QUICK, QUICK_BUDGET) if quick else (FULL, FULL_BUDGET)
    if only_sizes is not None:
        sizes = {task: [s for s in grid if s in set(only_sizes)] for task, grid in sizes.items()}
    window, rows = model_window(lm), []
    for task in tasks:
        for size in sizes[task]:
            for number in range(instances):
                out = cache_dir() / "tasks" / f"{task}-{size}-{number}"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                inst = BUILDERS[task](size, random.Random(seed + number), out)
                for method in methods:
                    row = run_method(method, inst, lm, window, budget) | {
                        "instance": number, "load": round(os.getloadavg()[0], 1)}
                    rows.append(row)
                    if keep is not None:
                        keep(rows)
                    say(f"{task:7} {size:>9,} {method:8} score={row['score']:.2f} "
                        f"calls={row['calls']} wall={row['wall_s']}s"
                        + (f" error={row['error'][:80]}" if row["error"] else ""))
    return rows
