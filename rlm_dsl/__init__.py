"""rlm-dsl: a declarative language and toolchain for Recursive Language Models.

The public API is small: :func:`compile_file` / :func:`compile_text` turn a spec into a
:class:`~rlm_dsl.compiler.plan.Plan`, and :func:`load` returns a runnable ``dspy.Module``.
Everything else is reachable by its full path (``rlm_dsl.compiler.*``, ``rlm_dsl.runtime.*``).
"""

from __future__ import annotations

import os
from typing import Any

# LiteLLM fetches its price table from the network at import unless told to use its bundled copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from rlm_dsl.compile import compile_file, compile_text
from rlm_dsl.errors import BudgetExhausted, InputError, LMError, RlmError, SpecError

__all__ = [
    "BudgetExhausted",
    "InputError",
    "LMError",
    "RlmError",
    "SpecError",
    "ask",
    "compile_file",
    "compile_text",
    "load",
]


def load(path: Any) -> Any:
    """Compile the spec at ``path`` into a runnable ``dspy.Module`` (:func:`rlm_dsl.api.load`).

    Imported lazily so that ``import rlm_dsl`` stays light (no DSPy, no DuckDB).
    """
    from rlm_dsl.api import load as _load

    return _load(path)


def ask(question: str, paths: Any, **options: Any) -> Any:
    """Answer ``question`` over the files at ``paths`` with a planned, checked, costed spec
    (:func:`rlm_dsl.questions.ask`; options: ``lm``, ``db``, ``strategy``, ``max_calls``, …).

    Imported lazily, like :func:`load`.
    """
    from rlm_dsl.questions.ask import ask as _ask

    return _ask(question, paths, **options)
