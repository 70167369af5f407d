"""The performance benches of the other issues, run as subprocesses under ``python -m bench``.

Bench perf stage. Each ``bench/bench_*.py`` script stays runnable on its own and writes its own
JSON into ``bench/results/``; :func:`run_perf` runs them in turn (``--quick`` where the script
has it) and returns each one's exit status and wall time; ``perf_targets`` then tabulates the
targets from the saved JSON.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
SCRIPTS: dict[str, list[str]] = {     # script → the arguments its quick form takes
    "bench_check.py": [], "bench_overhead.py": [], "bench_concurrency.py": ["--quick"],
    "bench_overlap.py": ["--repeats", "1"], "bench_local_prefix.py": ["--chunks", "3"],
    "bench_repl.py": [], "bench_local.py": ["--repeats", "1"],
    "bench_ingest.py": ["--quick"], "bench_scale.py": ["--quick"],
}


def run_perf(quick: bool, only: list[str] | None = None,
             say: Callable[[str], None] = print) -> list[dict]:
    """Run the perf scripts (``only``: those whose name contains one of the words); one row per
    script (exit status, wall seconds)."""
    rows = []
    for script, quick_args in SCRIPTS.items():
        if only and not any(word in script for word in only):
            continue
        cmd = [sys.executable, str(BENCH / script), *(quick_args if quick else [])]
        say(f"$ {' '.join(cmd[1:])}")
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=BENCH.parent, check=False)
        rows.append({"script": script, "args": cmd[2:], "rc": done.returncode,
                     "wall_s": round(time.perf_counter() - started, 1)})
    return rows
