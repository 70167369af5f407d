"""Measured speed of the local model, for the wall time ``rlm ask`` forecasts.

Planner stage (``rlm ask``). After a run, :func:`record_speed` reads the run's ``lm_calls``
(prompt and completion tokens, latency of the calls that were not cached) and keeps the latest
run's prompt and generated tokens per second per local model in the user cache
(``ask_speed.json``). :func:`expected_wall_s` turns a forecast's tokens into seconds with it, or
with the figures measured on a 2-core build machine (DESIGN §5: ~100 prompt and ~20 generated
tokens a second) until a run has been measured. Only local models are timed this way; a remote
model's wall time depends on its server and concurrency, and is left unknown.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from rlm_dsl.runtime.store.queries import uncached_call_totals
from rlm_dsl.runtime.store.store import Store

DEFAULT_PROMPT_TPS = 100.0
DEFAULT_GENERATED_TPS = 20.0


def _file() -> Path:
    return Path(platformdirs.user_cache_dir("rlm-dsl")) / "ask_speed.json"


def _local(model: str) -> bool:
    return model == "local" or model.startswith("local:")


def expected_wall_s(model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """Seconds the local ``model`` needs for these tokens one call at a time (else None)."""
    if not _local(model):
        return None
    speeds = _read().get(model, {})
    prompt = speeds.get("prompt_tps", DEFAULT_PROMPT_TPS)
    generated = speeds.get("generated_tps", DEFAULT_GENERATED_TPS)
    return round(prompt_tokens / prompt + completion_tokens / generated, 1)


def record_speed(model: str, db: str) -> None:
    """Record the speed of ``model`` measured on the uncached calls of the run in ``db``."""
    if not _local(model) or not os.path.exists(db):
        return
    with Store.open(db) as store:
        prompt, generated, seconds = uncached_call_totals(store)
    if seconds <= 0 or prompt <= 0:
        return
    # One figure from both: seconds = prompt / p + generated / g, with g = p / 5 (DESIGN §5).
    prompt_tps = (prompt + 5 * generated) / seconds
    speeds = _read()
    speeds[model] = {"prompt_tps": round(prompt_tps, 1), "generated_tps": round(prompt_tps / 5, 1)}
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(speeds, indent=1), encoding="utf-8")


def _read() -> dict[str, dict[str, float]]:
    try:
        return json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
