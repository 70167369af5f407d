"""Cost forecast, per step kind: the ``estimate`` half of each entry of the handler table.

Estimation stage (:mod:`rlm_dsl.runtime.handlers` holds the table; :mod:`rlm_dsl.runtime.estimator`
walks the plan). Every function has one signature ``(walker, local, step, result)``: it runs a
step that costs no LM call for real (inputs, chunks, SQL and regex filters, SQL reduces) and
counts the prompts of the others: maps and LM filters with the executor's window-fit split
(:func:`~rlm_dsl.runtime.steps.map.split_row`), reduces with the executor's own
:class:`~rlm_dsl.runtime.steps.reduce.Reducer` batching driven by a stand-in run context that
renders and counts but never calls an LM.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import duckdb

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.templates import environment
from rlm_dsl.compiler.types import Prim
from rlm_dsl.runtime.estimate.report import (
    RLM_ANSWER_TOKENS,
    RLM_HISTORY_TOKENS,
    RLM_TURN_TOKENS,
    SAMPLE,
    StepEstimate,
    out_type,
)
from rlm_dsl.runtime.estimate.values import answer_tokens, placeholder, profile_for
from rlm_dsl.runtime.ingest.chunkers import chunk
from rlm_dsl.runtime.ingest.inputs import load_input
from rlm_dsl.runtime.ingest.params import coerce_params
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.signatures import combine
from rlm_dsl.runtime.steps.evidence import LINE_TEXT_COLUMN, PROVENANCE
from rlm_dsl.runtime.steps.grounding import GROUNDED_COLUMN
from rlm_dsl.runtime.steps.map import MAX_DEPTH, split_row
from rlm_dsl.runtime.steps.predict import StepModule
from rlm_dsl.runtime.steps.recipe import row_input
from rlm_dsl.runtime.steps.reduce import Reducer, _empty, source_items
from rlm_dsl.runtime.store.store import quote_ident


class _Ctx:
    """The part of ``RunContext`` a :class:`Reducer` touches: render, LMs, adapter, tables."""

    def __init__(self, walker: Any, step: Step, bound: Any) -> None:
        self.walker, self.bound, self.adapter = walker, bound, RobustAdapter()
        self.plan, self.store, self.params = walker.plan, walker.store, walker.params
        self.step = step

    def render(self, source: str, **variables: Any) -> str:
        return environment().from_string(source).render(**self.params, **variables).strip()

    def lm_for(self, step: Step) -> Any:
        return self.bound

    def table(self, name: str) -> str:
        return name


class _Costing:
    """Prompt overhead, window room and answer size of one LM step."""

    def __init__(self, walker: Any, step: Step) -> None:
        self.bound = walker.bound(step)
        self.ctx = _Ctx(walker, step, self.bound)
        self.module = StepModule(step, out_type(step), walker.plan.description)
        messages = self.ctx.adapter.format(self.module.predict_signature(), [], {"prompt": ""})
        self.fixed = sum(self.count(str(m.get("content", ""))) for m in messages)
        self.room = self.bound.window - self.module.prompt_overhead(self.bound, self.ctx.adapter)
        self.profile = profile_for(self.bound.resolved.model_id)
        self.answer = answer_tokens(self.count, self.module.value, out_type(step), step.kind,
                                    bool(step.options.get("reason")), self.profile)
        self.retries = int(step.options.get("retries", 2))

    def count(self, text: str) -> int:
        return self.bound.count(text)

    def finish(self, result: StepEstimate, prompts: list[int], scale: float = 1.0) -> None:
        result.model = self.bound.resolved.model_id
        result.calls = round(len(prompts) * scale)
        result.calls_min = result.calls
        result.calls_max = result.calls * (1 + self.retries)
        result.prompt_tokens = round(sum(self.fixed + p for p in prompts) * scale)
        result.completion_tokens = result.calls * self.answer
        result.tokens_min = result.tokens
        result.tokens_max = result.tokens * (1 + self.retries)  # a retry resends the prompt
        price = self.bound.resolved.price
        if price is not None:
            result.cost_usd = round(result.prompt_tokens * price[0]
                                    + result.completion_tokens * price[1], 6)


def estimate_input(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    if walker.row is None:
        load_input(walker.store, local, walker.inputs.get(step.name), encoding=walker.encoding)
        return
    row_input(walker, local, walker.row)


def estimate_chunk(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    # The executor chunks with the run's default LM's counter, else its first bound LM's.
    names = sorted({s.lm for s in walker.lm_steps()}, key=lambda n: n or "")
    bound = walker.bound(replace(step, lm=None if None in names or not names else names[0]))
    chunk(walker.store, local, local.source or "", bound.resolved.token_counter, walker.params)


def estimate_filter_sql(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    """``filter … where sql`` / ``regex``: the same statement the executor runs."""
    source = quote_ident(local.source or "")
    if local.strategy == "sql":
        where, args = f"({_render(local.args[0], walker.params)})", []
    else:
        where, args = "regexp_matches(text, ?)", [local.args[0]]
    with walker.store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(local.table)} AS "
                    f"SELECT * FROM {source} WHERE {where} ORDER BY id", args)
    producer = next((s for s in walker.plan.steps() if s.table == step.source), None)
    if producer is not None and producer.kind in ("map", "reduce", "rlm"):
        walker.uncertain.add(local.table)  # which rows pass depends on the LM's answers
        result.note = "rows kept depend on the LM's answers: later steps are ranges"


def estimate_filter_lm(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    estimate_map(walker, local, step, result)
    walker.store.create_table_as(local.table, f"SELECT * FROM {quote_ident(local.source)}")
    walker.uncertain.add(local.table)
    result.note = "one call per row; rows kept unknown: later steps are ranges"


def _render(source: str, params: dict[str, Any], **variables: Any) -> str:
    """``source`` rendered as the executor renders it (its trailing newline dropped)."""
    text = environment().from_string(source).render(**params, **variables)
    return text[:-1] if text.endswith("\n") else text


def _sample(rows: list[Any]) -> tuple[list[Any], float]:
    if len(rows) <= SAMPLE:
        return rows, 1.0
    stride = len(rows) / SAMPLE
    return [rows[int(i * stride)] for i in range(SAMPLE)], len(rows) / SAMPLE


def estimate_map(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    cost = _Costing(walker, step)
    max_depth = int(step.options.get("max_depth", MAX_DEPTH))
    rows = walker.rows(local.source or "")
    prompts: list[int] = []
    cached = 0
    answers: dict[int, tuple[int, str]] = {}  # row id → (pieces, its prompt)

    def solve(row: dict[str, Any], depth: int) -> int:
        """Record the row's calls; returns how many pieces it was answered in."""
        nonlocal cached
        text = cost.ctx.render(step.prompt or "", chunk=row)
        tokens = cost.count(text)
        halves = split_row(row) if tokens > cost.room else None
        if depth == 0:
            answers[int(row["id"])] = (1, text)
        if halves is None or depth >= max_depth:
            if walker.fresh(step, text):
                prompts.append(tokens)
            else:
                cached += 1
            return 1
        return sum(solve(half, depth + 1) for half in halves)

    sample, scale = _sample(rows)
    for row in sample:
        answers[int(row["id"])] = (solve(row, 0), answers[int(row["id"])][1])
    cost.finish(result, prompts, scale)
    splits = len(prompts) + cached - len(sample)
    result.note = f"one call per row{f', +{splits} for splits' if splits > 0 else ''}"
    if cached:
        result.note += f", {round(cached * scale)} repeated prompt(s) answered by the cache"
    if step.options.get("grounded"):  # a row whose value is not in its text is asked again
        result.calls_max *= 2
        result.tokens_max *= 2
        result.note += f", + up to {len(rows)} re-asks for grounded fields"
    if step.kind == "map":
        def value(row: dict[str, Any]) -> Any:
            """The row's answer; a split row's is its pieces combined (lists concatenated,
            text joined); rows outside the sample answer their own text."""
            pieces, text = answers.get(int(row["id"]), (1, str(row.get("text"))))
            return combine(step.output.type, [walker.value(step, "map", text)] * pieces)

        walker.keep_values(step, local, [(int(r["id"]), value(r)) for r in rows])
        if step.options.get("grounded"):
            _keep_grounding(walker, local)


def _keep_grounding(walker: Any, local: Step) -> None:
    """A grounded map's extra columns, for later steps' templates: provenance as NULL, the
    row's first line standing in for ``line_text`` (the line its value was copied from)."""
    table, source = quote_ident(local.table), quote_ident(local.source or "")
    with walker.store.write() as con:
        for name, kind in {**PROVENANCE, GROUNDED_COLUMN: "BOOLEAN",
                           LINE_TEXT_COLUMN: "VARCHAR"}.items():
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(name)} {kind}")
        columns = [c[0] for c in con.execute(f"DESCRIBE {source}").fetchall()]
        if "text" in columns:
            con.execute(f"UPDATE {table} SET line_text = split_part(s.text, chr(10), 1) "
                        f"FROM {source} s WHERE {table}.id = s.id")


def estimate_recipe(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    sub = walker.plan.uses[step.recipe]
    params = coerce_params(sub, dict(step.options.get("params") or {}))
    rows = walker.rows(local.source or "")
    values = []
    for row in rows:
        prefix = f"{walker.prefix}{step.id}__{row['id']}__"
        inner = walker.nested(sub, params, prefix, row)
        for part in inner.walk({}):
            for name in ("calls", "calls_min", "calls_max", "prompt_tokens",
                         "completion_tokens", "tokens_min", "tokens_max"):
                setattr(result, name, getattr(result, name) + getattr(part, name))
            if part.cost_usd is not None:
                result.cost_usd = (result.cost_usd or 0.0) + part.cost_usd
            result.model = result.model or part.model
        values.append((int(row["id"]), _sub_output(walker, sub, prefix, step)))
    result.note = f"recipe '{step.recipe}' once per row ({len(rows)} rows)"
    walker.keep_values(step, local, values)


def _sub_output(walker: Any, sub: Any, prefix: str, step: Step) -> Any:
    """The placeholder answer a ``use``d recipe's walk left for one row: its first output's."""
    producer = sub.producer(sub.outputs[0]) if sub.outputs else None
    table = prefix + producer.table if producer is not None else ""
    if producer is None or producer.output is None or not walker.store.table_exists(table):
        return walker.value(step, "map")
    rows = walker.store.rows(table, order_by="id")
    return rows[0].get(producer.output.name) if rows else walker.value(step, "map")


def estimate_reduce_sql(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    query = _render(step.args[0], walker.params, input=quote_ident(local.source or ""))
    try:
        walker.store.create_table_as(local.table, query)
    except duckdb.Error:
        walker.store.drop(local.table)  # placeholder rows may not fit the query; no LM cost


def estimate_vote(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    walker.keep_values(step, local, [(0, walker.value(step, "reduce"))])


def estimate_reduce_lm(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    cost = _Costing(walker, step)
    reducer = Reducer(cost.ctx, replace(step, source=local.source), cost.module)
    items = source_items(cost.ctx, replace(step, source=local.source))
    prompts: list[int] = []
    last = ""

    def ask(prompt: str) -> Any:
        """Count ``prompt`` unless the cache would answer it; its placeholder answer."""
        nonlocal last
        if walker.fresh(step, prompt):
            prompts.append(cost.count(prompt))
        last = prompt
        return walker.value(step, "reduce", prompt)

    if step.strategy == "fold":
        state = step.options.get("init", _empty(step.output.type))
        for item in items:
            state = ask(reducer.prompt([item], 0, state))
        result.note = f"fold: one call per item ({len(items)})"
    elif step.strategy == "concat" and reducer.fits(items, 0):
        ask(reducer.prompt(items, 0))
        result.note = f"concat: one call over {len(items)} items"
    else:
        levels = _tree(reducer, items, ask)
        result.note = f"{step.strategy}: tree of {levels} level(s)"
    cost.finish(result, prompts)
    walker.keep_values(step, local, [(0, walker.value(step, "reduce", last or None))])


def _tree(reducer: Any, items: list[Any], ask: Any) -> str:
    """Simulate ``Reducer.tree``: the same batches per level, each ``ask``ed (counted, answered
    by a placeholder); returns the per-level fan-out."""
    level, fanout = 0, []
    while True:
        batches = reducer.batches(items, level)
        answers = [ask(reducer.prompt(batch, level)) for batch in batches]
        fanout.append(str(len(batches)))
        if level > 0 and len(batches) >= len(items):
            return " → ".join(fanout) + " (stops: results no longer fit)"
        items = answers
        level += 1
        if len(items) == 1:
            return f"{level} ({' → '.join(fanout)} calls)"


def estimate_rlm(walker: Any, local: Step, step: Step, result: StepEstimate) -> None:
    """The model's typical trajectory (:class:`~rlm_dsl.runtime.estimate.values.Trajectory`,
    its basis in the note) as the point estimate, within the range the step's budget options
    allow: one turn that SUBMITs at once … every turn, the extract call and every sub-call."""
    opts = step.options
    turns_cap, sub_cap = int(opts.get("max_iterations", 20)), int(opts.get("max_llm_calls", 50))
    root = walker.bound(step)
    sub = walker.bound(replace(step, lm=step.sub_lm)) if step.sub_lm else root
    typical = profile_for(root.resolved.model_id).rlm
    task = root.count(_render(step.prompt or "", walker.params))
    base = RLM_TURN_TOKENS + task
    turns = min(turns_cap, typical.turns or turns_cap)
    extract = int(typical.turns is None)  # the turns ran out: DSPy asks for the answer once more
    tools = opts.get("tools") or ("llm_query",)
    subs = (min(sub_cap, math.ceil(turns * typical.sub_calls_per_turn))
            if {"llm_query", "llm_query_batched"} & set(tools) else 0)
    data = _source_tokens(walker, local.source or "", sub)
    sub_prompt = task + min(sub.window // 2, math.ceil(data / max(subs, 1)))
    sub_answer = sub.count(placeholder(Prim("str"), "map", profile_for(sub.resolved.model_id)))
    result.model = root.resolved.model_id
    result.calls = turns + extract + subs
    result.calls_min = 1
    result.calls_max = turns_cap + 1 + sub_cap
    result.prompt_tokens = (sum(base + i * RLM_HISTORY_TOKENS for i in range(turns + extract))
                            + subs * sub_prompt)
    result.completion_tokens = (turns + extract) * typical.action_tokens + subs * sub_answer
    result.tokens_min = base + typical.action_tokens
    high = sum(base + i * RLM_HISTORY_TOKENS for i in range(turns_cap + 1)) + sub_cap * sub_prompt
    result.tokens_max = max(high + result.calls_max * RLM_ANSWER_TOKENS, result.tokens)
    result.note = (f"rlm: ~{result.calls} calls ({turns} turn(s), {subs} sub-call(s)"
                   f"{', the extract' if extract else ''}: {typical.basis}); 1 to "
                   f"{result.calls_max} (max_iterations={turns_cap}, max_llm_calls={sub_cap})")
    price = root.resolved.price
    if price is not None:
        result.cost_usd = round(result.prompt_tokens * price[0]
                                + result.completion_tokens * price[1], 6)
    walker.keep_values(step, local, [(0, walker.value(step, "rlm"))])


def _source_tokens(walker: Any, source: str, bound: Any) -> int:
    """Tokens of the text an rlm step reads (its source's ``text`` column), by ``bound``'s
    counter."""
    if not walker.store.table_exists(source) or "text" not in dict(walker.store.columns(source)):
        return 0
    texts = walker.store.con.execute(
        f"SELECT CAST(text AS VARCHAR) FROM {quote_ident(source)}").fetchall()
    return bound.count("\n".join(t or "" for (t,) in texts))
