"""Incremental runs (``rlm run --incremental``): append a log's new lines, recompute via the cache.

Executor stage. With ``--incremental`` on the same ``--db``, a ``log`` input whose table is
already there takes only the lines its files gained (:func:`rlm_dsl.runtime.logs.append_new`:
new records get new ids, a record that grew keeps its id), and every step below an input runs
again instead of being skipped as done. LM row steps (maps, LM filters) start from an empty
result table, so each row is asked again — but a row whose rendered prompt is unchanged is
answered from the ``lm_calls`` cache, free and without reaching the LM; only new or changed rows
(and the reduces over them) make real calls. This stays right whatever the chunking does with the
new lines (a shifted chunk boundary is just a changed prompt).
"""

from __future__ import annotations

import os

from rlm_dsl.compiler.plan import Step
from rlm_dsl.runtime.ingest.inputs import resolve_files
from rlm_dsl.runtime.logs import append_new
from rlm_dsl.runtime.steps.context import RunContext


def append_log(ctx: RunContext, step: Step) -> int | None:
    """Append the new lines of ``step``'s log files to its existing table and return its row
    count; ``None`` when a full load is needed (no table yet, no path here, or a dedup table)."""
    paths = ctx.inputs.get(step.name) or step.options.get("path")
    if not paths or step.options.get("dedup") or not ctx.store.table_exists(step.table):
        return None
    patterns = [os.path.expanduser(str(p)) for p in ([paths] if isinstance(paths, str) else paths)]
    files = resolve_files(ctx.store, patterns, directories=True, text=False)
    append_new(ctx.store, step.table, files, format=step.options.get("format"),
               encoding=ctx.encoding)
    return ctx.store.count(step.table)


def clear_results(ctx: RunContext, step: Step) -> None:
    """Empty the result tables of an LM row step before it runs again (the cache answers the
    rows that did not change)."""
    if step.kind == "map" or (step.kind, step.strategy) == ("filter", "lm"):
        table = ctx.table(step.table)
        ctx.store.drop(table)
        ctx.store.drop(f"{table}__decisions")
