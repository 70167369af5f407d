"""Recipes calling recipes: a map step that runs a ``use``d recipe once per source row.

Step-handler stage. For each row, the sub-recipe's plan (``plan.uses[alias]``) runs in the same
store and under the same budget and LMs, with its params from the step's ``params={...}`` option
and its steps keyed ``<step id>__<row id>__<sub step>`` in the system tables (``lm_calls``,
``failures``: the trace draws them per row). The sub-recipe's first input is the row's ``text`` —
as lines for line inputs, else one record — and its first output becomes the row's value in the
step's table, beside the parent row's source and line range (so a reduce over it cites them as
evidence). While a row runs, its tables are scratch tables ``<step id>__<row id>__<table>``
(a row stopped half-way resumes from them); when it finishes they are folded into ONE table per
sub-recipe step, ``<step id>__<table>`` (``map-counts__parts`` holds the chunks of every row),
whose rows carry the parent row's id in ``parent_id`` (a nested ``use`` adds ``parent_id_2``, …).
Rows already done are skipped on resume; a sub-run that fails goes to ``failures`` like any row,
and a row whose sub-run left failed rows of its own is not done: it is missing from the outputs
(not half counted) until ``--retry-failed`` retries those rows from its scratch tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.errors import RlmError
from rlm_dsl.runtime.ingest.params import coerce_params
from rlm_dsl.runtime.lm.gate import call_scope
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.evidence import PROVENANCE, provenance
from rlm_dsl.runtime.steps.map import ensure_table, pending_rows
from rlm_dsl.runtime.steps.outputs import read_value
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import quote_ident

LINE_INPUTS = ("text", "lines", "stdin", "log")
PARENT_ID = "parent_id"


def run_recipe_map(ctx: RunContext, step: Step, sub_run: Callable[[RunContext, Plan], None]
                   ) -> int:
    assert step.output is not None and step.recipe is not None
    sub = ctx.plan.uses[step.recipe]
    target = ctx.table(step.table)
    extra = {k: v for k, v in PROVENANCE.items() if k != step.output.name}
    ensure_table(ctx, target, step.output.name, step.output.type, extra)
    rows, _ = pending_rows(ctx, step, target)
    params = coerce_params(sub, dict(step.options.get("params") or {}))
    ctx.tick(step, 0, len(rows))
    for row in rows:
        prefix = f"{ctx.prefix}{step.id}__{row['id']}__"
        sctx = replace(ctx, plan=sub, prefix=prefix, params=params, row=row,
                       modules_prefix=f"{ctx.modules_prefix}{step.recipe}/")
        try:
            with call_scope(step=ctx.key(step), chunk_id=int(row["id"])):
                sub_run(sctx, sub)
        except RlmError as exc:
            ctx.fail(step, int(row["id"]), f"sub-recipe '{step.recipe}': {exc}", None, 1)
            continue
        if queries.has_open_failures_under(ctx.store, prefix):  # rows of it failed: the row
            ctx.tick(step)  # is not done; its scratch tables wait for --retry-failed
            continue
        value = read_value(sctx, sub.producer(sub.outputs[0])) if sub.outputs else None
        fold_row(ctx, step, int(row["id"]), prefix)
        ctx.writer.add(target, {**provenance(row), "id": row["id"], step.output.name: value})
        ctx.tick(step)
    ctx.writer.flush()
    return len(rows)


def fold_row(ctx: RunContext, step: Step, row_id: int, prefix: str) -> None:
    """Move the scratch tables of one finished row (``prefix``) into the step's per-sub-step
    tables, keyed by ``parent_id`` (idempotent: a row folded before is replaced), and forget the
    row's sub-step fingerprints (their tables are gone)."""
    ctx.writer.flush()
    home = f"{ctx.key(step)}__"
    scratch = [(table, home + table[len(prefix):], ctx.store.columns(table))
               for table in ctx.store.tables_under(prefix)]
    exists = {folded: ctx.store.table_exists(folded) for _, folded, _ in scratch}
    with ctx.store.transaction() as con:  # a view (a lazy chunk table) is folded as its rows
        for table, folded, columns in scratch:
            select = f"SELECT {_keyed(columns)} FROM {quote_ident(table)}"
            if exists[folded]:
                con.execute(f"DELETE FROM {quote_ident(folded)} WHERE {PARENT_ID} = ?", [row_id])
                con.execute(f"INSERT INTO {quote_ident(folded)} BY NAME {select}", [row_id])
            else:
                con.execute(f"CREATE TABLE {quote_ident(folded)} AS {select}", [row_id])
    for table, _, _ in scratch:  # after the commit: a kill before it folds the row again
        ctx.store.drop(table)
    queries.forget_fingerprints_under(ctx.store, prefix)


def _keyed(columns: list[tuple[str, str]]) -> str:
    """The select list of a folded row: ``parent_id`` first; the keys of a nested ``use``
    (``parent_id``, ``parent_id_2``, …) move one level down."""
    def depth(name: str) -> int | None:
        if name == PARENT_ID:
            return 1
        head, _, level = name.rpartition("_")
        return int(level) if head == PARENT_ID and level.isdigit() else None

    out = [f"CAST(? AS BIGINT) AS {PARENT_ID}"]
    for name, _ in columns:
        level = depth(name)
        alias = f" AS {quote_ident(f'{PARENT_ID}_{level + 1}')}" if level else ""
        out.append(quote_ident(name) + alias)
    return ", ".join(out)


def drop_row_tables(ctx: RunContext, step: Step) -> None:
    """Drop every table a ``use`` map keeps beside its own: folded and scratch."""
    for table in ctx.store.tables_under(f"{ctx.key(step)}__"):
        ctx.store.drop(table)


def row_input(ctx: RunContext, step: Step, row: dict[str, Any]) -> int:
    """Write the sub-recipe input table of ``step`` from the parent ``row``."""
    text = str(row.get("text") or "")
    source = f"{row.get('source') or 'row'}#{row['id']}"
    table = quote_ident(step.table)
    with ctx.store.write() as con:
        if step.strategy in LINE_INPUTS:
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT CAST(i - 1 AS BIGINT) AS id, "
                "CAST(? AS VARCHAR) AS source, CAST(i AS BIGINT) AS line_no, "
                "CAST(NULL AS BIGINT) AS byte_offset, l[i] AS text "
                "FROM (SELECT string_split(?, chr(10)) AS l), range(1, len(l) + 1) t(i) "
                "ORDER BY i", [source, text])
        else:
            con.execute(
                f"CREATE OR REPLACE TABLE {table} AS SELECT CAST(0 AS BIGINT) AS id, "
                "CAST(? AS VARCHAR) AS source, CAST(1 AS BIGINT) AS line_no, "
                "CAST(? AS VARCHAR) AS text", [source, text])
    return ctx.store.count(step.table)
