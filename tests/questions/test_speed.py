"""The wall-time forecast of ``rlm ask`` (rlm_dsl/questions/speed.py): DESIGN's local-model
speeds until a run is measured, then the latest run's tokens per second; none for remote LMs."""

from __future__ import annotations

from pathlib import Path

import rlm_dsl
from questions.inputs import write_log
from rlm_dsl.questions import speed


def test_forecast_uses_measured_speed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(speed, "_file", lambda: tmp_path / "ask_speed.json")
    assert speed.expected_wall_s("local", 1_000, 100) == 15.0  # 1,000 / 100 + 100 / 20
    assert speed.expected_wall_s("openai/gpt-4o-mini", 1_000, 100) is None
    db = tmp_path / "run.duckdb"
    log = write_log(tmp_path / "app.log", lines=6)
    rlm_dsl.ask("List every IP address in the log.", [str(log)], lm="test", db=db)
    speed.record_speed("local", str(db))  # as if the local model had answered those calls
    measured = speed._read()["local"]
    assert measured["prompt_tps"] > 0 and measured["generated_tps"] == round(
        measured["prompt_tps"] / 5, 1)
    assert speed.expected_wall_s("local", 1_000, 0) == round(1_000 / measured["prompt_tps"], 1)
