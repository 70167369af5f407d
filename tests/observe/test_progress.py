"""The live progress helper: per-step bars and the spend line against the budget."""

from __future__ import annotations

import io

from rich.console import Console

from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.observe.progress import RunProgress


def test_bars_count_each_step_and_spend_follows_the_budget() -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=True)
    with RunProgress(console, transient=False) as progress:
        assert progress.spend_line().plain == "spend: -"
        progress("map-notes", 0, 10)
        progress("map-notes", 3, None)
        progress("reduce-summary", 0, None)
        budget = Budget(max_calls=100, max_usd=1.0)
        progress.bind(budget)
        budget.reserve(0, priced=True)
        budget.settle(5300, 0.0123)
        line = progress.spend_line()
        assert line.plain == "spend: 1 of 100 calls · 5,300 tokens · $0.0123 of $1.0000"
        assert "red" not in str(line.style)
        budget.calls = 100
        assert "red" in str(progress.spend_line().style)
    tasks = {t.description: t for t in progress.bars.tasks}
    assert (tasks["map-notes"].completed, tasks["map-notes"].total) == (3, 10)
    assert tasks["reduce-summary"].total is None
    shown = console.file.getvalue()
    assert "map-notes" in shown and "3/10" in shown and "spend: 100 of 100 calls" in shown
