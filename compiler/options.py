"""The vocabulary of strategies, positional arguments and options (docs/architecture.md's table).

Each entry is pure data: which strategies a statement kind accepts, the positional arguments each
takes, and the options allowed with their value rules (:class:`Rule`). The checks validate a spec
against these tables and lowering fills in the documented defaults, so adding an option is one line
here (plus its runtime handler).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rlm_dsl.compiler.types import Enum, ListOf, Optional, Prim, Record, Type

DURATION = re.compile(r"^[1-9][0-9]*(ms|s|m|h|d)$")
RLM_TOOLS = ("sql", "llm_query", "llm_query_batched", "rlm_query")


@dataclass(frozen=True, slots=True)
class Rule:
    """What a value must be: ``kind`` is int, float, bool, str, duration, tools, dict, names
    (a non-empty list of field names), paths (a string or a non-empty list of them) or any."""

    kind: str
    minimum: float | None = None
    maximum: float | None = None

    def problem(self, value: Any) -> str | None:
        """None when ``value`` satisfies the rule, else what is wrong (``must be ...``)."""
        wrong = _KIND_CHECKS[self.kind](value)
        if wrong:
            return wrong
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {_num(self.minimum)}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {_num(self.maximum)}"
        return None


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


_KIND_CHECKS = {
    "int": lambda v: None if _is_int(v) else "must be an integer",
    "float": lambda v: None if _is_int(v) or isinstance(v, float) else "must be a number",
    "bool": lambda v: None if isinstance(v, bool) else "must be true or false",
    "str": lambda v: None if isinstance(v, str) else "must be a string",
    "duration": lambda v: None if isinstance(v, str) and DURATION.match(v)
    else 'must be a duration such as "30s", "5m" or "1h"',
    "tools": lambda v: None if isinstance(v, list) and all(t in RLM_TOOLS for t in v)
    else f"must be a list of {', '.join(repr(t) for t in RLM_TOOLS)}",
    "dict": lambda v: None if isinstance(v, dict) else "must be a {name: value} mapping",
    "names": lambda v: None if isinstance(v, list) and v and all(isinstance(n, str) for n in v)
    else "must be a list of field names, e.g. [value]",
    "paths": lambda v: None if isinstance(v, str) or (
        isinstance(v, list) and v and all(isinstance(p, str) for p in v))
    else 'must be a string or a list of strings, e.g. ["a.log", "logs/*.log"]',
    "any": lambda v: None,
}

COUNT = Rule("int", 1)
# a step's own budget, next to the run's (runtime/lm/budget.py)
BUDGET = {"max_calls": COUNT, "max_total_tokens": COUNT, "max_usd": Rule("float", 0),
          "max_calls_per_depth": COUNT}
LM_STEP = {"retries": Rule("int", 0, 10), "temperature": Rule("float", 0, 2), **BUDGET}
# the value of a reduce over no item (no LM call); its type is checked in trust_checks.py
EMPTY = {"empty": Rule("any")}

# (kind, strategy) -> positional args as (name, rule)
ARGS: dict[tuple[str, str], tuple[tuple[str, Rule], ...]] = {
    ("chunk", "lines"): (("n", COUNT),),
    ("chunk", "chars"): (("n", COUNT),),
    ("chunk", "tokens"): (("n", COUNT),),
    ("chunk", "regex"): (("pattern", Rule("str")),),
    ("chunk", "delimiter"): (("text", Rule("str")),),
    ("chunk", "file"): (),
    ("chunk", "record"): (),
    ("chunk", "records"): (("n", COUNT),),
    ("chunk", "column"): (("column", Rule("str")),),
    ("chunk", "window"): (("duration", Rule("duration")),),
    ("chunk", "sql"): (("query", Rule("str")),),
    ("reduce", "concat"): (),
    ("reduce", "tree"): (),
    ("reduce", "fold"): (),
    ("reduce", "sql"): (("query", Rule("str")),),
    ("reduce", "vote"): (),
}

OVERLAP = {"overlap": Rule("int", 0)}

# (kind, strategy) -> options (for chunk/reduce they are the strategy's keyword args)
OPTIONS: dict[tuple[str, str], dict[str, Rule]] = {
    ("chunk", "lines"): OVERLAP,
    ("chunk", "chars"): OVERLAP,
    ("chunk", "tokens"): OVERLAP,
    ("chunk", "regex"): {"max_lines": COUNT},
    ("chunk", "records"): OVERLAP,
    ("chunk", "window"): {"column": Rule("str")},
    ("filter", "lm"): LM_STEP,
    ("map", "predict"): {**LM_STEP, "reason": Rule("bool"), "max_tokens": COUNT,
                         "max_depth": Rule("int", 0, 32), "grounded": Rule("names")},
    ("map", "recipe"): {"params": Rule("dict")},
    ("reduce", "concat"): {**LM_STEP, **EMPTY},
    ("reduce", "tree"): {**LM_STEP, **EMPTY, "fanin": Rule("int", 2)},
    ("reduce", "fold"): {**LM_STEP, **EMPTY, "init": Rule("any")},
    ("reduce", "vote"): EMPTY,
    ("rlm", "rlm"): {
        "max_iterations": COUNT, "max_llm_calls": COUNT, "depth": Rule("int", 1, 8),
        "tools": Rule("tools"), "timeout": Rule("float", 1), "max_tokens": COUNT, **BUDGET,
    },
}

PATHS = Rule("paths")  # a file, directory or glob, or a list of them
INPUT_OPTIONS: dict[str, dict[str, Rule]] = {
    "text": {"path": PATHS},
    "lines": {"path": PATHS},
    "log": {"path": PATHS, "format": Rule("str"), "dedup": Rule("bool")},
    "jsonl": {"path": PATHS},
    "csv": {"path": PATHS, "delimiter": Rule("str"), "header": Rule("bool")},
    "parquet": {"path": PATHS},
    "files": {"path": PATHS},
    "stdin": {},
}

LM_OPTIONS: dict[str, Rule] = {
    "temperature": Rule("float", 0, 2), "max_tokens": COUNT, "api_base": Rule("str"),
    "api_key_env": Rule("str"), "n_ctx": Rule("int", 256), "rpm": COUNT, "tpm": COUNT,
    "concurrency": COUNT, "max_concurrency": COUNT, "timeout": Rule("float", 1),
    "top_p": Rule("float", 0, 1), "top_k": COUNT, "presence_penalty": Rule("float", -2, 2),
    "frequency_penalty": Rule("float", -2, 2), "seed": Rule("int"),
    "context_window": Rule("int", 256), "n_threads": COUNT, "pull": Rule("bool"),
    "engine": Rule("str"),
}

# Defaults lowering writes into the plan so that dumps show the effective values.
DEFAULTS: dict[tuple[str, str], dict[str, Any]] = {
    ("chunk", "window"): {"column": "ts"},
    ("reduce", "tree"): {"fanin": 8},
    ("rlm", "rlm"): {"max_iterations": 20, "max_llm_calls": 50, "depth": 1},
}

def strategies(kind: str) -> list[str]:
    """Every strategy name ``kind`` (chunk, reduce) accepts."""
    return sorted(s for k, s in ARGS if k == kind)


def literal_problem(value: object, t: Type) -> str | None:
    """None when the literal ``value`` is a valid ``t``; else ``must be ...``."""
    match t:
        case Optional(item):
            return None if value is None else literal_problem(value, item)
        case Prim("float"):
            return Rule("float").problem(value)
        case Prim(name):
            return Rule(name).problem(value)
        case Enum(values):
            return None if value in values else f"must be one of {', '.join(values)}"
        case ListOf(item):
            if not isinstance(value, list):
                return f"must be a list ({t})"
            return next((p for v in value if (p := literal_problem(v, item))), None)
        case Record():
            return None if isinstance(value, dict) else f"must be a {{...}} mapping ({t})"
    raise TypeError(f"unhandled type {t!r}")
