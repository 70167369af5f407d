"""Timestamp coverage of log parsing: the test corpus per format, and real daemon logs.

(1) tests/logs/corpus/corpus.tsv — a few real lines of 100+ formats, each with its source —
is written one file per format and ingested with ``load_log``; prints the lines with a parsed
``ts`` per format (the coverage table of docs/benchmarks.md). (2) With ``--real DIR``, the
first ``--lines`` non-empty lines of every UTF-8 text file under DIR (a git mirror works too:
``--real`` then names a directory inside its work tree) are ingested file by file; prints the
share of lines that got a timestamp and checks that every line was kept. The real logs are
read where they are, never copied into the repository.

    python bench/bench_log_formats.py
    python bench/bench_log_formats.py --real /path/to/super-speedy-syslog-searcher/logs
    python bench/bench_log_formats.py --real DIR --match "$DAEMON_LOGS"   # regex: see benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "logs"))

from test_corpus import _entries, _write  # noqa: E402

from rlm_dsl.runtime.logs import load_log  # noqa: E402
from rlm_dsl.runtime.logs.load import LogIngestError  # noqa: E402
from rlm_dsl.runtime.store.store import Store  # noqa: E402


def corpus_coverage() -> None:
    """Per corpus format: lines, lines with a ts (one row per record: journald export)."""
    with tempfile.TemporaryDirectory() as tmp, Store.open(None) as store:
        files: dict[str, list[str]] = {}
        for _, fmt, text in _entries():
            files.setdefault(fmt, []).append(text)
        for fmt, texts in files.items():
            _write(Path(tmp) / f"{fmt}.log", texts)
        load_log(store, "logs", [tmp])
        rows = store.con.execute(
            "SELECT source, count(*), count(ts), list(DISTINCT format ORDER BY format) "
            "FROM logs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    total = dated = 0
    print("| corpus format | lines | with ts | parsed as |\n|---|---|---|---|")
    for source, n, with_ts, parsed_as in rows:
        total, dated = total + n, dated + with_ts
        print(f"| {Path(source).stem} | {n} | {with_ts} | {', '.join(parsed_as)} |")
    print(f"| **all {len(rows)} formats** | **{total}** | **{dated} ({dated / total:.1%})** | |")


def real_coverage(root: Path, lines: int, match: str | None) -> None:
    """Ingest the first ``lines`` lines of every text file under ``root`` (whose path relative
    to ``root`` matches the regex ``match``, when given), file by file."""
    with tempfile.TemporaryDirectory() as tmp:
        kept = 0
        for here, _, names in os.walk(root):
            for name in sorted(names):
                path = Path(here) / name
                if match and not re.search(match, str(path.relative_to(root))):
                    continue
                text = _text(path)
                if text is None:
                    continue
                head = [line for line in text.split("\n") if line.strip()][:lines]
                if head:
                    flat = str(path.relative_to(root)).replace(os.sep, "__")
                    _write(Path(tmp) / flat, head)
                    # a bare CR (a progress bar) breaks a line; the CR of a CRLF does not
                    kept += sum(1 + line.removesuffix("\r").count("\r") for line in head)
        started = time.perf_counter()
        with Store.open(None) as store:
            try:
                load_log(store, "logs", [tmp])
            except LogIngestError as exc:
                print(exc)
            n_lines, records, dated, files = store.con.execute(
                "SELECT sum(end_line_no - line_no + 1), count(*), count(ts), "
                "count(DISTINCT source) FROM logs"
            ).fetchone()
            formats = Counter(dict(store.con.execute(
                "SELECT format, count(*) FROM logs GROUP BY 1").fetchall()))
    print(f"{files} files, {kept} lines written, {n_lines} lines ingested "
          f"({'all kept' if n_lines == kept else 'LINES LOST'}), {records} records, "
          f"{dated} with ts = {dated / records:.1%} ({time.perf_counter() - started:.1f} s)")
    print("records per format:", ", ".join(f"{k} {v}" for k, v in formats.most_common()))


def _text(path: Path) -> str | None:
    """The file's text when it is UTF-8 without NUL bytes (log files), else None."""
    try:
        data = path.read_bytes()[: 1 << 20]
    except OSError:
        return None
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, help="a directory of real log files")
    parser.add_argument("--lines", type=int, default=10, help="lines per real file")
    parser.add_argument("--match", help="only real files whose relative path matches this regex")
    args = parser.parse_args()
    corpus_coverage()
    if args.real:
        real_coverage(args.real, args.lines, args.match)


if __name__ == "__main__":
    main()
