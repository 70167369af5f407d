"""``rlm ask "QUESTION" PATH…``: plan a question over the inputs, show the plan and its cost,
then run it and print the answer with the input lines it stands on.

CLI stage over :mod:`rlm_dsl.questions`. The chosen strategy and the checked spec go to stderr
(stdout with ``--plan-only``, which spends nothing but the planner's calls), then the forecast
(calls, tokens, cost, and the expected wall time for the local model). A forecast over the budget
(``--max-calls`` / ``--max-tokens`` / ``--max-usd``, else the defaults of
:mod:`rlm_dsl.questions.ask`) is confirmed on a terminal and stops with exit 3 otherwise.
``--save`` writes the spec, which ``rlm run`` reproduces; ``--json`` prints ``{answer,
evidence, strategy, spec, summary}``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from rlm_dsl.cli.app import app, err, out
from rlm_dsl.errors import InputError

STRATEGY_HELP = "Skip the planner: lookup, extract_all, count, pairs, summarize, timeline, " \
                "free_form."


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question, in quotes.")],
    paths: Annotated[list[str], typer.Argument(help="Input files, directories or globs.")],
    lm: Annotated[str | None, typer.Option("--lm", help="LM for the planner and every step.")]
    = None,
    db: Annotated[str | None, typer.Option("--db", help="DuckDB file for the run (resume).")]
    = None,
    max_calls: Annotated[int | None, typer.Option("--max-calls", min=0)] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=0)] = None,
    max_usd: Annotated[float | None, typer.Option("--max-usd", min=0)] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    save: Annotated[Path | None, typer.Option("--save", help="Write the spec here.")] = None,
    plan_only: Annotated[bool, typer.Option("--plan-only",
                                            help="Print the spec and its estimate; run nothing.")]
    = False,
    strategy: Annotated[str | None, typer.Option("--strategy", help=STRATEGY_HELP)] = None,
    write_spec: Annotated[bool, typer.Option(
        "--write-spec", help="Let the LM write its own spec from the chosen strategy (for "
        "capable models); it must compile and read only the inputs, else the template runs.")]
    = False,
    no_opt: Annotated[bool, typer.Option(
        "--no-opt", help="Plan with the untuned planner even when rlm optimize --planner saved "
        "a tuned one.")] = False,
    allow_weak_sandbox: Annotated[bool, typer.Option(
        "--allow-weak-sandbox", help="Run a free-form plan even where the REPL sandbox has no "
        "kernel isolation (no bubblewrap or seccomp here).")] = False,
) -> None:
    """Answer a question over huge inputs with a planned, checked, costed spec."""
    # DSPy and the runtime take seconds to import; `rlm --help` imports every command module
    from rlm_dsl.questions.ask import over_budget, plan_question, run_planned, run_store
    from rlm_dsl.questions.tuning import load_planner
    from rlm_dsl.runtime.runinfo import summary_line

    if not question.strip():
        raise InputError("rlm ask: the question is empty")
    caps = {"max_calls": max_calls, "max_tokens": max_tokens, "max_usd": max_usd}
    tuned = None if no_opt else load_planner()
    if tuned is not None:
        err.print(tuned[1], markup=False, highlight=False)
    with run_store(db) as store:
        # --plan-only plans in memory: it leaves no store behind
        planned = plan_question(question, paths, lm=lm, strategy=strategy,
                                spec_dir=None if save is None else str(save.parent),
                                db=None if plan_only else store, write_spec=write_spec,
                                planner=tuned[0] if tuned else None, **caps)
        if save is not None:
            save.parent.mkdir(parents=True, exist_ok=True)
            save.write_text(planned.spec, encoding="utf-8")
        _show_plan(planned, out if plan_only else err, as_json and not plan_only)
        if plan_only:
            return
        result = run_planned(planned, db=store, concurrency=concurrency, confirm=_confirm,
                             allow_weak_sandbox=allow_weak_sandbox, **caps)
    if as_json:
        out.print_json(json.dumps(result.to_json(), default=str))
    else:
        _print_answer(result.answer, result.evidence)
    for note in result.notes[len(planned.chosen.notes):]:
        err.print(note, markup=False, highlight=False)
    err.print(summary_line(result.summary), markup=False, highlight=False)
    if over_budget(planned, max_calls, max_tokens, max_usd) is None:
        err.print(planned.estimate.versus(result.summary), markup=False, highlight=False)


def _show_plan(planned: Any, shown: Any, quiet_spec: bool) -> None:
    """The strategy, the planner's notes, the spec (unless ``quiet_spec``), the forecast and
    what planning spent."""
    chosen = planned.chosen
    err.print(f"strategy: {chosen.strategy} (chosen by {chosen.source}; input: "
              f"{planned.profile.kind}, {planned.profile.tokens:,} tokens)", markup=False,
              highlight=False)
    for note in chosen.notes:
        err.print(f"note: {note}", markup=False, highlight=False)
    if not quiet_spec:
        shown.print(planned.spec, markup=False, highlight=False)
    planned.estimate.render(shown)
    spend = planned.spend
    if spend.calls or spend.cache_hits:
        shown.print(f"planning: {spend.calls} LM call(s), {spend.tokens:,} tokens spent"
                    + (f", {spend.cache_hits} answered from the store" if spend.cache_hits
                       else "") + " (inside the budget)", markup=False, highlight=False)
    if planned.wall_s is not None:
        shown.print(f"expected wall time: ~{planned.wall_s:,.0f} s on {planned.model}",
                    markup=False, highlight=False)


def _confirm(reason: str) -> bool:
    """Ask on a terminal whether to go over the budget; never elsewhere."""
    if not (sys.stdin.isatty() and err.is_terminal):
        return False
    return typer.confirm(f"{reason}. Run it anyway?", default=False, err=True)


def _print_answer(answer: Any, evidence: list[dict[str, Any]]) -> None:
    text = answer if isinstance(answer, str) else json.dumps(answer, default=str)
    out.print(text if text is not None else "(no answer)", markup=False, highlight=False)
    if evidence:
        out.print("evidence:", markup=False, highlight=False)
        for row in evidence:
            out.print(f"  {row['source']}:{row['line']}: {str(row['text'])[:200]}",
                      markup=False, highlight=False)
