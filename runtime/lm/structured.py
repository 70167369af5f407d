"""Constrained decoding (runtime stage: LM back ends): a step's output fields as a JSON schema.

A step whose LM can constrain its answer (``ResolvedLM.structured``: the local llama.cpp engine,
LiteLLM models with JSON-schema output) sends, with each call, an OpenAI-style
``response_format={"type": "json_schema", …}`` holding one property per output field of the
signature, in order, each with its type's JSON schema (from pydantic). A JSON-schema server answers
a JSON object, which :class:`~rlm_dsl.runtime.lm.adapter.RobustAdapter` reads with its JSON
parse; the local engine turns the same schema into a grammar of the chat format the prompt asks
for (:func:`rlm_dsl.runtime.lm.local.chat_grammar`), so enums, bools, numbers, records and lists
parse at the first attempt.
"""

from __future__ import annotations

import weakref
from typing import Any

import dspy
import pydantic

_FORMATS: weakref.WeakKeyDictionary[type, dict[str, Any]] = weakref.WeakKeyDictionary()


def response_format(signature: type[dspy.Signature]) -> dict[str, Any]:
    """The ``response_format`` for ``signature``'s output fields (built once per signature)."""
    cached = _FORMATS.get(signature)
    if cached is None:
        fields = {name: (info.annotation, ...) for name, info in signature.output_fields.items()}
        model = pydantic.create_model(f"{signature.__name__}Output", **fields)  # type: ignore[call-overload]
        schema = model.model_json_schema()
        schema.pop("title", None)
        cached = _FORMATS[signature] = {
            "type": "json_schema",
            "json_schema": {"name": f"{signature.__name__}Output", "schema": schema},
        }
    return cached
