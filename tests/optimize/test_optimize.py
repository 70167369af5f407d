"""rlm optimize end to end: inner predictors by step id, traces, bootstrap / MIPROv2 / GEPA lifts,
the saved file reloading, ``rlm run`` using it (or not, with ``--no-opt``), and the budget cap."""

from __future__ import annotations

import json

import dspy
import pytest
from conftest import MENTOR, RLM_RECIPE

import rlm_dsl
from rlm_dsl.runtime.optimize.optimizer import FORMAT, load_optimized, opt_path


def test_step_predictors_are_named_by_step_id_and_state_round_trips(shout):
    program = rlm_dsl.load(shout["spec"])
    assert [n for n, _ in program.named_predictors()] == ["map-loud.predict",
                                                          "reduce-answer.predict"]
    predictor = program.step_modules["map-loud"].predict
    predictor.demos = [dspy.Example(prompt="a b", loud="A B")]
    predictor.signature = predictor.signature.with_instructions("Answer in UPPERCASE.")
    copy = rlm_dsl.load(shout["spec"])
    copy.load_state(json.loads(json.dumps(program.dump_state())))
    loaded = copy.step_modules["map-loud"].predict
    assert loaded.signature.instructions == "Answer in UPPERCASE."
    assert [dict(d) for d in loaded.demos] == [{"prompt": "a b", "loud": "A B"}]
    twin = program.deepcopy()
    pairs = zip(program.named_predictors(), twin.named_predictors(), strict=True)
    assert all(a[0] == b[0] and a[1] is not b[1] for a, b in pairs)
    assert twin.step_modules["map-loud"].predict.demos == predictor.demos
    assert twin.step_modules["map-loud"].predict.demos is not predictor.demos


def test_inner_calls_from_worker_threads_reach_the_dspy_trace(shout, tmp_path):
    data = tmp_path / "three.txt"
    data.write_text("one two\nthree four\nfive six\n")
    program = rlm_dsl.load(shout["spec"])
    with dspy.context(trace=[]):
        program.run({"lines": str(data)}, lm="teach", concurrency=3)
        trace = list(dspy.settings.trace)
    names = {id(p): n for n, p in program.named_predictors()}
    seen = sorted(names[id(p)] for p, _, _ in trace)
    assert seen == ["map-loud.predict"] * 3 + ["reduce-answer.predict"]
    prompts = sorted(inputs["prompt"] for p, inputs, _ in trace if names[id(p)].startswith("map"))
    assert prompts == ["five six", "one two", "three four"]


def _scores(stdout: str) -> tuple[float, float]:
    before = float(stdout.split("score before: ")[1].split("%")[0])
    after = float(stdout.split("score after:  ")[1].split("%")[0])
    return before, after


def test_bootstrap_lifts_the_devset_with_demos_for_the_inner_steps(bootstrapped):
    assert bootstrapped["code"] == 0
    before, after = _scores(bootstrapped["out"])
    assert before < 50 and after >= 90
    document = json.loads(opt_path(bootstrapped["spec"]).read_text())
    assert document["optimizer"] == "bootstrap" and document["scores"]["after"] >= 90
    for name in ("map-loud.predict", "reduce-answer.predict"):
        demos = document["predictors"][name]["demos"]
        assert demos and all(d["prompt"].isupper() for d in demos)


def test_rlm_run_uses_the_saved_prompts_unless_no_opt(bootstrapped, cli):
    spec, data = bootstrapped["spec"], bootstrapped["data"]
    code, out, err = cli("run", spec, "--input", f"lines={data}", "--lm", "teach", "--quiet")
    assert (code, out.strip()) == (0, "RAINY DAY")
    assert f"using optimized prompts from {opt_path(spec).name} (bootstrap, exact 0% → 100% " \
           "on the devset; 2 step predictor(s)); --no-opt to skip" in err
    code, out, err = cli("run", spec, "--input", f"lines={data}", "--lm", "teach", "--quiet",
                         "--no-opt")
    assert (code, out.strip()) == (0, "rainy day")
    assert "optimized" not in err


def test_saved_file_reloads_into_a_fresh_program(bootstrapped):
    spec = bootstrapped["spec"]
    assert load_optimized(rlm_dsl.load(spec), spec, no_opt=True) is None
    program = rlm_dsl.load(spec)
    assert program(lines=str(bootstrapped["data"]), lm="teach").answer == "rainy day"
    note = load_optimized(program, spec, no_opt=False)
    assert note is not None and "2 step predictor(s)" in note
    assert program(lines=str(bootstrapped["data"]), lm="teach").answer == "RAINY DAY"


def test_changed_spec_is_reported_when_loading(bootstrapped, tmp_path):
    spec = tmp_path / "shout.rlm"
    spec.write_text(bootstrapped["spec"].read_text() + "\n# edited\n")
    opt_path(spec).write_text(opt_path(bootstrapped["spec"]).read_text())
    note = load_optimized(rlm_dsl.load(spec), spec, no_opt=False)
    assert note is not None and "warning: shout.rlm changed since it was optimized" in note


def test_mipro_proposes_the_instruction_that_lifts_the_score(shout, cli):
    pytest.importorskip("optuna", reason="MIPROv2 needs optuna")
    calls = MENTOR.requests
    code, out, err = cli("optimize", shout["spec"], "--trainset", shout["train"], "--devset",
                         shout["dev3"], "--optimizer", "mipro", "--lm", "teach",
                         "--reflection-lm", "mentor", "--trials", "2", "--demos", "0")
    assert code == 0, err
    assert MENTOR.requests > calls
    before, after = _scores(out)
    assert before < 50 and after >= 90
    state = json.loads(opt_path(shout["spec"]).read_text())["predictors"]
    assert any("UPPERCASE" in s["signature"]["instructions"] for s in state.values())
    assert all(not s["demos"] for s in state.values())


def test_gepa_reflects_on_feedback_and_lifts_the_score(shout, cli):
    calls = MENTOR.requests
    code, out, err = cli("optimize", shout["spec"], "--trainset", shout["train"], "--devset",
                         shout["dev3"], "--optimizer", "gepa", "--lm", "teach",
                         "--reflection-lm", "mentor", "--trials", "2", "--out",
                         shout["spec"].parent / "tuned.json")
    assert code == 0, err
    assert MENTOR.requests > calls
    before, after = _scores(out)
    assert before < 50 and after >= 90
    assert not opt_path(shout["spec"]).exists()
    state = json.loads((shout["spec"].parent / "tuned.json").read_text())["predictors"]
    assert any(s["signature"]["instructions"] == "Answer in UPPERCASE." for s in state.values())


def test_call_cap_stops_the_optimization_without_saving(shout, cli):
    code, _, err = cli("optimize", shout["spec"], "--trainset", shout["train"], "--lm", "teach",
                       "--reflection-lm", "mentor", "--max-calls", "15")
    assert code == 3
    assert "budget exhausted during optimization: --max-calls 15 reached after" in err
    assert "nothing was saved" in err
    assert not opt_path(shout["spec"]).exists()


@pytest.mark.parametrize("text, message", [
    ("{not json", "cannot read optimized prompts"),
    ('{"format": "other"}', "not an rlm optimization file"),
])
def test_unusable_opt_file_is_an_input_error_for_rlm_run(shout, cli, text, message):
    opt_path(shout["spec"]).write_text(text)
    code, _, err = cli("run", shout["spec"], "--input", f"lines={shout['data']}", "--lm",
                       "teach", "--quiet")
    assert code == 2
    assert err.startswith(f"{opt_path(shout['spec'])}: {message}")
    code, out, _ = cli("run", shout["spec"], "--input", f"lines={shout['data']}", "--lm",
                       "teach", "--quiet", "--no-opt")
    assert (code, out.strip()) == (0, "rainy day")


def test_bootstrap_gives_the_rlm_step_repl_action_demos(tmp_path, cli):
    spec = tmp_path / "ask.rlm"
    spec.write_text(RLM_RECIPE)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"inputs": {"doc": {"text": "x\n"}}, "params": {"word": w},
                                         "expected": {"answer": w.upper()}}) + "\n"
                             for w in ("ALPHA", "bravo", "delta")))
    code, out, err = cli("optimize", spec, "--trainset", train, "--lm", "shoutrlm",
                         "--reflection-lm", "mentor", "--demos", "1")
    assert code == 0, err
    assert _scores(out) == (33.3, 100.0)
    state = json.loads(opt_path(spec).read_text())["predictors"]
    assert [len(state[n]["demos"]) for n in ("rlm-answer.generate_action",
                                             "rlm-answer.extract")] == [1, 0]
    (tmp_path / "doc.txt").write_text("x\n")
    code, out, err = cli("run", spec, "--input", f"doc={tmp_path / 'doc.txt'}", "--param",
                         "word=echo", "--lm", "shoutrlm", "--quiet")
    assert (code, out.strip()) == (0, "ECHO"), err


def test_an_opt_file_that_pins_a_predictors_lm_is_refused(shout, cli):
    # a predictor's saved state may carry an "lm"; loaded, it would be called instead of the
    # run's gated LM — outside --max-calls / --max-usd, the cache and lm_calls
    program = rlm_dsl.load(shout["spec"])
    state = json.loads(json.dumps(program.dump_state()))
    state["map-loud.predict"]["lm"] = {"model": "openai/gpt-4o-mini", "model_type": "chat"}
    opt_path(shout["spec"]).write_text(json.dumps(
        {"format": FORMAT, "optimizer": "bootstrap", "predictors": state}))
    code, _, err = cli("run", shout["spec"], "--input", f"lines={shout['data']}", "--lm",
                       "teach", "--quiet")
    assert code == 2
    assert err.startswith(f"{opt_path(shout['spec'])}: the saved prompts of 'map-loud.predict' "
                          "pin an LM (openai/gpt-4o-mini)")
    assert "Traceback" not in err
