"""Cost forecast helpers: typed placeholder values standing in for LM answers not yet made.

Estimation stage (see :mod:`rlm_dsl.runtime.estimate.report`). A step's output type decides the
size of
its answers: :func:`placeholder` builds a value of that type (a text of ``STR_WORDS`` words, a
list of ``LIST_ITEMS`` elements, a record with every field) that later prompts render exactly as
they would render a real answer; :func:`answer_tokens` counts the adapter-framed answer
(``[[ ## field ## ]]`` sections) with the LM's counter; :func:`write_values` stores placeholders
as the step's typed result table so SQL steps downstream can run. Answer sizes are a
:class:`Profile` per model: typical sizes for real LMs, and for the deterministic ``test`` LM
the sizes its documented conventions produce (a field it has no directive for is answered with
one line of the prompt, a list with one element), so its runs check the estimator's counting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rlm_dsl.compiler.types import Enum, ListOf, Optional, Prim, Record, Type
from rlm_dsl.runtime.lm.signatures import duckdb_type
from rlm_dsl.runtime.store.store import Store, quote_ident

SCALAR_COLUMNS = ("VARCHAR", "BIGINT", "DOUBLE", "BOOLEAN")


@dataclass(frozen=True)
class Trajectory:
    """The typical course of an ``rlm`` step for a model: REPL turns (None: every turn
    ``max_iterations`` allows, then the extract call), ``llm_query`` sub-calls per turn, the
    tokens of one action answer, and where these figures come from (said in the estimate)."""

    turns: int | None
    sub_calls_per_turn: float
    action_tokens: int
    basis: str


@dataclass(frozen=True)
class Profile:
    """Typical answer sizes: words of a string answer per step kind, elements of a list; and
    the typical trajectory of an ``rlm`` step."""

    str_words: dict[str, int] = field(
        default_factory=lambda: {"map": 24, "filter": 1, "reduce": 120, "rlm": 60, "field": 6})
    list_items: int = 3
    reasoning_words: int = 30
    rlm: Trajectory = Trajectory(
        6, 1.0, 150, "assumed for an API model: about 6 REPL turns with one llm_query each "
        "(not measured here)")


TEST_PROFILE = Profile(
    {"map": 10, "filter": 1, "reduce": 10, "rlm": 10, "field": 4}, 1, 4,
    rlm=Trajectory(1, 1.0, 60, "the test LM's REPL action: one turn that hands the task and "
                   "the input to llm_query once, then SUBMITs"))
LOCAL_PROFILE = Profile(rlm=Trajectory(
    None, 0.5, 150, "measured for the local 0.5B model: it uses every turn, then the extract "
    "call, with a sub-call every other turn (5-7 calls at max_iterations=3 in "
    "docs/benchmarks.md)"))
DEFAULT_PROFILE = Profile()


def profile_for(model_id: str | None) -> Profile:
    """The answer-size profile of ``model_id`` (``test`` / ``test:…``: the test LM's;
    ``local``: the embedded model's)."""
    family = (model_id or "").split(":", 1)[0]
    return {"test": TEST_PROFILE, "local": LOCAL_PROFILE}.get(family, DEFAULT_PROFILE)


def placeholder(t: Type, kind: str = "map", profile: Profile = DEFAULT_PROFILE,
                seed: int | None = None) -> Any:
    """A value of type ``t`` the size a typical answer of a ``kind`` step has; a ``seed`` (of
    the prompt it answers) varies its numbers and last word, so different prompts get different
    answers of the same size."""
    match t:
        case Prim("str"):
            words = ["word"] * profile.str_words.get(kind, 24)
            if seed is not None:
                words[-1] = f"w{seed % 100}"
            return " ".join(words)
        case Prim("int"):
            return 10 if seed is None else 10 + seed % 90
        case Prim("float"):
            return 1.5 if seed is None else 1.5 + seed % 9
        case Prim("bool"):
            return True
        case Enum(values):
            return values[0]
        case ListOf(item):
            return [placeholder(item, _smaller(kind), profile, seed)
                    for _ in range(profile.list_items)]
        case Optional(item):
            return placeholder(item, kind, profile, seed)
        case Record(_, fields):
            return {f.name: placeholder(f.type, _smaller(kind), profile, seed) for f in fields}
    raise TypeError(f"no placeholder for type {t!r}")


def _smaller(kind: str) -> str:
    """Strings nested in lists and records are short phrases."""
    return "rlm" if kind == "reduce" else "field"


def text_of(value: Any) -> str:
    """How the adapter writes ``value`` in an answer: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def answer_tokens(count: Any, field_name: str, t: Type, kind: str, reason: bool,
                  profile: Profile = DEFAULT_PROFILE) -> int:
    """Tokens of one adapter-formatted answer of type ``t`` in field ``field_name``."""
    parts = []
    if reason:
        parts.append("[[ ## reasoning ## ]]\n" + " ".join(["word"] * profile.reasoning_words))
    parts.append(f"[[ ## {field_name} ## ]]\n{text_of(placeholder(t, kind, profile))}")
    parts.append("[[ ## completed ## ]]")
    return int(count("\n\n".join(parts)))


def write_values(store: Store, table: str, column: str, t: Type,
                 values: list[tuple[int, Any]]) -> None:
    """``table(id, column)`` holding ``values`` (id, value) as the step's typed result."""
    kind = duckdb_type(t)
    with store.write() as con:
        con.execute(f"CREATE OR REPLACE TABLE {quote_ident(table)} "
                    f"(id BIGINT, {quote_ident(column)} {kind})")
        # Placeholders repeat: one INSERT per distinct value (row-wise inserts cost ~1 ms each).
        groups: dict[str, list[int]] = {}
        for i, value in values:
            groups.setdefault(json.dumps(value), []).append(i)
        cast = "?" if kind in SCALAR_COLUMNS else f"CAST(CAST(? AS JSON) AS {kind})"
        for text, ids in groups.items():
            value = json.loads(text) if kind in SCALAR_COLUMNS else text
            con.execute(f"INSERT INTO {quote_ident(table)} SELECT unnest(?::BIGINT[]), {cast}",
                        [ids, value])
