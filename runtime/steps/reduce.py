"""Reduce steps: concat, tree(fanin), fold, sql and vote over a source table's values.

Step-handler stage. The *items* of a reduce are the source table's values in ``id`` order (a map
table's value column, a chunk table's ``text``, else the whole row). ``tree`` batches items by
``fanin`` *and* by token fit — a batch grows while its rendered prompt fits the LM's window — runs
each level's batches concurrently and recurses on the results until one call answers; an item
that alone does not fit is split in halves (a list by elements, text by lines). ``concat`` is one
call over everything and becomes a ``tree`` when that does not fit. ``fold`` walks the items in
order with a running ``state`` (``init`` first). ``sql`` renders ``{{ input }}`` as the source
table and materialises the query; ``vote`` takes the majority value without an LM. Null items
are dropped first; over no item at all no LM is called and the value is the step's ``empty``
option (null when not set). Beside the value these reduces write ``evidence``, the source rows it
rests on (:mod:`~rlm_dsl.runtime.steps.evidence`).
"""

from __future__ import annotations

import json
from typing import Any

import dspy
import duckdb

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.types import ListOf, Optional, Prim, Type
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.lm.gate import call_scope
from rlm_dsl.runtime.lm.signatures import vote
from rlm_dsl.runtime.steps.context import RunContext, where
from rlm_dsl.runtime.steps.evidence import (
    EVIDENCE_COLUMN,
    EVIDENCE_TYPE,
    says_nothing,
    supporting,
)
from rlm_dsl.runtime.steps.map import ensure_table, run_parallel
from rlm_dsl.runtime.steps.predict import ItemFailed, StepModule, TooLarge
from rlm_dsl.runtime.steps.sql_value import typed_value
from rlm_dsl.runtime.store.sql_limit import time_limited
from rlm_dsl.runtime.store.store import quote_ident


def source_items(ctx: RunContext, step: Step) -> list[Any]:
    """The values a reduce combines, in ``id`` order (``reduce x.field``: that field of each)."""
    items = _values(ctx, step)
    field = step.options.get("field")
    return [_pick(item, field) for item in items] if field else items


def _pick(value: Any, field: str) -> Any:
    if isinstance(value, dict):
        return value.get(field)
    if isinstance(value, list):
        return [_pick(v, field) for v in value]
    return value


def _values(ctx: RunContext, step: Step) -> list[Any]:
    source = ctx.table(step.source or "")
    producer = next((s for s in ctx.plan.steps() if s.table == step.source), None)
    while producer is not None and producer.kind == "filter":  # a filter keeps its source's value
        producer = next((s for s in ctx.plan.steps() if s.table == producer.source), None)
    columns = [name for name, _ in ctx.store.columns(source)]
    if producer is not None and producer.output is not None and producer.output.name in columns:
        column = producer.output.name
    elif "text" in columns:
        column = "text"
    else:
        return [{k: v for k, v in row.items() if k != "id"} for row in ctx.store.rows(source)]
    rows = ctx.store.con.execute(
        f"SELECT {quote_ident(column)} FROM {quote_ident(source)} ORDER BY id"
    ).fetchall()
    return [r[0] for r in rows]


def write_value(ctx: RunContext, step: Step, value: Any,
                evidence: list[dict[str, Any]] | None = None) -> None:
    """The one-row result table; ``evidence`` (the rows the value rests on) beside the value."""
    assert step.output is not None
    target = ctx.table(step.table)
    ctx.store.drop(target)
    extra = {EVIDENCE_COLUMN: EVIDENCE_TYPE} if evidence is not None else None
    ensure_table(ctx, target, step.output.name, step.output.type, extra)
    ctx.writer.forget(target)
    row = {"id": 0, step.output.name: value}
    if evidence is not None:
        row[EVIDENCE_COLUMN] = evidence
    ctx.writer.add(target, row)
    ctx.writer.flush()


def source_rows(ctx: RunContext, step: Step) -> list[dict[str, Any]]:
    """Id and provenance of each source row, in ``id`` order (aligned with the items)."""
    source = ctx.table(step.source or "")
    producer = next((s for s in ctx.plan.steps() if s.table == step.source), None)
    value = producer.output.name if producer is not None and producer.output else None
    columns = {name for name, _ in ctx.store.columns(source)} - {value}
    wanted = ["id", *(c for c in ("source", "first_line", "last_line", "line") if c in columns)]
    alias = {"line_no": "first_line", "end_line_no": "last_line"}
    wanted += [f"{quote_ident(old)} AS {new}" for old, new in alias.items()
               if old in columns and new not in columns]
    cursor = ctx.store.con.execute(f"SELECT {', '.join(wanted)} FROM {quote_ident(source)} "
                                   "ORDER BY id")
    names = [d[0] for d in cursor.description]
    return [{"id": None, "source": None, "first_line": None, "last_line": None, "line": None,
             **dict(zip(names, r, strict=True))} for r in cursor.fetchall()]


def run_sql(ctx: RunContext, step: Step) -> None:
    query = ctx.render(step.args[0], input=quote_ident(ctx.table(step.source or "")))
    try:
        with time_limited(ctx.store.con):
            if step.output is None:  # untyped: the query's own columns
                ctx.store.create_table_as(ctx.table(step.table), query)
                return
            cursor = ctx.store.con.execute(query)
            columns, rows = [d[0] for d in cursor.description], cursor.fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise SpecError(f"SQL error: {first}") from None
    write_value(ctx, step, typed_value(step, columns, rows))


def run_vote(ctx: RunContext, step: Step) -> None:
    every = source_items(ctx, step)
    items = [v for v in every if not says_nothing(v)]
    if not items:
        write_value(ctx, step, step.options.get("empty"), [])
        return
    value = vote(items)
    write_value(ctx, step, value, supporting(source_rows(ctx, step), every, value, "vote"))


class Reducer:
    """The LM reduces (concat / tree / fold) of one step."""

    def __init__(self, ctx: RunContext, step: Step, module: StepModule) -> None:
        assert step.output is not None
        self.ctx, self.step, self.module, self.out = ctx, step, module, step.output.type
        self.bound = ctx.lm_for(step)
        self.room = self.bound.window - module.prompt_overhead(self.bound, ctx.adapter)
        self.fanin = max(2, int(step.options.get("fanin", 8)))

    def run(self) -> None:
        # a null item or an empty list says nothing (a row not found, a value that was not
        # grounded, no incident in a window); with no item left there is nothing to combine, and
        # a small model asked anyway invents one
        every = source_items(self.ctx, self.step)
        items = [item for item in every if not says_nothing(item)]
        if not items:
            write_value(self.ctx, self.step, self.step.options.get("empty"), [])
            return
        scope = call_scope(step=self.ctx.key(self.step), chunk_id=0, depth=0)
        with scope, dspy.context(lm=self.bound.lm, adapter=self.ctx.adapter):
            if self.step.strategy == "fold":
                value = self.fold(items)
            elif self.step.strategy == "concat" and self.fits(items, 0):
                value = self.call(items, 0, 0)
            else:
                value = self.tree(items)
        rows = source_rows(self.ctx, self.step)
        write_value(self.ctx, self.step, value,
                    supporting(rows, every, value, self.step.strategy or ""))

    def prompt(self, items: list[Any], level: int, state: Any = None) -> str:
        return self.ctx.render(self.step.prompt or "", items=items, level=level, state=state)

    def fits(self, items: list[Any], level: int, state: Any = None) -> bool:
        return self.bound.fits(self.prompt(items, level, state), self.room)

    def call(self, items: list[Any], level: int, batch: int, state: Any = None) -> Any:
        with call_scope(chunk_id=batch, depth=level):
            return self.module.call(self.bound, self.ctx.adapter, self.prompt(items, level, state))

    def tree(self, items: list[Any]) -> Any:
        level = 0
        while True:
            batches = self.batches(items, level)
            if level > 0 and len(batches) >= len(items):
                raise ItemFailed(f"tree level {level}: results no longer fit together in the "
                                 f"{self.bound.window}-token window", None, 1)
            results: dict[int, Any] = {}
            jobs = [(self._level_call, (batch, level, i, results))
                    for i, batch in enumerate(batches)]
            run_parallel(self.ctx, jobs)
            items, level = [results[i] for i in range(len(batches))], level + 1
            if len(items) == 1:
                return items[0]

    def _level_call(self, job: tuple[list[Any], int, int, dict[int, Any]]) -> None:
        batch, level, index, results = job
        results[index] = self.call(batch, level, index)
        self.ctx.tick(self.step)

    def batches(self, items: list[Any], level: int) -> list[list[Any]]:
        """Consecutive groups of at most ``fanin`` items whose prompt fits the window."""
        groups: list[list[Any]] = []
        current: list[Any] = []
        queue = list(items)
        while queue:
            item = queue.pop(0)
            if len(current) < self.fanin and self.fits([*current, item], level):
                current.append(item)
                continue
            if current:
                groups.append(current)
                current = []
                queue.insert(0, item)
                continue
            queue[:0] = list(_halves(item, self.step))
        if current:
            groups.append(current)
        return groups or [[]]

    def fold(self, items: list[Any]) -> Any:
        state = self.step.options.get("init", _empty(self.out))
        for index, item in enumerate(items):
            try:
                state = self.call([item], 0, index, state)
            except TooLarge as exc:
                raise ItemFailed(f"fold item {index} does not fit: {exc}", None, 1) from None
            self.ctx.tick(self.step)
        return state


def _halves(item: Any, step: Step) -> tuple[Any, Any]:
    if isinstance(item, list) and len(item) >= 2:
        return item[: len(item) // 2], item[len(item) // 2 :]
    text = item if isinstance(item, str) else json.dumps(item, default=str)
    if len(text) < 2:
        raise ItemFailed(f"{where(step)}: one item does not fit the context window", None, 1)
    lines = text.split("\n")
    if len(lines) >= 2:
        return "\n".join(lines[: len(lines) // 2]), "\n".join(lines[len(lines) // 2 :])
    return text[: len(text) // 2], text[len(text) // 2 :]


def _empty(t: Type) -> Any:
    match t:
        case ListOf():
            return []
        case Prim("str"):
            return ""
        case Prim("int") | Prim("float"):
            return 0
        case Prim("bool"):
            return False
        case Optional():
            return None
    return None
