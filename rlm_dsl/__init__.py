"""rlm-dsl: a declarative language and toolchain for Recursive Language Models.

The public API is small: :func:`compile_file` / :func:`compile_text` turn a spec into a
:class:`~rlm_dsl.compiler.plan.Plan`, and :func:`load` returns a runnable ``dspy.Module``.
Everything else is reachable by its full path (``rlm_dsl.compiler.*``, ``rlm_dsl.runtime.*``).
"""

from __future__ import annotations

from typing import Any

from rlm_dsl.errors import BudgetExhausted, InputError, LMError, RlmError, SpecError

__all__ = ["BudgetExhausted", "InputError", "LMError", "RlmError", "SpecError", "load"]


def load(path: Any) -> Any:
    """Compile the spec at ``path`` into a runnable ``dspy.Module`` (:func:`rlm_dsl.api.load`).

    Imported lazily so that ``import rlm_dsl`` stays light (no DSPy, no DuckDB).
    """
    from rlm_dsl.api import load as _load

    return _load(path)
