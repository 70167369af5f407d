"""The README's main job end to end: ``rlm run recipes/triage.rlm`` on the embedded local model.

The shipped ``recipes/data/logs/app.log`` (~3K tokens) holds exactly one distinctive error, a
database connection-pool exhaustion; the answer must name it. Skipped, with the reason, when
llama-cpp-python or the pulled model is missing. Two LM calls: well under a minute on 2 cores.
"""

from __future__ import annotations

import json

import duckdb
import pytest

from rlm_dsl.cli.main import main


@pytest.mark.local_model
def test_triage_names_the_connection_pool_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("RLM_LM", raising=False)  # the recipe's default: the local model
    db = tmp_path / "run.duckdb"
    code = main(["run", "recipes/triage.rlm", "--db", str(db), "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    answer = json.loads(out[out.index("{"):])["outputs"]["answer"]
    assert "connection" in answer.lower(), answer
    with duckdb.connect(str(db), read_only=True) as con:
        calls = con.execute("SELECT step, model FROM lm_calls ORDER BY call_id").fetchall()
        read = con.execute("SELECT text FROM logs_filtered").fetchall()
    assert calls == [("map-findings", "local"), ("reduce-answer", "local")]
    assert len(read) == 1 and "HikariPool-1 - Connection is not available" in read[0][0]
