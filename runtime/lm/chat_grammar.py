"""A llama.cpp grammar for DSPy's chat answer format (runtime stage: LM back ends).

The local engine gets a step's output fields as a JSON schema (:mod:`rlm_dsl.runtime.lm.structured`)
while the prompt asks, as DSPy's ``ChatAdapter`` does, for ``[[ ## field ## ]]`` header lines.
:func:`chat_grammar` writes a GBNF grammar of exactly that answer: each field's header, then its
value — free text for ``str`` fields (no ``[[`` inside, starting with a visible character right
after its header line, as a demo's text does), an enum's bare label and a bool's
``True``/``False`` (as the chat format writes a demo's value and the prompt asks for it: no quotes,
Python's bools), else JSON constrained by the field's schema through llama-cpp-python's own
JSON-schema converter — and ``[[ ## completed ## ]]``. The sampler can then produce nothing that
fails to parse: enums are one of their labels, bools ``True``/``False``, records have every field.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from typing import Any

# free text that never opens a header (any character but "[", or "[" not followed by "["), and
# starts with its value, as a demo's text does: not with a blank line, and never empty
TEXT_RULE = r'( [^[ \t\n\r] | "[" [^[] ) ( [^[] | "[" [^[] )*'


def chat_grammar(schema: dict[str, Any]) -> str:
    """GBNF for the chat-format answer whose fields and value types ``schema`` gives."""
    from llama_cpp.llama_grammar import SchemaConverter  # optional: the [local] extra

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False,
                                raw_pattern=False)
    schema = converter.resolve_refs(copy.deepcopy(schema), "schema")  # it rewrites refs in place
    parts = []
    for name, prop in schema.get("properties", {}).items():
        labels = _labels(prop)
        if _is_text(prop):
            value = "text"
        elif labels is not None:
            value = converter._add_rule(f"field-{name}", " | ".join(map(_literal, labels)))
        else:
            value = converter.visit(prop, f"field-{name}")
        parts.append(f"{_literal(f'[[ ## {name} ## ]]')} \"\\n\" {value} \"\\n\\n\"")
    converter._add_rule("text", TEXT_RULE)
    converter._add_rule("root", " ".join([*parts, _literal("[[ ## completed ## ]]")]))
    return converter.format_grammar()


@lru_cache(maxsize=128)
def grammar_for(schema_json: str) -> Any:
    """The compiled ``LlamaGrammar`` for a schema (JSON text), built once per schema."""
    from llama_cpp import LlamaGrammar  # optional: the [local] extra

    return LlamaGrammar.from_string(chat_grammar(json.loads(schema_json)), verbose=False)


def _is_text(prop: dict[str, Any]) -> bool:
    """A ``str`` or ``str | None`` field: the chat format writes it as plain text."""
    kinds = prop.get("anyOf", [prop])
    types = {k.get("type") for k in kinds}
    return "string" in types and types <= {"string", "null"} and "enum" not in prop and all(
        "enum" not in k and "const" not in k for k in kinds)


def _labels(prop: dict[str, Any]) -> list[str] | None:
    """The words an enum or bool field is written as (``null`` last when optional), else None."""
    kinds = prop.get("anyOf", [prop])
    nullable = {"type": "null"} in kinds
    values = [kind for kind in kinds if kind != {"type": "null"}]
    if len(values) != 1:
        return None
    if values[0].get("type") == "boolean":
        words = ["True", "False"]
    elif all(isinstance(v, str) for v in values[0].get("enum", [None])):
        words = values[0]["enum"]
    else:
        return None
    return [*words, *(["null"] if nullable else [])]


def _literal(text: str) -> str:
    return json.dumps(text)
