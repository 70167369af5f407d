"""What every step handler of one run shares: store, LMs, params, templates, failures, progress.

Executor stage. :class:`RunContext` is built once per run by the executor and handed to the step
handlers in this package. It owns the gated ``dspy.LM`` per LM binding (see
:mod:`rlm_dsl.runtime.lm.gate`), renders Jinja2 prompts (undefined variables are errors — the
compiler already checked them), records dead-letter rows in ``failures`` and reports progress.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dspy
import jinja2
from jinja2 import nodes

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.compiler.templates import environment
from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.lm.gate import RunLedger
from rlm_dsl.runtime.lm.resolve import ResolvedLM
from rlm_dsl.runtime.store import queries
from rlm_dsl.runtime.store.store import Store
from rlm_dsl.runtime.store.writer import Writer

Progress = Callable[[str, int, int | None], None]  # (step id, advance, total or None)


@dataclass
class BoundLM:
    """One LM binding of the run: its resolution and the gated ``dspy.LM`` built over it."""

    resolved: ResolvedLM
    lm: dspy.LM
    engine: Any = None  # the gate (GatedEngine) under ``lm``: closed when the run ends

    def close(self) -> None:
        """Release the back end (HTTP clients, a Ray worker pool); the run is over."""
        if self.engine is not None:
            self.engine.close()

    @property
    def window(self) -> int:
        return self.resolved.context_window

    @property
    def concurrency(self) -> int | None:
        """How many calls the gate lets through at once (None: no gate)."""
        return self.engine.gate.concurrency if self.engine is not None else None

    def count(self, text: str) -> int:
        return self.resolved.count_tokens(text)

    def fits(self, text: str, room: int) -> bool:
        """Whether ``text`` is at most ``room`` tokens; a token is never less than one byte, so
        short texts are decided without tokenizing."""
        return (len(text) <= room and len(text.encode()) <= room) or self.count(text) <= room


@dataclass
class RunContext:
    plan: Plan
    store: Store
    writer: Writer
    ledger: RunLedger
    lms: dict[str | None, BoundLM]  # binding name (None: the run's default LM) → bound LM
    params: dict[str, Any]
    adapter: Any
    concurrency: int = 8
    retry_failed: bool = False
    incremental: bool = False  # see rlm_dsl.runtime.steps.incremental
    progress: Progress | None = None
    inputs: dict[str, Any] = field(default_factory=dict)  # input name → paths (command line)
    encoding: str | None = None  # of text, lines and log inputs (--encoding; None: UTF-8)
    prefix: str = ""  # table prefix of a `use`d sub-recipe run
    modules_prefix: str = ""  # key prefix of a sub-recipe's step modules (``<alias>/``)
    row: dict[str, Any] | None = None  # the parent row a sub-recipe run reads as its input
    warnings: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)  # interrupted
    _env: jinja2.Environment = field(init=False, repr=False)
    _templates: dict[str, _Compiled] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self._env = environment()

    def lm_for(self, step: Step) -> BoundLM:
        return self.lms.get(step.lm) or self.lms[None]

    def key(self, step: Step) -> str:
        """How ``step`` of this (sub-)recipe run is named in the system tables (``step_status``,
        ``lm_calls``, ``failures``): its id behind the run's table prefix."""
        return f"{self.prefix}{step.id}"

    def table(self, name: str) -> str:
        """The store table of ``name`` in this (sub-)recipe run."""
        return f"{self.prefix}{name}"

    def render(self, source: str, **variables: Any) -> str:
        compiled = self._templates.get(source)  # compiled once per run, then only looked up
        if compiled is None:
            with self._lock:
                compiled = self._templates.get(source) or self._compile(source)
                self._templates[source] = compiled
        template, base, pieces = compiled
        try:
            texts = _fill(pieces, base, variables) if pieces is not None else None
            if texts is not None:
                return self._env.concat(texts).strip()
            # Template.render without its per-call copy of the globals (a third of its cost)
            context = template.new_context({**base, **variables}, shared=True)
            return self._env.concat(template.root_render_func(context)).strip()
        except Exception as exc:  # a Jinja2 runtime error is a spec problem, not an LM one
            raise SpecError(f"template error: {type(exc).__name__}: {exc}") from exc

    def _compile(self, source: str) -> _Compiled:
        template = self._env.from_string(source)
        return template, {**template.globals, **self.params}, _lookups(self._env.parse(source))

    def fail(self, step: Step, chunk_id: int | None, error: str, raw: str | None,
             attempts: int) -> None:
        """Record a row that failed after its retries in the ``failures`` dead-letter table.

        A row that failed before (a ``--retry-failed`` run that failed again) supersedes its
        open rows: they are marked resolved and the new row counts every attempt so far, so a
        row is listed once however often it was retried."""
        key = self.key(step)
        before = queries.supersede_failure(self.store, key, chunk_id)
        self.writer.add("failures", {
            "run_id": self.ledger.run_id, "step": key, "chunk_id": chunk_id,
            "error": error, "raw_response": raw, "attempts": attempts + before, "resolved": False,
            "at": datetime.now(UTC).isoformat(),
        })

    def tick(self, step: Step, advance: int = 1, total: int | None = None) -> None:
        if self.progress is not None:
            self.progress(step.id, advance, total)


# A template of literal text and ``{{ name }}`` / ``{{ name.key }}`` lookups only (most map
# prompts), as its pieces: text, or (name, key or None). Rendered by :func:`_fill` without a Jinja
# context (half the render's cost); anything else is rendered by Jinja.
Pieces = list[str | tuple[str, str | None]]
_Compiled = tuple[jinja2.Template, dict[str, Any], Pieces | None]
_MISSING = object()


def _lookups(tree: nodes.Template) -> Pieces | None:
    """The template's pieces, or None when it has more than text and plain lookups (a statement,
    a filter, a constant, a ``name.key`` where ``key`` is a dict attribute such as ``items``)."""
    pieces: Pieces = []
    for node in tree.body:
        if not isinstance(node, nodes.Output):
            return None
        for child in node.nodes:
            if isinstance(child, nodes.TemplateData):
                pieces.append(child.data)
            elif isinstance(child, nodes.Name):
                pieces.append((child.name, None))
            elif (isinstance(child, nodes.Getattr) and isinstance(child.node, nodes.Name)
                  and not hasattr(dict, child.attr)):
                pieces.append((child.node.name, child.attr))
            else:
                return None
    return pieces


def _fill(pieces: Pieces, base: dict[str, Any], variables: dict[str, Any]) -> list[str] | None:
    """The rendered pieces, as Jinja's sandbox renders them (``str`` of each value; ``x.key`` of
    a dict is its item), or None for Jinja to render (and report) when a lookup is not a name
    bound to a value or a key of a dict."""
    texts = []
    for piece in pieces:
        if type(piece) is str:
            texts.append(piece)
            continue
        name, key = piece
        value = variables[name] if name in variables else base.get(name, _MISSING)
        if key is not None:
            if type(value) is not dict or key not in value:
                return None
            value = value[key]
        elif value is _MISSING:
            return None
        texts.append(str(value))
    return texts


def where(step: Step) -> str:
    """``step 'map-x' (file.rlm:9:1)`` — how messages name a step."""
    return f"step '{step.id}' ({step.span})"


def to_json(value: Any) -> str:
    return json.dumps(value, default=str)
