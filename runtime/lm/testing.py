"""The deterministic test LM: model id ``test``, answers computed from the prompt it receives.

Runtime test support (registered as an LM back end with ``register_backend("test", …)`` when this
module is imported; the executor imports it lazily for ``test`` model ids). It is a real DSPy
engine: requests arrive formatted by the DSPy adapter and answers are parsed by it, so a wrong
chunk, a dropped row or a bad signature makes tests fail. Options come from the model id
(``test:window=4096,fail=0.2,garbage=0.1,seed=7,delay=0.01``) or the LM binding's options.

Conventions — the engine reads the ``prompt`` input field; the first line holding a directive
(case-insensitive) decides the answer, computed over every *other* line (the data lines):

``COUNT "kw"``     int: the number of data lines containing ``kw``.
``FIND "kw"``      the data lines containing ``kw``: a list, or for a ``str`` output the first
                   such line (``NONE`` when there is none).
``LABELS``         list: the ``label=<word>`` of every data line carrying one, in order.
``NUMBERS``        list[int]: every integer in the data lines, in order (fold tests: state + items).
``MERGE``          list: the JSON lists on the data lines, flattened one level, duplicates dropped.
``SUM``            int: the sum of every integer in the data lines.
``YES IF "kw"``    bool: whether any data line contains ``kw`` (LM filters).
anything else      the first data line (``str``), 0, False or [] by output type; an enum
                   output is the first label that is a word of that line (else the first
                   label); a record output is built from the first line (see :func:`record`).

Structured outputs always parse: an enum value is one of its labels (the first one named by the
answer, else the first); a record (and each record of a list of records) is built field by field
from the first line by its JSON schema (see :func:`shaped`); a list of records holds one record
per item of the list answer (``FIND`` hits, ``MERGE`` d records kept as they are; else one from
the first line). Lists of labels keep the list answer's valid labels.

The test LM's tokenizer is one token per four characters (``ceil(chars / 4)``), so windows and
token counts are exact and cheap. An output field named ``reasoning`` (ChainOfThought) gets a
fixed sentence. Options:
``window`` (tokens): a request whose system + user text exceeds it raises
``dspy.lm15.ContextLengthError``; ``fail``: that fraction of calls raises a rate-limit or timeout
error (``retry_after=0``); ``garbage``: that fraction returns unparseable text; ``seed`` picks which
calls, deterministically per (seed, prompt, retry attempt), so retries can succeed and a re-run
makes the same choices; ``delay`` (seconds) sleeps before answering.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from dspy.lm15 import (
    ContextLengthError,
    Message,
    RateLimitError,
    Request,
    Response,
    TextPart,
    TimeoutError,
    Usage,
    response_to_events,
)

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm.gate import current_scope, request_messages
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend
from rlm_dsl.runtime.lm.test_repl import repl_action
from rlm_dsl.runtime.lm.tokens import estimate_tokens

OPTIONS = {"window": int, "fail": float, "garbage": float, "seed": int, "delay": float}
GARBAGE = "Sorry, I am not able to answer in that format."
_FIELD = re.compile(r"\[\[ ## (\w+) ## \]\]")
_OUTPUTS = re.compile(r"^\d+\. `(\w+)` \((.+?)\):", re.M)
_OPTIONAL = re.compile(r"Union\[(.+), NoneType\]|Optional\[(.+)\]")
_DIRECTIVE = re.compile(r'(COUNT|FIND|YES IF)\s+"([^"]*)"|\b(LABELS|NUMBERS|MERGE|SUM)\b')


class TestEngine:
    """A DSPy engine answering by the conventions in the module docstring."""

    __test__ = False  # not a pytest class

    def __init__(
        self,
        count_tokens: Any,
        window: int | None = None,
        fail: float = 0.0,
        garbage: float = 0.0,
        seed: int = 0,
        delay: float = 0.0,
    ) -> None:
        self.count_tokens = count_tokens
        self.window, self.fail, self.garbage = window, fail, garbage
        self.seed, self.delay = seed, delay

    def complete(self, request: Request) -> Response:
        messages = request_messages(request)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        user = messages[-1]["content"]
        used = sum(self.count_tokens(m["content"]) for m in messages)
        if self.window is not None and used > self.window:
            raise ContextLengthError(
                f"test LM: {used} tokens exceed the {self.window}-token window"
            )
        if self.delay:
            time.sleep(self.delay)
        text = self._fault(user) or answer(system, user)
        usage = Usage(
            input_tokens=used,
            output_tokens=self.count_tokens(text),
            total_tokens=used + self.count_tokens(text),
        )
        return Response(
            id=None,
            model="test",
            message=Message.assistant([TextPart(text)]),
            finish_reason="stop",
            usage=usage,
        )

    def stream(self, request: Request) -> Any:
        return response_to_events(self.complete(request))

    def close(self) -> None:
        """Nothing to release."""

    def _fault(self, user: str) -> str | None:
        if not (self.fail or self.garbage):
            return None
        digest = hashlib.sha256(f"{self.seed}|{current_scope().attempt}|{user}".encode())
        u = int.from_bytes(digest.digest()[:8], "big") / 2**64
        if u < self.fail:
            if u < self.fail / 2:
                raise RateLimitError("test LM: injected rate limit", retry_after=0.0)
            raise TimeoutError("test LM: injected timeout", retry_after=0.0)
        return GARBAGE if u < self.fail + self.garbage else None


def answer(system: str, user: str) -> str:
    """The adapter-formatted answer to one request (``[[ ## field ## ]]`` sections); a raw
    prompt (an ``rlm`` step's ``llm_query``) gets the bare answer, a REPL action runnable code
    (:mod:`rlm_dsl.runtime.lm.test_repl`)."""
    if not system.strip():
        return compute(user, "str")
    action = repl_action(system)
    if action is not None:
        return action
    prompt = _section(user, "prompt")
    parts = []
    outputs = system.partition("Your output fields are:")[2].partition("All interactions")[0]
    for name, kind in _OUTPUTS.findall(outputs):
        schema = _schema(system, name)
        if name == "reasoning":
            value = "Computed by the test LM."
        elif _structured(schema):
            value = json.dumps(structured(schema, prompt))
        else:
            value = compute(prompt, kind)
        parts.append(f"[[ ## {name} ## ]]\n{value}")
    return "\n\n".join([*parts, "[[ ## completed ## ]]"])


def _schema(system: str, name: str) -> dict[str, Any]:
    """The JSON schema the adapter states for output field ``name`` ({} when none)."""
    found = re.search(rf"^\{{{name}\}}.*JSON schema: (.*)$", system, re.M)
    try:
        return json.loads(found.group(1)) if found else {}
    except ValueError:
        return {}


def _resolve(spec: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with a ``$ref`` followed and an optional (``anyOf`` with null) unwrapped."""
    spec = defs.get(spec.get("$ref", "").rpartition("/")[2], spec)
    options = [o for o in spec.get("anyOf", []) if o.get("type") != "null"]
    return _resolve(options[0], defs) if options else spec


def _structured(schema: dict[str, Any]) -> bool:
    """Whether an output needs a schema-shaped answer: a record, or a list of records/labels."""
    defs = schema.get("$defs", {})
    items = _resolve(schema.get("items", {}), defs) if schema.get("type") == "array" else {}
    return "properties" in schema or "properties" in items or "enum" in items


def structured(schema: dict[str, Any], prompt: str) -> Any:
    """The answer to ``prompt`` for a record or list-of-records/labels output ``schema``."""
    defs = schema.get("$defs", {})
    lines = prompt.splitlines()
    if schema.get("type") != "array":
        return record(schema, lines[0] if lines else "")
    items = _resolve(schema.get("items", {}), defs)
    found = json.loads(compute(prompt, "list[str]"))
    if "enum" in items:
        return [v for v in (str(x) for x in found) if v in items["enum"]]
    return [x if isinstance(x, dict) else shaped(items, defs, str(x)) for x in found]


def record(schema: dict[str, Any], line: str) -> dict[str, Any]:
    """A record from one line, field by field as :func:`shaped` builds values."""
    return shaped(schema, schema.get("$defs", {}), line)


def shaped(spec: dict[str, Any], defs: dict[str, Any], line: str) -> Any:
    """A value valid for JSON schema ``spec`` from one line: strings get the line, enums the
    first of their values that is a word of it (else the first value), numbers the count of its
    words, booleans whether it is non-empty, lists one such item, records each field."""
    spec = _resolve(spec, defs)
    kind = spec.get("type")
    if "enum" in spec:
        words = re.findall(r"\w+", line)
        return next((v for v in spec["enum"] if v in words), spec["enum"][0])
    if "properties" in spec:
        return {field: shaped(s, defs, line) for field, s in spec["properties"].items()}
    if kind == "array":
        return [shaped(spec.get("items", {}), defs, line)]
    if kind in ("integer", "number"):
        return len(line.split())
    if kind == "boolean":
        return bool(line.strip())
    return line


def compute(prompt: str, kind: str) -> str:
    """The answer to ``prompt`` for an output of DSPy type text ``kind``, formatted as text."""
    lines = prompt.splitlines()
    found = next(((i, m) for i, line in enumerate(lines) if (m := _DIRECTIVE.search(line))), None)
    if found is None:
        return _format(kind, lines[0] if lines else "")
    index, match = found
    data = lines[:index] + lines[index + 1 :]
    verb, word = (match.group(1) or match.group(3)).upper(), match.group(2)
    return _format(kind, _apply(verb, word, data, kind))


def _apply(verb: str, word: str | None, data: list[str], kind: str) -> Any:
    if verb == "COUNT":
        return sum(word in line for line in data)
    if verb == "FIND":
        hits = [line.strip() for line in data if word in line]
        return hits if kind.startswith("list") else (hits[0] if hits else "NONE")
    if verb == "YES IF":
        return any(word in line for line in data)
    if verb == "LABELS":
        return [m.group(1) for line in data if (m := re.search(r"\blabel=(\w+)", line))]
    numbers = [int(n) for line in data for n in re.findall(r"-?\d+", line)]
    if verb == "NUMBERS":
        return numbers
    if verb == "SUM":
        return sum(numbers)
    merged: list[Any] = []
    for line in data:
        for item in _json_lists(line):
            if item not in merged:
                merged.append(item)
    return merged


def _json_lists(line: str) -> list[Any]:
    try:
        value = json.loads(line)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [y for x in value for y in (x if isinstance(x, list) else [x])]


def _format(kind: str, value: Any) -> str:
    optional = _OPTIONAL.fullmatch(kind)
    if optional:  # int? and friends: answer as the inner type
        kind = optional.group(1) or optional.group(2)
    if kind.startswith("list") or kind.startswith("dict"):
        return json.dumps(value if isinstance(value, list) else [value])
    if kind == "int":
        return str(value if isinstance(value, int) else 0)
    if kind == "bool":
        return str(bool(value) if isinstance(value, bool) else False)
    if kind.startswith("Literal["):
        labels = re.findall(r"'([^']*)'", kind)
        words = re.findall(r"\w+", str(value).lower())
        return next((label for label in labels if label in words), labels[0] if labels else "")
    return str(value)


def _section(user: str, name: str) -> str:
    """The text of input field ``name`` in an adapter-formatted user message."""
    pieces = _FIELD.split(user)
    for i in range(1, len(pieces) - 1, 2):
        if pieces[i] == name:
            return pieces[i + 1].strip("\n")
    return user


def parse_options(model_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """``test:window=4096,fail=0.2`` plus binding options → typed engine options."""
    merged: dict[str, Any] = {}
    _, _, spec = model_id.partition(":")
    for item in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise LMError(f"model '{model_id}': expected key=value, got '{item}'")
        merged[key] = value
    merged.update({k: v for k, v in options.items() if k in OPTIONS})
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise LMError(
            f"model '{model_id}': unknown test LM option(s) {', '.join(unknown)}; "
            f"known: {', '.join(OPTIONS)}"
        )
    try:
        return {k: OPTIONS[k](v) for k, v in merged.items()}
    except ValueError as exc:
        raise LMError(f"model '{model_id}': bad option value: {exc}") from None


def resolve_test_lm(model_id: str, options: dict[str, Any]) -> ResolvedLM:
    """The :class:`ResolvedLM` for a ``test`` model id (the ``register_backend`` factory)."""
    opts = parse_options(model_id, options)
    engine = TestEngine(estimate_tokens, **opts)
    return ResolvedLM(
        model_id=model_id,
        engine=engine,
        tokenizer=estimate_tokens,
        context_window=opts.get("window", 128_000),
        price=None,
        max_concurrency=options.get("max_concurrency"),
    )


register_backend("test", resolve_test_lm)
