"""The Python API: ``rlm_dsl.load(path)`` → a runnable, optimizable ``dspy.Module``.

Public-API stage (on top of the compiler and the runtime): :func:`load` compiles a spec into a
:class:`~rlm_dsl.runtime.module.RecipeModule` (re-exported here).

    import rlm_dsl
    program = rlm_dsl.load("recipes/label_counting.rlm")
    result = program.run(inputs={"questions": "q.jsonl"}, lm="test", max_calls=100)
    result.outputs["counts"], result.summary["calls"]
"""

from __future__ import annotations

import os

from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.module import RecipeModule

__all__ = ["RecipeModule", "load"]


def load(path: str | os.PathLike[str]) -> RecipeModule:
    """Compile the spec at ``path`` into a :class:`RecipeModule`."""
    return RecipeModule(compile_file(path))
