"""A free-form ``rlm`` trajectory recorded with the local model replays offline through the CLI.

``tests/repl/data/tiny_rlm.calls.jsonl`` is the ``lm_calls`` table of
``rlm run tiny_rlm.rlm -i logs=logs.txt --lm local --db rec.duckdb`` (Qwen2.5-Coder-0.5B, three
REPL iterations and the extract fallback), exported as JSON lines. Replaying it re-executes the
model's code in the sandbox, so every later prompt (which shows the REPL output) must come out
the same for the replay to find its answer: a change in the REPL, its prompts or the adapter
makes this test fail with the step and chunk that missed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb

from rlm_dsl.cli.main import main

DATA = Path(__file__).parent / "data"


def _recorded() -> list[dict]:
    return [json.loads(line) for line in (DATA / "tiny_rlm.calls.jsonl").read_text().splitlines()]


def test_the_recorded_rlm_trajectory_replays_through_the_cli(tmp_path, capsys, monkeypatch):
    for name in ("tiny_rlm.rlm", "logs.txt", "tiny_rlm.calls.jsonl"):
        shutil.copy(DATA / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code = main(["run", "tiny_rlm.rlm", "-i", "logs=logs.txt", "--lm",
                 "replay:tiny_rlm.calls.jsonl", "--db", "replayed.duckdb", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads(captured.out)
    recorded = _recorded()
    assert result["outputs"] == {"answer": "INFO boot ok\nERROR disk full on /var\nINFO retry ok"}
    assert result["summary"]["calls"] == len(recorded) == 5
    with duckdb.connect("replayed.duckdb", read_only=True) as con:
        responses = [r for (r,) in con.execute(
            "SELECT response FROM lm_calls ORDER BY started_at, call_id").fetchall()]
        iterations = con.execute("SELECT count(*) FROM rlm_iterations WHERE depth = 0").fetchall()
    assert responses == [call["response"] for call in recorded]
    assert iterations == [(4,)]  # max_iterations=3 and the extract fallback
