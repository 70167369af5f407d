"""Real-model smoke: the embedded 0.5B model drives a tiny `rlm` step on a tiny budget.

The model need not be right; the test proves the loop survives whatever it writes (unparseable
replies, bad code, no SUBMIT) and that every iteration lands in ``rlm_iterations``. Skipped, with
the reason, when llama-cpp-python or the pinned GGUF is missing.
"""

from __future__ import annotations

import dspy
import pytest

from rlm_dsl.compiler.types import Prim
from rlm_dsl.runtime.repl.module import ReplError, RlmStep

from .conftest import rlm_step


@pytest.mark.local_model
def test_local_model_runs_a_tiny_rlm_step(store):
    from rlm_dsl.runtime.lm import resolve_lm
    from rlm_dsl.runtime.lm.adapter import RobustAdapter

    store.con.execute(
        "CREATE TABLE logs AS SELECT * FROM (VALUES (0, 'INFO boot ok'), "
        "(1, 'ERROR disk full on /var'), (2, 'INFO retry ok')) t(id, text)")
    resolved = resolve_lm("local")
    lm = resolved.make_lm(max_tokens=160, temperature=0.0)
    step = RlmStep(rlm_step(output=Prim("str"), prompt="Which line mentions an ERROR?",
                            max_iterations=1, max_llm_calls=2),
                   context_window=resolved.context_window,
                   count_tokens=resolved.count_tokens)
    with dspy.context(adapter=RobustAdapter()):
        try:
            result = step.run(store, "logs", {}, lm, lm, "smoke")
            outcome = f"answered {result.value!r}"
        except ReplError as exc:  # no SUBMIT and an unreadable final answer: a clean end
            outcome = str(exc)
    rows = store.rows("rlm_iterations", order_by='"at"')
    iterations = [r for r in rows if r["depth"] == 0]
    assert 1 <= len(iterations) <= 2, outcome
    assert all(r["step"] == "rlm-answer" and r["run_id"] == "smoke" for r in rows)
    print(f"local model: {outcome}; {len(rows)} rows:",
          [(r["iteration"], (r["code"] or "")[:60], (r["output"] or "")[:80]) for r in rows])
