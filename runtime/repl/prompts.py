"""REPL prompts: the action instructions of an `rlm` step and what the model is told about its data.

The instructions become the docstring of the ``generate_action`` signature, so DSPy optimizers can
rewrite them; they speak of *our* tools (the lazy ``context`` handle, read-only ``sql`` over the
run's DuckDB tables, ``llm_query``/``llm_query_batched``, ``rlm_query`` recursion, ``SUBMIT``)
and of the budgets. Run-time facts (table names and columns, row and char counts, chunk metadata,
the sub-LM window, calls left) change per run and go into ``variables_info``, an input field, via
:func:`context_variable` — never into the instructions.
"""

from __future__ import annotations

from typing import Any

from dspy.primitives.repl_types import REPLVariable

from rlm_dsl.compiler.types import Enum, ListOf, Optional, Record, Type

TOOL_DOCS = {
    "sql": (
        "- `sql(query)` — one read-only DuckDB statement (SELECT/WITH/DESCRIBE/SHOW/SUMMARIZE) "
        "over this run's tables; returns a list of row dicts (at most 10,000: filter, aggregate "
        "and LIMIT in SQL). Use it to find, count and group exactly; files, URLs, COPY, ATTACH "
        "and writes are refused."
    ),
    "llm_query": (
        "- `llm_query(prompt)` — ask the sub-LM one question about a snippet; returns its text. "
        "The prompt must fit the sub-LM window (see `context`)."
    ),
    "llm_query_batched": (
        "- `llm_query_batched(prompts)` — many prompts at once, run concurrently; returns a list "
        "of answers in order. Much faster than a loop of llm_query."
    ),
    "rlm_query": (
        "- `rlm_query(sub_context, question)` — hand a piece too large for one llm_query (text, or "
        "a list of lines) to a recursive sub-agent with its own REPL; returns its answer as text."
    ),
}

ACTION_INSTRUCTIONS = """You answer a task over an input far larger than your context window. \
You never see the input whole: it is a table in a DuckDB database, and you explore it by \
writing Python in a REPL, reading the output, and writing more code. Work iteratively.

Inputs: `task` (also a REPL variable). Outputs to produce:
{output_fields}

In the REPL:
- `context` — a lazy handle over the input table (rows in id order, each with `id` and `text`); \
never print it whole. `len(context)` rows, `context.n_chars`, `context.columns`, \
`context.preview(5)`, `context[i]` (a row dict), `context[a:b]` (row dicts), \
`context.lines(a, b)` (text of rows a..b-1), `for piece in context.chunks(200): ...`, \
`context.search(r"regex", limit=100)` (matching rows with their ids).
{tool_docs}
- `print()` — always print what you need to see; long output is truncated.
- `SUBMIT({output_names})` — ends the task with typed values; a value of the wrong type is \
refused and you may try again.

Budget: {max_llm_calls} sub-LM calls in total (sub-agents included) and {max_iters} REPL steps; \
a refused or failed call comes back as an error text you can read.

1. LOOK FIRST: print `context`, `context.preview()` and `context.columns` before anything else.
2. NARROW WITH CODE: `sql()` and `context.search()` find WHERE things are, exactly and cheaply.
3. UNDERSTAND WITH THE SUB-LM: `llm_query` / `llm_query_batched` read meaning in snippets that \
fit its window; split bigger pieces with `context.chunks(n)`.
4. COMPUTE, DON'T RETYPE: keep values in variables and aggregate in code or SQL.
5. SUBMIT ONLY AFTER SEEING THE OUTPUT that supports the answer."""


def action_instructions(
    output_fields: str, output_names: str, tools: tuple[str, ...], max_llm_calls: int,
    max_iters: int,
) -> str:
    """The ``generate_action`` instructions for a step that may use ``tools``."""
    docs = "\n".join(TOOL_DOCS[name] for name in TOOL_DOCS if name in tools)
    return ACTION_INSTRUCTIONS.format(
        output_fields=output_fields, output_names=output_names, tool_docs=docs,
        max_llm_calls=max_llm_calls, max_iters=max_iters,
    )


def describe_output(name: str, t: Type) -> str:
    """``- `name`: list[Incident] where Incident = {at: str, ...}`` for the instructions."""
    records = list(dict.fromkeys(_records(t)))
    where = "; ".join(
        f"{r.name} = {{{', '.join(f'{f.name}: {f.type}' for f in r.fields)}}}" for r in records)
    return f"- `{name}`: {t}" + (f" where {where} (a dict)" if where else "")


def _records(t: Type):
    match t:
        case ListOf(item) | Optional(item):
            yield from _records(item)
        case Record(_, fields):
            yield t
            for f in fields:
                yield from _records(f.type)
        case Enum():
            return


def context_variable(
    info: dict[str, Any], preview: str, tables: dict[str, list[str]], facts: dict[str, Any]
) -> REPLVariable:
    """What ``variables_info`` says about ``context``: its table, size, columns, neighbours."""
    listing = "; ".join(f"{name}({', '.join(cols)})" for name, cols in sorted(tables.items()))
    lines = [
        f"lazy handle over table `{info['table']}`: {info['n_rows']:,} rows, "
        f"{info['n_chars']:,} characters; columns: {', '.join(info['columns'])}",
        *(f"{key}: {value}" for key, value in facts.items()),
    ]
    if listing:
        lines.append(f"tables sql() can read: {listing}")
    return REPLVariable(
        name="context", type_name="Context", desc=". ".join(lines) + ".",
        total_length=info["n_chars"], preview=preview,
    )
