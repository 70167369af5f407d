"""The test LM inside an ``rlm`` step: REPL actions that really run, so ``--lm test`` tries one.

Runtime test support (used by :func:`rlm_dsl.runtime.lm.testing.answer`). Asked for a REPL action
(output fields ``reasoning`` and ``code``), the test LM writes code that reads every row of
``context``, hands ``task`` plus those lines to ``llm_query`` — where the test LM's own
conventions (``COUNT "kw"``, ``FIND "kw"``, …) compute the answer from the task's directive —
and ``SUBMIT``s it converted to the declared output type. Without the ``llm_query`` tool it
submits the first line of the input. So ``rlm run spec.rlm --lm test`` exercises the sandbox,
the tools, the sub-call records and the typed ``SUBMIT`` end to end, deterministically.
"""

from __future__ import annotations

import re

_OUTPUT = re.compile(r"^\s*- `(\w+)`: (.+?)(?: where .*)?$", re.M)
_CONVERT = {"int": "int(reply.strip())", "float": "float(reply.strip())",
            "bool": "reply.strip() == 'True'"}


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
    value = _CONVERT.get(kind.strip(), "json.loads(reply)" if kind.startswith("list") else "reply")
    code = "\n".join([
        "import json",
        "data = '\\n'.join(str(row['text']) for row in context[0:len(context)])",
        ask,
        "print(reply)",
        f"SUBMIT({value})",
    ])
    return ("[[ ## reasoning ## ]]\nComputed by the test LM.\n\n"
            f"[[ ## code ## ]]\n```python\n{code}\n```\n\n[[ ## completed ## ]]")
