"""A step's predictor skips DSPy's module layer only when nothing observes it (steps/predict.py).

The module layer (``Module.__call__``) runs DSPy callbacks, usage tracking and per-module call
history; a run turns that history off (every call is in ``lm_calls``), so with no callbacks and
no usage tracking the layer is skipped — and when a user observes it, it runs as before.
"""

from __future__ import annotations

import dspy
import pytest
from dspy.utils.callback import BaseCallback

import rlm_dsl

SPEC = '''
    recipe observed "Observed."
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> n: int """
      COUNT "bad"
      {{ chunk.text }}
    """
    output n
'''


class Starts(BaseCallback):
    """Counts the module calls DSPy reports to callbacks."""

    def __init__(self) -> None:
        self.predictor_starts = 0

    def on_module_start(self, call_id, instance, inputs):
        if isinstance(instance, dspy.Predict):
            self.predictor_starts += 1


@pytest.fixture
def module_calls(monkeypatch):
    """How many times ``dspy.Predict.__call__`` (the module layer) ran."""
    seen = {"calls": 0}
    layer = dspy.Predict.__call__

    def counting(self, *args, **kwargs):
        seen["calls"] += 1
        return layer(self, *args, **kwargs)

    monkeypatch.setattr(dspy.Predict, "__call__", counting)
    return seen


def run(spec, items, **context):
    with dspy.context(**context):
        return rlm_dsl.load(spec(SPEC)).run(inputs={"items": str(items)}, lm="test")


def test_an_unobserved_run_skips_the_module_layer(spec, items, module_calls):
    result = run(spec, items)
    assert sum(result.outputs["n"]) == 25 and result.summary["calls"] == 100
    assert module_calls["calls"] == 0


def test_a_callback_sees_every_predictor_call(spec, items, module_calls):
    starts = Starts()
    result = run(spec, items, callbacks=[starts])
    assert sum(result.outputs["n"]) == 25
    assert starts.predictor_starts == 100 == module_calls["calls"]


def test_usage_tracking_keeps_the_module_layer(spec, items, module_calls):
    result = run(spec, items, track_usage=True)
    assert sum(result.outputs["n"]) == 25
    assert module_calls["calls"] == 100
