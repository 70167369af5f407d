"""A step's predictor skips DSPy's layers only when nothing observes them (steps/predict.py).

The module layer (``Module.__call__``) runs DSPy callbacks, usage tracking and per-module call
history; a run turns that history off (every call is in ``lm_calls``), so with no callbacks and
no usage tracking the layer is skipped — and when a user observes it, it runs as before.
``Predict.forward`` appends each call to DSPy's trace; a run keeps no trace unless its caller's
context set one (optimizers do), and without one the step calls the predictor's adapter itself.
"""

from __future__ import annotations

import dspy
import pytest
from dspy.utils.callback import BaseCallback

import rlm_dsl
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.testing import resolve_test_lm

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


def _counted(monkeypatch, method: str) -> dict[str, int]:
    """Count the calls of ``dspy.Predict.<method>`` (it still runs)."""
    seen = {"calls": 0}
    original = getattr(dspy.Predict, method)

    def counting(self, *args, **kwargs):
        seen["calls"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(dspy.Predict, method, counting)
    return seen


@pytest.fixture
def forward_calls(monkeypatch):
    """How many times ``dspy.Predict.forward`` ran."""
    return _counted(monkeypatch, "forward")


@pytest.fixture
def module_calls(monkeypatch):
    """How many times ``dspy.Predict.__call__`` (the module layer) ran."""
    return _counted(monkeypatch, "__call__")


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


def test_a_run_leaves_nothing_in_dspys_global_trace(spec, items, forward_calls):
    # DSPy's default trace is a global list that Predict.forward appends (predictor, inputs,
    # prediction) to: a run would keep its last 10,000 prompts in memory after it ended
    before = len(dspy.settings.trace)
    result = run(spec, items)
    assert sum(result.outputs["n"]) == 25 and result.summary["calls"] == 100
    assert len(dspy.settings.trace) == before
    assert forward_calls["calls"] == 0  # the adapter was called directly


def test_a_trace_the_caller_set_sees_every_predictor_call(spec, items, forward_calls):
    trace: list = []  # what an optimizer's bootstrapping sets
    result = run(spec, items, trace=trace)
    assert sum(result.outputs["n"]) == 25
    assert forward_calls["calls"] == 100 == len(trace)
    assert {entry[2].n for entry in trace} == {0, 1}


def test_a_chain_of_thought_step_keeps_its_forward(spec, items, forward_calls):
    text = SPEC.replace('map pieces -> n: int """', 'map pieces -> n: int with reason=true """')
    result = rlm_dsl.load(spec(text)).run(inputs={"items": str(items)}, lm="test")
    assert sum(result.outputs["n"]) == 25
    assert forward_calls["calls"] == 100  # ChainOfThought's own Predict, through forward


def test_a_step_module_called_as_a_dspy_module_returns_a_prediction(spec):
    step = rlm_dsl.load(spec(SPEC)).step_modules["map-n"]
    lm = resolve_test_lm("test", {}).make_lm(num_retries=0)
    with dspy.context(lm=lm, adapter=RobustAdapter(), disable_history=True, trace=None):
        answer = step(prompt='COUNT "bad"\nitem 7 bad')
    assert isinstance(answer, dspy.Prediction) and answer.n == 1
