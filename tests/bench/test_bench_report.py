"""Result publishing of the quality bench (bench/quality/report.py)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.quality import report


def _row(method: str, score: float, calls: int | None, error: str | None = None) -> dict:
    return {"task": "niah", "size": 2_000, "tokens": 2_010, "method": method, "score": score,
            "calls": calls, "tokens_used": None if calls is None else 100 * calls,
            "wall_s": 2.0, "error": error}


ROWS = [_row("vanilla", 1.0, 1), _row("vanilla", 0.0, 1), _row("recipe", 1.0, 3),
        _row("rlm", 0.0, None, "BudgetExhausted: cap")]
META = {"command": "python -m bench --quick", "lm": "test", "seed": 0, "instances": 2,
        "started": "2026-11-24 19:00", "wall_s": 12.0}


def test_table_averages_per_task_size_and_method() -> None:
    summary = {r["method"]: r for r in report.table(ROWS)}
    assert summary["vanilla"]["score"] == 0.5
    assert summary["recipe"]["tokens_used"] == 300
    assert (summary["rlm"]["calls"], summary["rlm"]["errors"]) == (None, 1)


def test_markdown_names_the_command_and_has_a_row_per_method(tmp_path: Path) -> None:
    report.write_markdown(tmp_path / "q.md", ROWS, META)
    text = (tmp_path / "q.md").read_text()
    assert "Command: `python -m bench --quick` (model `test`" in text
    assert "| niah | 2,000 | 2,010 | vanilla | 0.50 | 1 | 100 | 2.0 | 0 |" in text
    assert "| niah | 2,000 | 2,010 | rlm | 0.00 | - | - | 2.0 | 1 |" in text


def test_json_and_plot_are_written(tmp_path: Path) -> None:
    report.write_json(tmp_path / "r" / "q.json", ROWS, META)
    assert json.loads((tmp_path / "r" / "q.json").read_text())["meta"]["lm"] == "test"
    if report.write_plot(tmp_path / "img" / "q.png", ROWS, "title"):
        assert (tmp_path / "img" / "q.png").read_bytes()[:4] == b"\x89PNG"


def test_merge_keeps_other_tasks_and_joins_commands() -> None:
    from bench.__main__ import merge

    earlier = {"meta": META, "rows": [*ROWS, {**ROWS[0], "task": "logs"}]}
    new = [{**ROWS[1], "task": "niah", "score": 1.0}]
    rows, meta = merge(earlier, new, META | {"command": "python -m bench --tasks niah"},
                       {"niah"})
    assert [(r["task"], r["score"]) for r in rows] == [("logs", 1.0), ("niah", 1.0)]
    assert meta["command"] == "python -m bench --quick && python -m bench --tasks niah"
    assert meta["wall_s"] == 24.0
