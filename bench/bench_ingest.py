"""Benchmark of the log-ingest stage: parsed ingest vs DuckDB's raw one-column read.

Generates a syslog-style file in /tmp (with DuckDB, in seconds), then measures — each in its own
subprocess, peak RSS from ``os.wait4`` (the child's own ``getrusage(RUSAGE_CHILDREN)`` record) —
(1) DuckDB's raw one-column ``read_csv`` of the file into a table of a fresh database file, and
(2) ``rlm_dsl.runtime.logs.load_log`` into a fresh database file (parsed columns, line numbers,
byte offsets). Prints a table and saves ``bench/results/ingest.json``.
Targets (issue 7): parsed ≥ 100 MB/s, ≥ 0.5 x raw, peak RSS < 1.5 GB.

    python bench/bench_ingest.py              # 1 GB
    python bench/bench_ingest.py --quick      # 64 MB
    python bench/bench_ingest.py --size-mb 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import duckdb

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
AVG_LINE_BYTES = 95  # measured on the generator below; only used to size the file
MEMORY_LIMIT = "1GB"  # the same DuckDB limit for both measurements (rlm ingest's default)


def generate(path: str, size_mb: int) -> None:
    """Write a realistic syslog file of about ``size_mb`` MB with DuckDB (seconds, not minutes)."""
    n = size_mb * 1_000_000 // AVG_LINE_BYTES
    line = (
        "strftime(ts, '%b ') || lpad(strftime(ts, '%-d'), 2, ' ') || strftime(ts, ' %H:%M:%S') "
        "|| ' ' || ['web01','web02','db01','cache03','lb01'][1 + i % 5] || ' ' "
        "|| ['sshd','nginx','kernel','CRON','app'][1 + (i // 7) % 5] || '[' || (1000 + i % 5000) "
        "|| ']: ' || CASE WHEN i % 97 = 0 THEN 'error: connection to 10.0.' || (i % 256) "
        "|| '.' || (i % 200) || ' refused after ' || (i % 30) || ' retries' "
        "WHEN i % 13 = 0 THEN 'Failed password for invalid user admin from 192.168.' "
        "|| (i % 256) || '.' || (i % 199) || ' port ' || (40000 + i % 9999) || ' ssh2' "
        "ELSE 'request ' || i || ' GET /api/v1/items/' || (i % 1000) || ' status=200 took ' "
        "|| (i % 997) || ' ms' END"
    )
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(
        f"COPY (SELECT {line} AS line FROM (SELECT i, TIMESTAMP '2026-03-01' + "
        f"to_seconds(i // 100) AS ts FROM range({n}) t(i))) TO '{path}' "
        "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
    )


def worker(kind: str, path: str, db: str) -> None:
    """Run one measurement in this process and print its JSON result."""
    from rlm_dsl.runtime.logs import load_log
    from rlm_dsl.runtime.logs.parse import read_lines_sql
    from rlm_dsl.runtime.store.store import Store

    store = Store.open(db)
    store.con.execute("SET enable_progress_bar = false")
    store.con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")  # as `rlm ingest` defaults to
    started = time.perf_counter()
    if kind == "raw":
        store.con.execute(f"CREATE TABLE raw AS SELECT line FROM {read_lines_sql(path)}")
        rows = store.count("raw")
    else:
        rows = load_log(store, "logs", [path]).rows
    store.con.execute("CHECKPOINT")
    seconds = time.perf_counter() - started
    store.close()
    print(json.dumps({"rows": rows, "seconds": seconds}))


def measure(kind: str, path: str) -> dict[str, float]:
    """Run :func:`worker` in a fresh subprocess; its time, rows and peak RSS."""
    db = f"/tmp/rlm-bench-{kind}.duckdb"
    for stale in (db, db + ".wal"):
        if os.path.exists(stale):
            os.unlink(stale)
    cmd = [sys.executable, __file__, "--worker", kind, path, db]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    stdout = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{kind} measurement failed (status {status})")
    result = json.loads(stdout.strip().splitlines()[-1])
    size_mb = os.path.getsize(path) / 1e6
    os.unlink(db)
    return {
        "rows": result["rows"],
        "seconds": round(result["seconds"], 3),
        "mb_per_s": round(size_mb / result["seconds"], 1),
        # CPU time of the whole child (imports included): a check on wall times when the
        # machine is shared; MB per CPU-second does not depend on what else is running.
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="64 MB instead of --size-mb")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "PATH", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    size = 64 if args.quick else args.size_mb
    path = f"/tmp/rlm-bench-syslog-{size}mb.log"
    if not os.path.exists(path):
        generate(path, size)
    load_before = os.getloadavg()[0]
    raw, parsed = measure("raw", path), measure("parsed", path)
    ratio = parsed["mb_per_s"] / raw["mb_per_s"]
    report = {
        "file_mb": round(os.path.getsize(path) / 1e6, 1),
        "cpus": os.cpu_count(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": platform.machine(),
        "duckdb": duckdb.__version__,
        "raw": raw,
        "parsed": parsed,
        "parsed_vs_raw": round(ratio, 3),
        "parsed_vs_raw_cpu": round(raw["cpu_s"] / parsed["cpu_s"], 3),
        "targets": {
            "mb_per_s>=100": parsed["mb_per_s"] >= 100,
            "ratio>=0.5": ratio >= 0.5,
            "rss<1.5GB": parsed["peak_rss_mb"] < 1536,
        },
    }
    print(
        f"file: {path} ({report['file_mb']} MB, {raw['rows']} lines, {os.cpu_count()} cpus, "
        f"load average {report['load_average'][0]} -> {report['load_average'][1]})"
    )
    header = ("measure", "seconds", "MB/s", "CPU s", "peak RSS MB", "rows")
    print("{:<8} {:>8} {:>8} {:>8} {:>12} {:>10}".format(*header))
    for name, row in (("raw", raw), ("parsed", parsed)):
        print(
            f"{name:<8} {row['seconds']:>8.2f} {row['mb_per_s']:>8.1f} {row['cpu_s']:>8.2f} "
            f"{row['peak_rss_mb']:>12.1f} {row['rows']:>10}"
        )
    print(
        f"parsed/raw speed = {ratio:.2f} (wall), {report['parsed_vs_raw_cpu']:.2f} (CPU); "
        f"targets: {report['targets']}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
