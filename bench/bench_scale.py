"""Benchmark "Scale": store and chunk a generated log of about 1 GB (issue 3).

Generates a log file outside the repository (``/tmp/rlm-bench`` by default, with DuckDB, in
seconds), then measures, each in its own subprocess (peak RSS from ``os.wait4``, the child's own
``getrusage(RUSAGE_CHILDREN)`` record):

1. ``duckdb-raw``: DuckDB's own one-column ``read_csv`` of the file into a table — the base;
2. ``rlm load``: :func:`rlm_dsl.runtime.ingest.inputs.load_input` (``text`` input: source, line
   numbers, byte offsets), then ``rlm chunk``: :func:`rlm_dsl.runtime.ingest.chunkers.chunk` by
   ``lines(400)``,
   timed separately in the same process; ``rlm total`` is the two together.

Both use a fresh database file with the same DuckDB ``memory_limit`` (``--mode memory`` uses
in-memory databases instead). Each timed step ends with a ``CHECKPOINT``, so work that DuckDB
would otherwise defer to closing the database (replaying a large WAL into the file) is counted.
Prints a table and saves ``bench/results/scale.json``.
Targets: load + chunk ≥ 100 MB/s, peak RSS < 1.5 GB.

    python bench/bench_scale.py                 # 1 GB
    python bench/bench_scale.py --quick         # 100 MB
    python bench/bench_scale.py --size-mb 256 --threads 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

RESULTS = Path(__file__).resolve().parent / "results" / "scale.json"
AVG_LINE_BYTES = 100  # about what the generator below writes; only used to size the file
RAW_READ = (
    "read_csv(?, columns={'text': 'VARCHAR'}, delim=chr(0), quote='', escape='', "
    "header=false, auto_detect=false)"
)


def generate(path: str, size_mb: int) -> None:
    """A syslog-like file of about ``size_mb`` MB, written by DuckDB."""
    lines = size_mb * 1_000_000 // AVG_LINE_BYTES
    line = (
        "strftime(TIMESTAMP '2026-01-01' + to_milliseconds(i * 37), '%Y-%m-%dT%H:%M:%S.%g') "
        "|| ' ' || ['web01','web02','db01','cache03','lb01'][1 + i % 5] || ' ' "
        "|| ['sshd','nginx','kernel','cron','app'][1 + (i // 7) % 5] || '[' || (1000 + i % 5000) "
        "|| ']: ' || CASE WHEN i % 97 = 0 THEN 'ERROR connection to 10.0.' || (i % 256) "
        "|| '.' || (i % 199) || ' refused after ' || (i % 30) || ' retries' "
        "WHEN i % 13 = 0 THEN 'WARN slow request /api/v1/items/' || (i % 10007) || ' took ' "
        "|| (i % 9000) || ' ms' ELSE 'INFO GET /static/' || md5(i::VARCHAR)[:12] "
        "|| '.js 200 ' || (i % 65536) || ' bytes user=' || (i % 4099) END"
    )
    tmp = path + ".part"
    duckdb.sql("SET enable_progress_bar = false")
    duckdb.sql(
        f"COPY (SELECT {line} FROM range({lines}) t(i)) TO '{tmp}' "
        "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
    )
    os.replace(tmp, path)


def child(kind: str, path: str, db: str | None, memory_limit: str, threads: int | None) -> dict:
    """Run one measurement in this (child) process; returns its timings."""
    if kind == "duckdb-raw":
        con = duckdb.connect(db or ":memory:")
        _settings(con, memory_limit, threads)
        started, cpu = time.perf_counter(), _cpu()
        con.execute(f"CREATE TABLE raw AS SELECT * FROM {RAW_READ}", [path])
        con.execute("CHECKPOINT")
        rows = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
        return {"seconds": time.perf_counter() - started, "cpu_s": _cpu() - cpu, "rows": rows}
    return _child_rlm(path, db, memory_limit, threads)


def _child_rlm(path: str, db: str | None, memory_limit: str, threads: int | None) -> dict:
    from rlm_dsl.runtime.ingest.chunkers import chunk
    from rlm_dsl.runtime.ingest.inputs import load_input
    from rlm_dsl.runtime.lm.tokens import get_counter
    from rlm_dsl.runtime.store.store import Store

    load, windows = _steps()
    counter = get_counter(None)
    with Store.open(db, memory_limit=memory_limit) as store:
        _settings(store.con, None, threads)
        started, cpu = time.perf_counter(), _cpu()
        load_input(store, load, path)
        store.con.execute("CHECKPOINT")
        loaded, loaded_cpu = time.perf_counter(), _cpu()
        chunk(store, windows, "logs", counter)
        store.con.execute("CHECKPOINT")
        done, done_cpu = time.perf_counter(), _cpu()
        return {
            "load_seconds": loaded - started,
            "chunk_seconds": done - loaded,
            "load_cpu_s": loaded_cpu - cpu,
            "chunk_cpu_s": done_cpu - loaded_cpu,
            "rows": store.count("logs"),
            "chunks": store.count("windows"),
            "token_counter": counter.name,
        }


def _steps() -> tuple[Any, Any]:
    """``input logs: text`` and ``chunk logs -> windows by lines(400)`` as plan steps."""
    from rlm_dsl.compiler.plan import Step
    from rlm_dsl.compiler.source import Span

    span = Span("bench.rlm", 1, 1, 1, 1)
    load = Step(id="input-logs", kind="input", name="logs", table="logs", span=span)
    load = dataclasses.replace(load, strategy="text")
    windows = Step(id="chunk-windows", kind="chunk", name="windows", table="windows", span=span)
    return load, dataclasses.replace(windows, source="logs", strategy="lines", args=(400,))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _settings(
    con: duckdb.DuckDBPyConnection, memory_limit: str | None, threads: int | None
) -> None:
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])
    if threads:
        con.execute(f"SET threads = {int(threads)}")


def measure(kind: str, args: argparse.Namespace, path: str) -> dict:
    """Run ``kind`` in a subprocess on a fresh database; adds its peak RSS (MB)."""
    db = None if args.mode == "memory" else os.path.join(args.dir, f"bench-{kind}.duckdb")
    for leftover in (db, f"{db}.wal") if db else ():
        if os.path.exists(leftover):
            os.remove(leftover)
    command = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--file",
        path,
        "--memory-limit",
        args.memory_limit,
        "--mode",
        args.mode,
        "--dir",
        args.dir,
    ]
    if args.threads:
        command += ["--threads", str(args.threads)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"{kind} failed (status {status}):\n{out}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)
    if db:
        for leftover in (db, f"{db}.wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return result


def report(size_mb: float, raw: dict, rlm: dict) -> list[dict]:
    """Print the table; ``MB/cpu-s`` is throughput per CPU second (robust to a busy machine)."""
    rows = [
        ("duckdb raw read_csv", raw["seconds"], raw["cpu_s"], raw["peak_rss_mb"]),
        ("rlm load (text input)", rlm["load_seconds"], rlm["load_cpu_s"], None),
        ("rlm chunk lines(400)", rlm["chunk_seconds"], rlm["chunk_cpu_s"], None),
        (
            "rlm load + chunk",
            rlm["load_seconds"] + rlm["chunk_seconds"],
            rlm["load_cpu_s"] + rlm["chunk_cpu_s"],
            rlm["peak_rss_mb"],
        ),
    ]
    table = []
    print(
        f"{'measurement':<24}{'seconds':>9}{'MB/s':>8}{'x raw':>7}{'cpu s':>8}{'MB/cpu-s':>10}"
        f"{'peak RSS MB':>13}"
    )
    for name, seconds, cpu, rss in rows:
        entry = {
            "measurement": name,
            "seconds": round(seconds, 2),
            "mb_per_s": round(size_mb / seconds, 1),
            "ratio_to_raw": round(seconds / raw["seconds"], 2),
            "cpu_s": round(cpu, 2),
            "mb_per_cpu_s": round(size_mb / cpu, 1),
            "peak_rss_mb": rss,
        }
        table.append(entry)
        shown = "-" if rss is None else f"{rss:.0f}"
        print(
            f"{name:<24}{seconds:>9.2f}{entry['mb_per_s']:>8.1f}{entry['ratio_to_raw']:>7.2f}"
            f"{cpu:>8.1f}{entry['mb_per_cpu_s']:>10.1f}{shown:>13}"
        )
    return table


def save(result: dict) -> None:
    """Keep one result per mode (``file``, ``memory``) in ``bench/results/scale.json``."""
    runs = {}
    if RESULTS.exists():
        runs = json.loads(RESULTS.read_text()).get("runs", {})
    runs[result["mode"]] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"benchmark": "scale", "runs": runs}, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="100 MB instead of --size-mb")
    parser.add_argument("--dir", default="/tmp/rlm-bench", help="where the log and databases go")
    parser.add_argument("--mode", choices=["file", "memory"], default="file")
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB memory_limit for both")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        db = None if args.mode == "memory" else os.path.join(args.dir, f"bench-{args.child}.duckdb")
        limit = None if args.mode == "memory" else args.memory_limit
        print(json.dumps(child(args.child, args.file, db, limit, args.threads)))
        return
    size_mb = 100 if args.quick else args.size_mb
    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"scale-{size_mb}mb.log")
    if not os.path.exists(path):
        started = time.perf_counter()
        generate(path, size_mb)
        print(f"generated {path} in {time.perf_counter() - started:.1f} s")
    actual_mb = os.path.getsize(path) / 1_000_000
    print(
        f"input: {path}, {actual_mb:.0f} MB; mode {args.mode}, memory_limit "
        f"{args.memory_limit if args.mode == 'file' else 'none'}, threads {args.threads or 'all'}"
    )
    load_before = round(os.getloadavg()[0], 2)
    raw = measure("duckdb-raw", args, path)
    rlm = measure("rlm", args, path)
    table = report(actual_mb, raw, rlm)
    result = {
        "input_mb": round(actual_mb, 1),
        "rows": rlm["rows"],
        "chunks": rlm["chunks"],
        "token_counter": rlm["token_counter"],
        "mode": args.mode,
        "memory_limit": args.memory_limit if args.mode == "file" else None,
        "threads": args.threads or os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "duckdb": duckdb.__version__,
        "results": table,
        "load_average_1m_before_after": [load_before, round(os.getloadavg()[0], 2)],
        "targets": {"mb_per_s": 100, "peak_rss_mb": 1536},
    }
    save(result)
    print(f"saved {RESULTS}")


if __name__ == "__main__":
    main()
