"""An optimizer that never makes things worse: demos that hurt are not chosen, a tuned program
that does not beat the baseline is not saved (unless ``--save-worse``)."""

from __future__ import annotations

import json

from conftest import TRAIN, _fields, _reply, _resolved, _response, make_shout
from dspy.lm15 import Request, Response

from rlm_dsl.runtime.lm.gate import request_messages
from rlm_dsl.runtime.lm.resolve import register_backend
from rlm_dsl.runtime.lm.testing import _section
from rlm_dsl.runtime.optimize.optimizer import opt_path, validation_split


class ConfusedEngine:
    """Shouts (the right answer) when shown no demo, and whispers once it has seen any: every
    demo set makes the program worse, only the zero-demo candidate keeps the baseline."""

    def complete(self, request: Request) -> Response:
        messages = request_messages(request)
        system = messages[0]["content"] if messages[0]["role"] == "system" else ""
        demos = any(m["role"] == "assistant" for m in messages[1:-1])
        first = (_section(messages[-1]["content"], "prompt").strip().splitlines() or [""])[0]
        value = first.strip().lower() if demos else first.strip().upper()
        return _response(_reply([(n, value) for n, _ in _fields(system)]), messages)


register_backend("confused", lambda model_id, options: _resolved(model_id, ConfusedEngine()))


def _optimize(files, cli, *extra):
    return cli("optimize", files["spec"], "--trainset", files["train"], "--devset",
               files["dev"], "--optimizer", "bootstrap", "--lm", "confused", *extra)


def test_a_worse_program_is_not_saved_and_the_baseline_is_kept(tmp_path, cli):
    files = make_shout(tmp_path)
    code, out, _ = _optimize(files, cli)
    assert code == 0
    assert "devset score before: 100.0%" in out
    assert "devset score after:  100.0% (+0.0)" in out  # the zero-demo candidate won
    assert "kept the baseline" in out and "nothing saved" in out
    assert not opt_path(files["spec"]).exists()


def test_save_worse_saves_anyway(tmp_path, cli):
    files = make_shout(tmp_path)
    code, out, _ = _optimize(files, cli, "--save-worse")
    assert code == 0 and "saved " in out
    document = json.loads(opt_path(files["spec"]).read_text())
    assert document["scores"] == {"before": 100.0, "after": 100.0, "on": "devset"}


def test_candidates_are_chosen_on_examples_the_demos_do_not_come_from():
    fit, val = validation_split(list(range(6)))
    assert (fit, val) == ([0, 1, 3, 4], [2, 5])
    assert validation_split([0, 1, 2]) == ([0, 1, 2], [0, 1, 2])
    assert len(TRAIN) == 6
