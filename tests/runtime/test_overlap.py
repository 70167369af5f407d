"""Branch overlap: independent steps of a plan run at once, under each LM's own limits."""

from __future__ import annotations

import signal
import textwrap
import threading
import time

import pytest

from rlm_dsl.compile import compile_file
from rlm_dsl.errors import RowsFailed
from rlm_dsl.runtime.executor import RunOptions, execute
from rlm_dsl.runtime.steps.overlap import generations, run_together
from tests.conftest import answering, failure

TWO_BRANCHES = '''
recipe branches "Two independent maps."
lm a = "openai/a" with api_base="{base}", concurrency=1
lm b = "openai/{second}" with api_base="{base}", concurrency=1
input items: lines
chunk items -> pieces by lines(1)
map pieces -> x: int using a """
  COUNT "mark"
  {{{{ chunk.text }}}}
"""
map pieces -> y: int using b """
  COUNT "plain"
  {{{{ chunk.text }}}}
"""
reduce x -> total: int by concat using a """
  SUM
  {{{{ items }}}}
"""
output y, total
'''


def _run(tmp_path, base: str, second: str = "b", **options):
    data = tmp_path / "items.txt"
    data.write_text("".join(f"item {i} {'mark' if i % 3 == 0 else 'plain'}\n" for i in range(6)))
    spec = tmp_path / "branches.rlm"
    spec.write_text(textwrap.dedent(TWO_BRANCHES.format(base=base, second=second)).lstrip())
    plan = compile_file(spec)
    return plan, execute(plan, RunOptions(inputs={"items": str(data)}, db=str(tmp_path / "r.db"),
                                          **options))


def test_the_two_maps_are_one_generation_and_overlap_on_their_own_lms(serve, tmp_path):
    server = serve(lambda body, n: (*answering(body, n)[:3], 0.2))
    plan, result = _run(tmp_path, server.url, concurrency=4)
    names = [[step.id for step in generation] for generation in generations(plan)]
    assert ["map-x", "map-y"] in names
    assert result.outputs["y"] == [0, 1, 1, 0, 1, 1]
    assert result.outputs["total"] == 2
    # each LM is limited to one call at a time: two in flight means the branches overlapped
    assert server.peak == 2


def test_overlapping_steps_on_one_lm_share_its_limit(serve, tmp_path):
    server = serve(lambda body, n: (*answering(body, n)[:3], 0.1))
    _, result = _run(tmp_path, server.url, second="a", concurrency=4)
    assert result.outputs["y"] == [0, 1, 1, 0, 1, 1]
    assert server.peak == 1


def test_a_failing_branch_leaves_the_other_whole(serve, tmp_path):
    def script(body: dict, number: int):
        if body["model"] == "b":
            return failure(400)
        return (*answering(body, number)[:3], 0.05)

    server = serve(script)
    with pytest.raises(RowsFailed) as failed:  # exit 4: map-y's rows failed (the run contract)
        _run(tmp_path, server.url, concurrency=4)
    result = failed.value.result
    assert result.outputs["total"] == 2
    assert result.summary["failures"] == 6  # every row of map-y, recorded
    assert len([b for b in server.bodies if b["model"] == "a"]) == 7  # 6 map rows, 1 reduce


def test_an_interrupt_stops_the_branches_and_is_raised():
    stopping = threading.Event()
    rows_done = []

    rows = 3000  # 30 s of rows, so the Ctrl-C after 0.1 s finds the branch running

    def branch() -> None:  # like a map: one row after another until told to stop
        for row in range(rows):
            if stopping.is_set():
                return
            rows_done.append(row)
            time.sleep(0.01)

    def interrupter() -> None:
        time.sleep(0.1)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C

    # Ctrl-C as an interactive shell delivers it: a process started in the background of a
    # script (``pytest … &``) inherits SIGINT ignored, and then no KeyboardInterrupt comes
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            run_together([branch, interrupter], stopping)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopping.is_set()
    branches = [t for t in threading.enumerate() if t.name.startswith("rlm-branch")]
    assert not [t for t in branches if t.is_alive()]  # waited for
    assert 0 < len(rows_done) < rows  # the branch stopped early instead of running to the end
