"""Structured output for small models (runtime stage: LM back ends): a forgiving DSPy adapter.

:class:`RobustAdapter` formats prompts exactly like DSPy's ``ChatAdapter`` and parses in three
steps over the *same* response text, with no extra LM call: the strict ``[[ ## field ## ]]``
parse, then ``JSONAdapter``'s parse (a JSON object anywhere, repaired), then the lenient parser
of :mod:`rlm_dsl.runtime.lm.lenient`. What still fails raises DSPy's ``AdapterParseError``
naming each parser's reason; a step's retries (:mod:`rlm_dsl.runtime.steps.predict`) re-ask.
The strict parse first tries :func:`chat_fields`, DSPy's parse with one pydantic validator per
output type instead of a new one per value; anything it does not settle goes through DSPy's own.
"""

from __future__ import annotations

import ast
import enum
import functools
import types
import weakref
from collections.abc import Callable
from typing import Any, Literal, Union, get_args, get_origin

import dspy
import json_repair
import pydantic
from dspy.adapters.chat_adapter import field_header_pattern
from dspy.adapters.types.base_type import Type as DspyType
from dspy.adapters.utils import apply_output_field_defaults
from dspy.utils.exceptions import AdapterParseError

from rlm_dsl.runtime.lm.lenient import lenient_fields


class RobustAdapter(dspy.ChatAdapter):
    """``ChatAdapter`` whose parse falls back to JSON and then lenient parsing of the same text."""

    def __init__(self, **kwargs: Any) -> None:
        # The fallbacks below re-read the same text; DSPy's JSON fallback would spend a second
        # call. Re-asking is the step's job (its retries).
        kwargs.setdefault("use_json_adapter_fallback", False)
        super().__init__(**kwargs)
        self._memo: weakref.WeakKeyDictionary[type, dict[str, str]] = (
            weakref.WeakKeyDictionary())

    def __getstate__(self) -> dict[str, Any]:  # the memo holds weak references: not pickled
        return {k: v for k, v in vars(self).items() if k != "_memo"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)
        self._memo = weakref.WeakKeyDictionary()

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        """DSPy's system message, built once per signature (see :meth:`_once`): rebuilding it
        (field descriptions, structure, pydantic schemas) was a fifth of every call's CPU."""
        return self._once(signature, "system", super().format_system_message)

    def user_message_output_requirements(self, signature: type[dspy.Signature]) -> str:
        return self._once(signature, "reminder", super().user_message_output_requirements)

    def format_user_message_content(self, signature: type[dspy.Signature],
                                    inputs: dict[str, Any], prefix: str = "", suffix: str = "",
                                    main_request: bool = False) -> str:
        """DSPy's user message; text inputs of ``str`` fields go in as they are. DSPy passes every
        value through a new pydantic ``TypeAdapter``, which gives a string back unchanged at
        ~15 µs a call; any other input takes DSPy's path."""
        fields = signature.input_fields
        if not all(isinstance(v, str) and k in fields and fields[k].annotation is str
                   for k, v in inputs.items()):
            return super().format_user_message_content(signature, inputs, prefix, suffix,
                                                       main_request)
        parts = [prefix, *(f"[[ ## {k} ## ]]\n{inputs[k]}" for k in fields if k in inputs)]
        requirements = self.user_message_output_requirements(signature) if main_request else None
        if requirements is not None:
            parts.append(requirements)
        parts.append(suffix)
        return "\n\n".join(parts).strip()

    def _once(self, signature: type[dspy.Signature], part: str,
              build: Callable[[type[dspy.Signature]], str]) -> str:
        """``build(signature)``, memoized per signature class: the text depends on nothing else
        (an optimizer's new instructions make a new class, so a stale text is never reused)."""
        memo = self._memo.get(signature)
        if memo is None:
            memo = self._memo.setdefault(signature, {})
        text = memo.get(part)
        if text is None:
            text = memo[part] = build(signature)
        return text

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        fields = chat_fields(signature, completion)
        if fields is not None:
            return fields
        try:
            return super().parse(signature, completion)
        except AdapterParseError as chat_error:
            reasons = [f"chat format: {_reason(chat_error)}"]
        try:
            return dspy.JSONAdapter().parse(signature, completion)
        except (AdapterParseError, ValueError) as json_error:
            reasons.append(f"JSON: {_reason(json_error)}")
        try:
            fields = lenient_fields(signature.output_fields, completion)
        except ValueError as lenient_error:
            reasons.append(f"lenient: {lenient_error}")
            raise AdapterParseError(
                adapter_name="RobustAdapter", signature=signature, lm_response=completion,
                message="; ".join(reasons),
            ) from lenient_error
        return apply_output_field_defaults(signature, fields)


def _reason(error: Exception) -> str:
    parsed = getattr(error, "parsed_result", None)
    if isinstance(parsed, dict):
        missing = [n for n in error.signature.output_fields if n not in parsed]
        return f"no value for field(s) {', '.join(missing)}"
    text = str(error).split("\n\n")[0].strip()
    return text.split("LM Response:")[0].strip() or type(error).__name__


def chat_fields(signature: type[dspy.Signature], completion: str) -> dict[str, Any] | None:
    """What ``ChatAdapter.parse`` answers for a well-formed completion, or None to let DSPy's own
    parse decide (and word its error). DSPy's ``parse_value`` builds a pydantic ``TypeAdapter``
    for every value (~60 µs, a sixth of a whole call); this one validates with one kept per output
    type (:func:`_validator`) and gives the same values: same sections (the first of each
    ``[[ ## field ## ]]``), same ``json_repair`` then ``literal_eval`` reading of the text."""
    outputs = signature.output_fields
    sections: dict[str | None, list[str]] = {None: []}
    current: list[str] = sections[None]
    for line in completion.splitlines():
        match = field_header_pattern.match(line.strip())
        if match is None:
            current.append(line)
            continue
        rest = line[match.end():].strip()
        current = [rest] if rest else []
        sections.setdefault(match.group(1), current)  # a repeated header: DSPy keeps the first
    fields: dict[str, Any] = {}
    for name, info in outputs.items():
        if name not in sections:
            continue
        text = "\n".join(sections[name]).strip()
        if info.annotation is str:
            fields[name] = text
            continue
        validator = _validator(info.annotation)
        if validator is None:
            return None
        candidate = json_repair.loads(text)  # "" when it cannot read the text
        if candidate == "" and text != "":
            try:
                candidate = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                candidate = text
        try:
            fields[name] = validator.validate_python(candidate)
        except (pydantic.ValidationError, ValueError, TypeError):
            return None
    fields = apply_output_field_defaults(signature, fields)
    return fields if fields.keys() == outputs.keys() else None


def _validator(annotation: Any) -> pydantic.TypeAdapter | None:
    """The kept validator of an output type, or None where DSPy's ``parse_value`` does more than
    validate the JSON reading (enums, literals, optional strings, DSPy types)."""
    try:
        return _kept_validator(annotation)
    except TypeError:  # an unhashable annotation: not kept
        return None


@functools.lru_cache(maxsize=256)
def _kept_validator(annotation: Any) -> pydantic.TypeAdapter | None:
    origin = get_origin(annotation)
    if isinstance(annotation, enum.EnumMeta) or origin is Literal:
        return None
    if origin in (Union, types.UnionType) and str in get_args(annotation):
        return None
    if isinstance(annotation, type) and issubclass(annotation, DspyType):
        return None
    return pydantic.TypeAdapter(annotation)
