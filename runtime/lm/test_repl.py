"""The test LM inside an ``rlm`` step: REPL actions that really run, so ``--lm test`` tries one.

Runtime test support (used by :func:`rlm_dsl.runtime.lm.testing.answer`). Asked for a REPL action
(output fields ``reasoning`` and ``code``), the test LM writes code that reads every row of
``context``, hands ``task`` plus those lines to ``llm_query`` — where the test LM's own
conventions (``COUNT "kw"``, ``FIND "kw"``, …) compute the answer from the task's directive —
and ``SUBMIT``s it converted to the declared output type (a record: each field from the reply —
numbers and bools parsed, lists of the reply, an enum its first value). Without the
``llm_query`` tool it submits the first line of the input. So ``rlm run spec.rlm --lm test``
exercises the sandbox, the tools, the sub-call records and the typed ``SUBMIT`` end to end,
deterministically.
"""

from __future__ import annotations

import re

_OUTPUT = re.compile(r"^\s*- `(\w+)`: (.+?)(?: where .*)?$", re.M)
_CONVERT = {"int": "int(reply.strip())", "float": "float(reply.strip())",
            "bool": "reply.strip() == 'True'"}
_FIELD = re.compile(r"(\w+): ([^,]+(?:\[[^\]]*\])?)")


def _convert(kind: str, as_list: str) -> str:
    """Python that turns ``reply`` (the sub-call's text) into a value of ``kind``: a number or
    bool parsed, a list by ``as_list``, an enum its first value, anything else the text."""
    kind = kind.removesuffix("?")
    if kind in _CONVERT:
        return _CONVERT[kind]
    if kind.startswith("list"):
        return as_list
    if " | " in kind:
        return repr(kind.split(" | ")[0].strip())
    return "reply.strip()"


def _record_fields(kind: str, declared: str) -> list[tuple[str, str]] | None:
    """``[(field, type)]`` of a record output (``Hit where Hit = {a: str, …}``), else None."""
    found = re.search(rf"\b{re.escape(kind)} = \{{([^}}]*)\}}", declared)
    if found is None:
        return None
    return [(name, t.strip()) for name, t in _FIELD.findall(found.group(1))]


def repl_action(system: str) -> str | None:
    """The adapter-formatted REPL action for an action request, None for any other request."""
    if "`reasoning`" not in system or "`code`" not in system or "Outputs to produce:" not in system:
        return None
    declared = system.partition("Outputs to produce:")[2].partition("In the REPL")[0]
    outputs = _OUTPUT.findall(declared)
    if len(outputs) != 1:
        return None
    _, kind = outputs[0]
    ask = ("reply = llm_query(task + '\\n' + data)" if "`llm_query(prompt)`" in system
           else "reply = data.splitlines()[0] if data else ''")
    fields = _record_fields(kind.strip(), declared)
    value = (_convert(kind.strip(), "json.loads(reply)") if fields is None else
             "{" + ", ".join(f"{name!r}: {_convert(t, '[reply.strip()]')}"
                             for name, t in fields) + "}")
    code = "\n".join([
        "import json",
        "data = '\\n'.join(str(row['text']) for row in context[0:len(context)])",
        ask,
        "print(reply)",
        f"SUBMIT({value})",
    ])
    return ("[[ ## reasoning ## ]]\nComputed by the test LM.\n\n"
            f"[[ ## code ## ]]\n```python\n{code}\n```\n\n[[ ## completed ## ]]")
