"""Step fingerprints: what a step's stored result depends on, hashed part by part.

Executor stage (content-keyed reuse, see :mod:`rlm_dsl.runtime.steps.reuse`). A step's
:class:`Fingerprint` hashes, each as its own named part so a change can be explained: its
``definition`` (kind, strategy, args, options, prompt, output name and type, LM binding names,
and for a ``use`` map the sub-recipe's plan), each ``param:<name>`` its templates read, its
``model`` (the resolved model id, settings and context window of every LM it calls; for a
``tokens`` chunk step the token counter), its ``module`` (the instructions and demos of the DSPy
module that answers it, so optimized prompts from ``<spec>.opt.json`` count), its ``input`` (the
content identity of its files: path, size and a SHA-256 of the whole file up to 1 MiB, else
size, mtime and a hash of its first, middle and last 64 KiB; a sub-recipe input hashes its parent
row), and ``upstream:<step id>`` for each parent's fingerprint. Spans are left out: moving a
statement to another line changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta

from rlm_dsl.compiler.plan import Plan, Step
from rlm_dsl.compiler.templates import environment
from rlm_dsl.runtime.ingest.inputs import resolve_files
from rlm_dsl.runtime.steps.context import RunContext
from rlm_dsl.runtime.steps.run import step_module

LM_STEP_KINDS = ("filter", "map", "reduce", "rlm")
FULL_HASH_BYTES = 1 << 20
SAMPLE_BYTES = 64 << 10


@dataclass(frozen=True)
class Fingerprint:
    """A step's digest and the named parts it was made from (part name → short hash)."""

    digest: str
    parts: dict[str, str]


def fingerprint(ctx: RunContext, step: Step, modules: dict[str, Any],
                upstream: dict[str, Fingerprint]) -> Fingerprint:
    """``step``'s fingerprint in ``ctx``; ``upstream`` holds its parents' (by step id)."""
    parts = {"definition": _hash(_definition(ctx.plan, step))}
    parts.update({f"param:{name}": _hash(ctx.params[name]) for name in _params_read(ctx, step)})
    model = _model(ctx, step)
    if model is not None:
        parts["model"] = _hash(model)
    if model is not None and step.kind != "chunk":
        parts["module"] = _hash(_module_state(ctx, step, modules))
    if step.kind == "input":
        parts["input"] = _hash(_input_identity(ctx, step))
    for parent in ctx.plan.parents(step.id):
        if parent.id in upstream:
            parts[f"upstream:{parent.id}"] = upstream[parent.id].digest
    return Fingerprint(_hash(parts), parts)


def _module_state(ctx: RunContext, step: Step, modules: dict[str, Any]) -> Any:
    """The state (instructions, demos) of the DSPy module that will answer ``step``."""
    module = modules.get(ctx.modules_prefix + step.id) or step_module(step, ctx.plan.description)
    return module.dump_state()


def _definition(plan: Plan, step: Step) -> dict[str, Any]:
    found = {
        "kind": step.kind, "strategy": step.strategy, "name": step.name, "table": step.table,
        "source": step.source, "args": list(step.args), "options": step.options,
        "prompt": step.prompt, "lm": step.lm, "sub_lm": step.sub_lm, "recipe": step.recipe,
        "output": None if step.output is None else [step.output.name, str(step.output.type)],
    }
    if step.recipe:
        found["sub_recipe"] = _plan_definition(plan.uses[step.recipe])
    return found


def _plan_definition(plan: Plan) -> dict[str, Any]:
    """A sub-recipe's definition: its steps, params, LM bindings and outputs, without spans."""
    return {
        "steps": [_definition(plan, step) for step in plan.steps()],
        "params": [[p.name, str(p.type), p.default] for p in plan.params],
        "lms": [[b.name, b.model, b.env, b.options] for b in plan.lms],
        "outputs": list(plan.outputs),
    }


def _params_read(ctx: RunContext, step: Step) -> list[str]:
    """The params ``step``'s templates (prompt, SQL and other text args) read, sorted."""
    texts = [step.prompt or "", *(a for a in step.args if isinstance(a, str))]
    names: set[str] = set()
    for text in texts:
        try:
            names |= jinja2.meta.find_undeclared_variables(environment().parse(text))
        except jinja2.TemplateSyntaxError:
            names |= set(ctx.params)  # not a template the compiler checked: assume all
    return sorted(names & set(ctx.params))


def _model(ctx: RunContext, step: Step) -> Any:
    """What of the run's LMs decides ``step``'s answers (None: no LM involved)."""
    if step.kind == "chunk" and step.strategy == "tokens":
        bound = ctx.lms.get(None) or next(iter(ctx.lms.values()), None)
        return None if bound is None else ["counter", bound.resolved.model_id]
    if step.kind not in LM_STEP_KINDS or not ctx.lms or (
            step.kind == "filter" and step.strategy != "lm") or (
            step.kind == "reduce" and step.strategy in ("sql", "vote")):
        return None
    names = [step.lm] + ([step.sub_lm] if step.kind == "rlm" else [])
    return [_lm_identity(ctx.lms.get(name) or ctx.lms.get(None)) for name in names]


def _lm_identity(bound: Any) -> Any:
    if bound is None:
        return None
    resolved = bound.resolved
    return [resolved.model_id, dict(resolved.lm_kwargs), resolved.context_window]


def _input_identity(ctx: RunContext, step: Step) -> Any:
    """The content identity of an input step's files (a sub-recipe input: its parent row)."""
    if ctx.row is not None:
        return [ctx.row.get("id"), ctx.row.get("source"), ctx.row.get("text")]
    if step.strategy == "stdin":
        return uuid.uuid4().hex  # unknowable before reading: always read again
    paths = ctx.inputs.get(step.name) or step.options.get("path")
    if not paths:
        return None  # the load reports the missing path
    patterns = [os.path.expanduser(str(p)) for p in ([paths] if isinstance(paths, str) else paths)]
    files = resolve_files(ctx.store, patterns, directories=True, text=False)
    return [file_identity(path) for path in files]


def file_identity(path: str) -> list[Any]:
    """``[absolute path, size, hash]`` (small files hashed whole; large ones sampled, with
    their mtime, so an edit between the samples still shows)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= FULL_HASH_BYTES:
            digest.update(handle.read())
            return [os.path.abspath(path), size, digest.hexdigest()]
        for offset in (0, size // 2, size - SAMPLE_BYTES):
            handle.seek(offset)
            digest.update(handle.read(SAMPLE_BYTES))
    return [os.path.abspath(path), size, os.stat(path).st_mtime_ns, digest.hexdigest()]


def _hash(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
