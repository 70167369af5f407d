"""Live progress for ``rlm run``: one Rich bar per step plus the run's spend against its budget.

Observability stage, used by the CLI. :class:`RunProgress` is the executor's progress callback
(``RunOptions.progress``: ``(step id, advance, total or None)``): each step gets a bar with
done / total, rate and ETA; below the bars one line shows calls, tokens and dollars spent so far
against ``--max-calls`` / ``--max-tokens`` / ``--max-usd``, read live from the run's
:class:`~rlm_dsl.runtime.lm.budget.Budget` once the executor hands it over with :meth:`bind`
(until then, and for runs without caps, the line shows what was spent without limits).

    with RunProgress(console) as progress:
        options.progress = progress          # the executor calls progress.bind(budget) itself
        execute(plan, options)
"""

from __future__ import annotations

from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from rlm_dsl.runtime.lm.budget import Budget


class _Bars(Progress):
    """A Progress whose rendering ends with the spend line."""

    def __init__(self, owner: RunProgress, console: Console, transient: bool) -> None:
        self.owner = owner  # before Progress.__init__, which may render already
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                         TextColumn("eta"), TimeRemainingColumn(), console=console,
                         transient=transient)

    def get_renderables(self) -> Any:
        yield from super().get_renderables()
        yield self.owner.spend_line()


class RunProgress:
    """Per-step bars (done / total, rate, ETA) and the spend line; see the module docstring."""

    def __init__(self, console: Console, transient: bool = True) -> None:
        self.tasks: dict[str, Any] = {}
        self.budget: Budget | None = None
        self.bars = _Bars(self, console, transient)

    def __enter__(self) -> RunProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def bind(self, budget: Budget) -> None:
        """Show spend from ``budget`` (the run's shared budget) from now on."""
        self.budget = budget

    def __call__(self, step_id: str, advance: int, total: int | None) -> None:
        task = self.tasks.get(step_id)
        if task is None:
            task = self.tasks[step_id] = self.bars.add_task(step_id, total=total, rate="")
        if total is not None:
            self.bars.update(task, total=total)
        if advance:
            self.bars.advance(task, advance)
        speed = self.bars.tasks[task].speed
        self.bars.update(task, rate=f"{speed:.1f}/s" if speed else "")

    def spend_line(self) -> RenderableType:
        """``spend: 12 of 100 calls · 5,300 tokens · $0.0123 of $1.00``."""
        b = self.budget
        if b is None:
            return Text("spend: -", style="dim")
        parts = [_of(b.calls, b.max_calls, "calls", "{:,}"),
                 _of(b.tokens, b.max_tokens, "tokens", "{:,}"),
                 _of(b.usd, b.max_usd, "", "${:.4f}")]
        over = any(cap is not None and used >= cap for used, cap in (
            (b.calls, b.max_calls), (b.tokens, b.max_tokens), (b.usd, b.max_usd)))
        return Text("spend: " + " · ".join(parts), style="bold red" if over else "dim")


def _of(used: float, cap: float | None, unit: str, fmt: str) -> str:
    text = fmt.format(used) if cap is None else f"{fmt.format(used)} of {fmt.format(cap)}"
    return f"{text} {unit}".rstrip()
