"""LM back ends (runtime stage): model resolution, the embedded llama.cpp engine, model pulls
and robust structured output for small models.

``resolve_lm(model_id, options)`` is the one entry point the executor uses; importing this
package registers the ``local`` back end (its heavy imports happen only when it is used).
"""

from __future__ import annotations

from rlm_dsl.runtime.lm import local as _local  # noqa: F401 - registers the `local` back end
from rlm_dsl.runtime.lm.models import ensure_local_model
from rlm_dsl.runtime.lm.resolve import (
    ResolvedLM,
    default_model_id,
    register_backend,
    resolve_lm,
)

__all__ = ["ResolvedLM", "default_model_id", "ensure_local_model", "register_backend", "resolve_lm"]
