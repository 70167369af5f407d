"""Real log lines of 100+ formats through `rlm ingest` and a `log` input: ts/level/host goldens.

tests/logs/corpus/corpus.tsv holds a few real lines per format, each with its source (public
test suites and samples: lnav's format samples and test logs, LogHub's 2k samples, the logs
shipped with super-speedy-syslog-searcher). Every format is written to its own file and
ingested through the CLI; each line's ts, level and host must match corpus/expected.tsv
(``pytest --update-golden`` rewrites it — only for an intended change). All single-line
entries together form the mixed corpus: one file, read by a `log` input in `rlm run`, keeps
every line and dates at least 95 % of them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest

from rlm_dsl.cli.main import main

CORPUS = Path(__file__).parent / "corpus"
FILE_TIME = dt.datetime(2026, 12, 7, 12, 0).timestamp()  # every corpus file's mtime


def _unescape(text: str) -> str:
    out, chars = [], iter(text)
    for ch in chars:
        if ch == "\\":
            nxt = next(chars)
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}[nxt])
        else:
            out.append(ch)
    return "".join(out)


def _entries() -> list[tuple[int, str, str]]:
    """(id, format, text) of every corpus entry; text may span lines (journald export)."""
    rows = (CORPUS / "corpus.tsv").read_text(encoding="utf-8").split("\n")[1:-1]
    out = []
    for row in rows:
        ident, fmt, _source, line = row.split("\t")
        out.append((int(ident), fmt, _unescape(line)))
    return out


def _write(path: Path, texts: list[str]) -> None:
    path.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    os.utime(path, (FILE_TIME, FILE_TIME))


@pytest.fixture(scope="module")
def per_format(tmp_path_factory) -> list[tuple[int, str, str, str | None, str | None]]:
    """Each format in its own file, ingested by `rlm ingest`; (id, format, ts, level, host)."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "logs").mkdir()
    by_format: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for ident, fmt, text in _entries():
        by_format[fmt].append((ident, text))
    for fmt, items in by_format.items():
        _write(root / "logs" / f"{fmt}.log", [text for _, text in items])
    db = str(root / "corpus.duckdb")
    assert main(["ingest", db, str(root / "logs")]) == 0
    with duckdb.connect(db, read_only=True) as con:
        rows = con.execute(
            "SELECT source, line_no, end_line_no, strftime(ts, '%Y-%m-%d %H:%M:%S.%f'), level, "
            "host FROM logs ORDER BY source, line_no"
        ).fetchall()
    by_file = defaultdict(list)
    for source, first, last, *fields in rows:
        by_file[Path(source).stem].append((first, last, fields))
    out = []
    for fmt, items in by_format.items():
        line = 1
        for ident, text in items:  # the record holding the entry's first line
            ts, level, host = next(f for a, b, f in by_file[fmt] if a <= line <= b)
            out.append((ident, fmt, ts, level, host))
            line += text.count("\n") + 1
    return sorted(out)


def test_corpus_covers_at_least_40_formats():
    formats = {fmt for _, fmt, _ in _entries()}
    assert len(formats) >= 40, len(formats)


def test_every_line_matches_its_golden_ts_level_host(per_format, golden):
    lines = ["id\tformat\tts\tlevel\thost"]
    lines += ["\t".join(str(v) if v is not None else "-" for v in row) for row in per_format]
    golden(CORPUS / "expected.tsv", "\n".join(lines) + "\n")


def test_mixed_corpus_keeps_every_line_and_dates_95_percent(tmp_path: Path, capsys):
    texts = [text for _, _, text in _entries() if "\n" not in text]
    log = tmp_path / "mixed.log"
    _write(log, texts)
    spec = tmp_path / "census.rlm"
    spec.write_text(
        f'recipe census "Lines and dated lines of a mixed log."\n'
        f'input logs: log with path="{log}"\n'
        "reduce logs -> census by sql \"\"\"\n"
        "  SELECT sum(end_line_no - line_no + 1) AS lines, count(*) AS records,\n"
        "         count(ts) AS dated, string_agg(text, chr(10) ORDER BY line_no) AS text\n"
        "  FROM {{ input }}\n"
        '"""\n'
        "output census\n",
        encoding="utf-8",
    )
    assert main(["run", str(spec), "--lm", "test", "--json"]) == 0
    [census] = json.loads(capsys.readouterr().out)["outputs"]["census"]
    assert census["lines"] == len(texts)
    assert census["text"] == "\n".join(texts)  # every line kept, in order
    assert census["records"] == len(texts)  # no line folded into another
    assert census["dated"] / census["records"] >= 0.95, census["dated"] / census["records"]
