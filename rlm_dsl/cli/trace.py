"""``rlm trace run.duckdb``: show a finished (or interrupted) run as one recursion tree.

CLI stage over :mod:`rlm_dsl.runtime.observe.trace`: a Rich tree of steps → chunks → LM calls → REPL
iterations → sub-calls with calls, tokens, cost, latency, cache hits and failures per node;
``--step``, ``--failed`` and ``--depth`` narrow it, ``--json`` prints the tree as JSON and
``--html report.html`` writes the self-contained HTML report
(:mod:`rlm_dsl.runtime.observe.report_html`), whose plan graph is the run's step order unless
``--recipe FILE`` gives the spec to draw the real graph from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.tree import Tree

from rlm_dsl.cli.app import app, out
from rlm_dsl.runtime.observe.nodes import Node
from rlm_dsl.runtime.observe.trace import Trace, open_trace

PREVIEW = 100


@app.command()
def trace(
    db: Annotated[Path, typer.Argument(help="The run database (rlm run --db FILE).")],
    step: Annotated[str | None, typer.Option("--step", help="Only this step (id or name).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed branches.")] = False,
    depth: Annotated[int | None, typer.Option("--depth", help="Hide calls deeper than N.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tree as JSON.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write an HTML report.")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Run id (default: latest).")] = None,
    recipe: Annotated[Path | None, typer.Option(
        "--recipe", help="The run's spec: draw its real plan graph.")] = None,
) -> None:
    """Show a run's tree of steps, chunks, LM calls and REPL iterations."""
    full = open_trace(str(db), run)
    if recipe is not None:
        from rlm_dsl.compile import compile_file

        full.edges = [(a, b) for a, b in compile_file(recipe).graph.edges]
    shown = full.filter(step=step, failed=failed, depth=depth)
    if html is not None:
        from rlm_dsl.runtime.observe.answers import load_answers
        from rlm_dsl.runtime.observe.report_html import write_report
        from rlm_dsl.runtime.store.store import Store

        with Store.open(db) as store:
            answers = load_answers(store, full.run)
        write_report(shown, html, answers)
        out.print(f"wrote {html}", markup=False, highlight=False)
        return
    if as_json:
        typer.echo(json.dumps(shown.to_json(), indent=2, ensure_ascii=False, default=str))
        return
    out.print(render_tree(shown))


def render_tree(trace: Trace) -> Tree:
    """The Rich tree of ``trace``."""
    tree = Tree(_line(trace.root))
    for child in trace.root.children:
        _add(tree, child)
    return tree


def _add(parent: Tree, node: Node) -> None:
    branch = parent.add(_line(node))
    for failure in node.detail.get("failures") or []:
        branch.add(f"[red]failure[/] {escape(_short(failure['error']))} "
                   f"(attempts {failure['attempts']})")
    for child in node.children:
        _add(branch, child)


def _line(node: Node) -> str:
    s = node.stats
    head = f"[bold]{escape(node.label)}[/]" if node.kind in ("run", "step") else escape(node.label)
    if node.failed:
        head = f"[red]{head}[/]"
    parts = [f"{s.calls} call{'s' * (s.calls != 1)}", f"{s.tokens} tok"]
    wall = node.detail.get("elapsed_s")
    if wall is not None:  # a run, step, split row or piece: concurrent calls overlap
        parts.append(f"wall {seconds(wall)}")
        if s.calls and node.kind in ("run", "step"):
            parts.append(f"LM {seconds(s.latency_s)} summed")
    else:
        parts.append(seconds(s.latency_s))
    if node.kind == "call":
        parts[:2] = [f"{s.prompt_tokens}+{s.completion_tokens} tok"]
    if s.cost_usd is not None:
        parts.append(f"${s.cost_usd:.4f}")
    if s.cached:
        parts.append(f"{s.cached} cached")
    if s.errors:
        parts.append(f"[red]{s.errors} error{'s' * (s.errors != 1)}[/]")
    if s.failures:
        parts.append(f"[red]{s.failures} failed[/]")
    status = node.detail.get("status")
    if node.kind in ("step", "chunk", "piece") and status:
        parts.insert(0, status)
    text = f"{head}  [dim]{' · '.join(parts)}[/]"
    return text + _preview(node)


def _preview(node: Node) -> str:
    d = node.detail
    if node.kind == "call":
        shown = d.get("error") or d.get("response") or ""
        return f"\n  [dim]→ {escape(_short(shown))}[/]" if shown else ""
    if node.kind in ("iteration", "subcall"):
        shown = d.get("error") or d.get("code") or ""
        return f"\n  [dim]{escape(_short(shown))}[/]" if shown else ""
    return ""


def seconds(value: float) -> str:
    """A duration people can read: ``2.41 s``, ``35 ms``, ``0.2 ms``."""
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.001:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.1f} ms"


def _short(text: str | None) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"
