"""The Plan: the contract between the compiler and the runtime.

A :class:`Plan` wraps an ``nx.DiGraph`` whose nodes are stable, readable step ids (``input-logs``,
``chunk-windows``, ``map-incidents``) carrying a frozen :class:`Step` payload, plus the recipe-level
declarations the runtime needs (params, LM bindings, used sub-recipes, outputs). Every step
writes exactly one table named ``step.table`` and reads ``step.source`` (``None`` for inputs);
edges run from producer to consumer. Iteration order is ``lexicographical_topological_sort``, so
dumps, goldens and execution order are deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import networkx as nx

from rlm_dsl.compiler import plan_format
from rlm_dsl.compiler.source import Span
from rlm_dsl.compiler.types import Field, Type

StepKind = Literal["input", "chunk", "filter", "map", "reduce", "rlm"]


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: Type
    default: Any  # a literal of ``type``, or None when the param is required
    span: Span
    required: bool = False


@dataclass(frozen=True, slots=True)
class LmBinding:
    """``lm fast = env("RLM_FAST_LM", "local") with temperature=0``.

    ``model`` is the literal model id; with ``env`` set, the runtime reads that environment
    variable and falls back to ``model``. ``options`` are passed to the LM (temperature, max_tokens,
    api_base, api_key_env, n_ctx, rpm, tpm, concurrency ...).
    """

    name: str
    model: str | None
    env: str | None
    options: dict[str, Any]
    span: Span


@dataclass(frozen=True, slots=True)
class Step:
    """One node of the plan. Treat ``args`` and ``options`` as read-only.

    kind      strategy examples                       args / options / prompt
    input     text lines log jsonl csv parquet files  options: format=, delimiter=, default path=
              stdin
    chunk     lines chars tokens regex delimiter      args: sizes/patterns; options: overlap=, ...
              file record column window sql records
    filter    sql regex lm                            args[0]: predicate/pattern; prompt for lm
    map       predict (reason -> chain-of-thought)    prompt; output; options: reason, retries,
                                                      temperature, max_tokens; recipe= for `use`
    reduce    concat tree fold sql vote               prompt (not sql/vote); args[0] sql text;
                                                      options: fanin=, init=
    rlm       rlm                                     prompt; output; lm (root), sub_lm; options:
                                                      max_iterations, max_llm_calls, depth, tools
    """

    id: str
    kind: StepKind
    name: str  # the value name the user bound (e.g. "windows")
    table: str  # the unique store table this step writes
    span: Span
    source: str | None = None  # the table this step reads
    strategy: str | None = None
    args: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    prompt: str | None = None  # Jinja2 template source
    output: Field | None = None  # typed output of map / reduce / rlm (output.name == name)
    lm: str | None = None  # LM binding name; None means the run's default LM
    sub_lm: str | None = None  # rlm steps: LM for llm_query / rlm_query
    recipe: str | None = None  # map steps that run a `use`d sub-recipe: its alias


@dataclass(slots=True)
class Plan:
    """A compiled recipe (built by :mod:`rlm_dsl.compiler.lower`); read it with :meth:`steps`."""

    recipe: str
    description: str
    path: str
    params: tuple[Param, ...] = ()
    lms: tuple[LmBinding, ...] = ()
    outputs: tuple[str, ...] = ()  # value names, in declaration order
    uses: dict[str, Plan] = field(default_factory=dict)  # alias -> compiled sub-recipe
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

    def step(self, step_id: str) -> Step:
        return self.graph.nodes[step_id]["step"]

    def steps(self) -> Iterator[Step]:
        """Steps in deterministic topological order."""
        for step_id in nx.lexicographical_topological_sort(self.graph):
            yield self.step(step_id)

    def producer(self, value: str) -> Step:
        """The step whose value name (or table) is ``value``; the last binding wins."""
        found = [s for s in self.steps() if value in (s.name, s.table)]
        if not found:
            raise KeyError(value)
        return found[-1]

    def parents(self, step_id: str) -> list[Step]:
        return [self.step(p) for p in sorted(self.graph.predecessors(step_id))]

    def dumps(self) -> str:
        """The readable text dump used by ``rlm plan`` and the golden tests."""
        return plan_format.dumps(self)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``graph`` is networkx node-link data)."""
        return plan_format.to_json(self)

    def to_dot(self) -> str:
        """Graphviz DOT source of the step graph."""
        return plan_format.to_dot(self)

    def to_mermaid(self) -> str:
        """Mermaid flowchart source of the step graph."""
        return plan_format.to_mermaid(self)
