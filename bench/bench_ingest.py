"""Benchmark of ingest and scale (issue 18, item 4): one command, one table, PASS/FAIL per target.

Generates a syslog-style file in /tmp (with DuckDB, in seconds; never committed), then measures,
each in its own subprocess on a fresh database file with the same 1 GB DuckDB memory limit and
a ``CHECKPOINT`` at the end of every timed step (peak RSS of the child from ``os.wait4``, i.e.
``getrusage`` of that process):

1. ``raw``: DuckDB's own one-column ``read_csv`` of the file into a table — the baseline;
2. ``parsed``: ``load_log`` (a ``log`` input: stored columns + the log view);
3. ``text+chunk``: ``load_input`` of a ``text`` input, then ``chunk … by lines(400)``;
4. ``log+chunk``: the ``log`` input, then ``chunk … by lines(400)``;

and, in the last child, point lookups: one chunk's text by id from the chunk view (text read
through the input on demand) and from a materialised copy of the same chunks (the design
before: text copied into the chunk table), and one 400-line range of the input by line numbers.
Prints the table and saves ``bench/results/ingest.json``. Targets: parsed ≥ 0.5 x raw (wall);
load + chunk ≥ 100 MB/s with peak RSS < 1.5 GB.

    python bench/bench_ingest.py              # 1 GB
    python bench/bench_ingest.py --size-mb 256
    python bench/bench_ingest.py --quick      # 64 MB
    python bench/bench_ingest.py --verify     # check every line's numbering and ts (no timings)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
AVG_LINE_BYTES = 95  # measured on the generator below; only used to size the file
MEMORY_LIMIT = "1GB"  # the same DuckDB limit for every measurement (rlm ingest's default)
LOOKUPS = 40


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
        f"to_seconds(i // 100) AS ts FROM range({n}) t(i))) TO '{path}.part' "
        "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
    )
    os.replace(f"{path}.part", path)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(store: Any, step: Any) -> tuple[float, float]:
    """Wall and CPU seconds of ``step()`` followed by a CHECKPOINT."""
    started, cpu = time.perf_counter(), _cpu()
    step()
    store.con.execute("CHECKPOINT")
    return time.perf_counter() - started, _cpu() - cpu


def worker(kind: str, path: str, db: str) -> dict[str, Any]:
    """Run one measurement in this process; its timings."""
    from rlm_dsl.runtime.ingest.chunkers import chunk
    from rlm_dsl.runtime.ingest.inputs import load_input
    from rlm_dsl.runtime.lm.tokens import get_counter
    from rlm_dsl.runtime.logs import load_log
    from rlm_dsl.runtime.logs.parse import read_lines_sql
    from rlm_dsl.runtime.store.store import Store

    store = Store.open(db, memory_limit=MEMORY_LIMIT)
    store.con.execute("SET enable_progress_bar = false")
    if kind == "raw":
        sql = f"CREATE TABLE raw AS SELECT line FROM {read_lines_sql(path)}"
        seconds, cpu = _timed(store, lambda: store.con.execute(sql))
        return {"seconds": seconds, "cpu_s": cpu, "rows": store.count("raw")}
    if kind == "parsed":
        seconds, cpu = _timed(store, lambda: load_log(store, "logs", [path]))
        return {"seconds": seconds, "cpu_s": cpu, "rows": store.count("logs")}
    load, windows = _steps("text" if kind == "text+chunk" else "log")
    load_s, load_cpu = _timed(store, lambda: load_input(store, load, path))
    counter = get_counter(None)
    chunk_s, chunk_cpu = _timed(store, lambda: chunk(store, windows, "logs", counter))
    result = {"seconds": load_s + chunk_s, "cpu_s": load_cpu + chunk_cpu, "load_s": load_s,
              "chunk_s": chunk_s, "rows": store.count("logs"), "chunks": store.count("windows"),
              "token_counter": counter.name}
    if kind == "log+chunk":
        result["lookups"] = _lookups(store, result["chunks"])
    store.close()
    return result


def _lookups(store: Any, chunks: int) -> dict[str, float]:
    """Median milliseconds of one chunk's text by id (view vs materialised) and of a line range."""
    store.con.execute("CREATE TABLE windows_copied AS SELECT * FROM windows")
    store.con.execute("CHECKPOINT")
    ids = random.Random(7).sample(range(chunks), min(LOOKUPS, chunks))

    def median_ms(sql: str, params: list[list[Any]]) -> float:
        times = []
        for values in params:
            started = time.perf_counter()
            store.con.execute(sql, values).fetchall()
            times.append((time.perf_counter() - started) * 1000)
        return round(statistics.median(times), 2)

    lines, by_id = [[400 * i + 1, 400 * i + 400] for i in ids], [[i] for i in ids]
    return {
        "chunk_text_view_ms": median_ms("SELECT text FROM windows WHERE id = ?", by_id),
        "chunk_text_copied_ms": median_ms("SELECT text FROM windows_copied WHERE id = ?", by_id),
        "line_range_ms": median_ms("SELECT string_agg(text, chr(10) ORDER BY line_no) FROM logs "
                                   "WHERE line_no BETWEEN ? AND ?", lines),
    }


def _steps(kind: str) -> tuple[Any, Any]:
    """``input logs: <kind>`` and ``chunk logs -> windows by lines(400)`` as plan steps."""
    from rlm_dsl.compiler.plan import Step
    from rlm_dsl.compiler.source import Span

    span = Span("bench.rlm", 1, 1, 1, 1)
    load = Step(id="input-logs", kind="input", name="logs", table="logs", span=span,
                strategy=kind)
    windows = Step(id="chunk-windows", kind="chunk", name="windows", table="windows", span=span)
    return load, dataclasses.replace(windows, source="logs", strategy="lines", args=(400,))


def measure(kind: str, path: str) -> dict[str, Any]:
    """Run :func:`worker` in a fresh subprocess; its result plus MB/s and peak RSS."""
    db = f"/tmp/rlm-bench-{kind.replace('+', '-')}.duckdb"
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
    os.unlink(db)
    result["mb_per_s"] = round(os.path.getsize(path) / 1e6 / result["seconds"], 1)
    result["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux reports KiB
    result["seconds"], result["cpu_s"] = round(result["seconds"], 2), round(result["cpu_s"], 2)
    return result


def targets(runs: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """``(target, measured, met)`` for each target of issue 18, item 4."""
    ratio = runs["raw"]["seconds"] / runs["parsed"]["seconds"]
    rows = [("parsed ingest >= 0.5x raw (wall)", f"{ratio:.2f}x", ratio >= 0.5)]
    for kind in ("text+chunk", "log+chunk"):
        run = runs[kind]
        rows.append((f"{kind}: load + chunk >= 100 MB/s", f"{run['mb_per_s']:.0f} MB/s",
                     run["mb_per_s"] >= 100))
        rows.append((f"{kind}: peak RSS < 1.5 GB", f"{run['peak_rss_mb']:.0f} MB",
                     run["peak_rss_mb"] < 1536))
    return rows


def verify(path: str) -> list[str]:
    """Load ``path`` with ``load_log`` and check every row against the file: one row per line,
    ``line_no`` 1..n, ``byte_offset`` where numpy finds each line start, ``text`` as long as the
    line (and equal to it for 2,000 random lines), ``ts`` the generator's stamp. Problems found."""
    import numpy as np

    from rlm_dsl.runtime.logs import load_log
    from rlm_dsl.runtime.store.store import Store

    starts = [np.zeros(1, dtype=np.int64)]
    with open(path, "rb") as handle:
        position = 0
        while block := handle.read(1 << 26):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            starts.append(ends.astype(np.int64) + position + 1)
            position += len(block)
    offsets = np.concatenate(starts)[:-1]  # the file ends with a newline
    db = "/tmp/rlm-bench-verify.duckdb"
    for stale in (db, db + ".wal"):
        if os.path.exists(stale):
            os.unlink(stale)
    with Store.open(db, memory_limit=MEMORY_LIMIT) as store:
        load_log(store, "logs", [path])
        got = store.con.execute("SELECT line_no, byte_offset, strlen(text) AS width "
                                "FROM logs__stored ORDER BY line_no").fetchnumpy()
        wrong_ts = store.con.execute(
            "SELECT count(*) FILTER (ts IS DISTINCT FROM TIMESTAMP '2026-03-01' "
            "+ to_seconds((line_no - 1) // 100)) FROM logs__stored").fetchone()[0]
        sample = sorted(random.Random(3).sample(range(len(offsets)), min(2000, len(offsets))))
        texts = dict(store.con.execute(
            "SELECT line_no, text FROM logs__stored WHERE line_no IN "
            f"({', '.join(str(i + 1) for i in sample)})").fetchall())
    os.unlink(db)
    problems = []
    if len(got["line_no"]) != len(offsets):
        problems.append(f"{len(got['line_no'])} rows for {len(offsets)} lines")
        return problems
    if not np.array_equal(got["line_no"], np.arange(1, len(offsets) + 1)):
        problems.append("line_no is not 1..n")
    if not np.array_equal(got["byte_offset"], offsets):
        problems.append(f"{int((got['byte_offset'] != offsets).sum())} wrong byte offsets")
    widths = np.diff(np.append(offsets, position)) - 1
    if not np.array_equal(got["width"], widths):
        problems.append(f"{int((got['width'] != widths).sum())} texts of the wrong length")
    with open(path, "rb") as handle:
        for i in sample:
            handle.seek(int(offsets[i]))
            if handle.read(int(widths[i])).decode() != texts.get(i + 1):
                problems.append(f"line {i + 1}: text differs from the file")
                break
    if wrong_ts:
        problems.append(f"{wrong_ts} rows with a wrong ts")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--quick", action="store_true", help="64 MB instead of --size-mb")
    parser.add_argument("--verify", action="store_true",
                        help="check every line's line_no, byte_offset, text and ts; no timings")
    parser.add_argument("--worker", nargs=3, metavar=("KIND", "PATH", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    size_mb = 64 if args.quick else args.size_mb
    path = f"/tmp/rlm-bench-syslog-{size_mb}mb.log"
    if not os.path.exists(path):
        generate(path, size_mb)
    if args.verify:
        problems = verify(path)
        print("\n".join(problems) or f"verified: every line of {path} numbered, offset, dated")
        raise SystemExit(1 if problems else 0)
    load_before = os.getloadavg()[0]
    runs = {kind: measure(kind, path) for kind in ("raw", "parsed", "text+chunk", "log+chunk")}
    file_mb = round(os.path.getsize(path) / 1e6, 1)
    print(f"file: {path} ({file_mb} MB, {runs['raw']['rows']} lines, {os.cpu_count()} cpus, "
          f"load average {load_before:.2f} -> {os.getloadavg()[0]:.2f})")
    print(f"{'measure':<12}{'seconds':>9}{'MB/s':>8}{'x raw':>7}{'CPU s':>8}{'MB/CPU-s':>10}"
          f"{'peak RSS MB':>13}{'rows':>11}")
    for kind, run in runs.items():  # MB per CPU-second does not depend on the machine's load
        print(f"{kind:<12}{run['seconds']:>9.2f}{run['mb_per_s']:>8.1f}"
              f"{runs['raw']['seconds'] / run['seconds']:>7.2f}{run['cpu_s']:>8.2f}"
              f"{file_mb / run['cpu_s']:>10.1f}{run['peak_rss_mb']:>13.0f}{run['rows']:>11}")
    for kind in ("text+chunk", "log+chunk"):
        run = runs[kind]
        print(f"  {kind}: load {run['load_s']:.2f} s + chunk {run['chunk_s']:.2f} s, "
              f"{run['chunks']} chunks ({run['token_counter']})")
    lookups = runs["log+chunk"]["lookups"]
    print(f"point lookups (median of {LOOKUPS}): chunk text by id {lookups['chunk_text_view_ms']} "
          f"ms (view over the input) vs {lookups['chunk_text_copied_ms']} ms (text copied); "
          f"400-line range {lookups['line_range_ms']} ms")
    checks = targets(runs)
    for name, measured, met in checks:
        print(f"{'PASS' if met else 'FAIL'}  {name}: {measured}")
    report = {
        "file_mb": file_mb, "cpus": os.cpu_count(), "machine": platform.machine(),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "duckdb": duckdb.__version__, "memory_limit": MEMORY_LIMIT, **runs,
        "targets": {name: {"measured": measured, "met": met} for name, measured, met in checks},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
