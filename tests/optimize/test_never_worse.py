"""An optimizer that never makes things worse: demos that hurt are not chosen, a tuned program
that does not beat the baseline is not saved (unless ``--save-worse``)."""

from __future__ import annotations

import json

from rlm_dsl.runtime.optimize.optimizer import opt_path, validation_split


def _optimize(files, cli, *extra):
    return cli("optimize", files["spec"], "--trainset", files["train"], "--devset",
               files["dev"], "--optimizer", "bootstrap", "--lm", "confused", *extra)


def test_a_worse_program_is_not_saved_and_the_baseline_is_kept(shout, cli):
    files = shout  # the "confused" LM (conftest): any demo makes it answer wrong
    code, out, _ = _optimize(files, cli)
    assert code == 0
    assert "devset score before: 100.0%" in out
    assert "devset score after:  100.0% (+0.0)" in out  # the zero-demo candidate won
    assert "kept the baseline" in out and "nothing saved" in out
    assert not opt_path(files["spec"]).exists()


def test_save_worse_saves_anyway(shout, cli):
    files = shout
    code, out, _ = _optimize(files, cli, "--save-worse")
    assert code == 0 and "saved " in out
    document = json.loads(opt_path(files["spec"]).read_text())
    assert document["scores"] == {"before": 100.0, "after": 100.0, "on": "devset"}


def test_candidates_are_chosen_on_examples_the_demos_do_not_come_from():
    fit, val = validation_split(list(range(6)))
    assert (fit, val) == ([0, 1, 3, 4], [2, 5])
    assert validation_split([0, 1, 2]) == ([0, 1, 2], [0, 1, 2])
