"""The log recipes end to end with the deterministic test LM; dedup keeps answers, cuts reads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import duckdb
import pytest

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, execute

ROOT = Path(__file__).resolve().parents[2]


def _run(path: Path, **options):
    return execute(compile_file(path), RunOptions(lm="test", lm_all=True, **options))


@pytest.fixture
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)  # recipes name their sample data repo-relative


def test_security_counts_failed_logins_exactly(at_root):
    result = _run(Path("recipes/security.rlm"))
    rows = result.outputs["failed_by_host"]
    by_host = [(r["host"], r["failed_logins"], r["sources"]) for r in rows]
    assert by_host == [("bastion01", 88, 4), ("web01", 4, 4), ("db01", 2, 2)]


def test_explain_spike_finds_the_5xx_window(at_root):
    result = _run(Path("recipes/explain_spike.rlm"))
    [spike] = result.outputs["spike"]
    assert (str(spike["window_start"]), spike["failed_requests"]) == ("2026-03-14T10:15:00", 15)
    assert spike["text"].count('" 50') == 14  # 14 of the 15 are 5xx, one is a 404


def test_log_census_reads_each_template_once(at_root, tmp_path: Path):
    db = tmp_path / "run.duckdb"
    result = _run(Path("recipes/log_census.rlm"), db=str(db))
    census = [(r["level"], r["occurrences"], r["template"][:40]) for r in result.outputs["census"]]
    assert census == [
        ("ERROR", 1, "Failed to save order <*> could not obtai"),
        ("WARN", 3, "Cache miss for <*> loading from database"),
        ("WARN", 3, "Client <*> exceeded <*> requests/min on "),
        ("WARN", 2, "<*> - Pool stats (total=<*> active=<*> i"),
    ]
    assert result.summary["calls"] == 4  # one LM read per template, not per line


def test_dedup_of_200k_lines_same_answer_fewer_reads(tmp_path: Path, repetitive_log):
    log = tmp_path / "big.log"
    repetitive_log(log, 200_000)
    spec = tmp_path / "errors.rlm"
    spec.write_text(
        textwrap.dedent('''
        recipe errors "Find the error lines."
        input logs: log with dedup=true
        chunk logs -> windows by records(400)
        map windows -> hits: list[str] """
          FIND "ERROR"
          {{ chunk.text }}
        """
        reduce hits -> found: list[str] by tree(fanin=8) """
          MERGE
          {{ items | tojson }}
        """
        output found
    ''')
    )
    db = tmp_path / "run.duckdb"
    result = _run(spec, inputs={"logs": str(log)}, db=str(db))
    with log.open() as f:
        expected = [line.rstrip("\n") for line in f if " ERROR " in line]
    assert expected == ["2026-03-14 04:10:00 ERROR disk full on /dev/sda1"]
    assert result.outputs["found"] == expected
    con = duckdb.connect(str(db), read_only=True)
    lines_read = con.execute("SELECT sum(n_rows) FROM windows").fetchone()[0]
    assert lines_read < 2_000  # < 1% of the 200,000 lines reach the LM
    assert con.execute("SELECT sum(count) FROM logs").fetchone()[0] == 200_000
