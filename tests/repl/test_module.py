"""The `rlm` step end to end with a scripted root LM and a prompt-dependent sub-LM."""

from __future__ import annotations

import re

import pytest

from rlm_dsl.compiler.types import Field, ListOf, Prim, Record
from rlm_dsl.runtime.repl.module import RlmStep

from .conftest import ACTION_MARK, action, history_steps, make_lm, rlm_step, scripted_root


def _rows(store):
    return store.rows("rlm_iterations", order_by='"at"')


def test_sql_finds_the_needle_in_a_million_lines(big_store):
    def submit_what_sql_showed(prompt: str) -> str:
        found = re.search(r"the secret code is (\S+?)'", prompt)
        return f"SUBMIT({found.group(1)!r})" if found else "print('needle not in history')"

    steps = [
        "print(context)\nprint(context.preview(2))",
        "hits = sql(\"SELECT id, text FROM logs WHERE text LIKE '%secret code%'\")\nprint(hits)",
        submit_what_sql_showed,
    ]
    root, _ = make_lm(scripted_root(steps))
    sub, sub_engine = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step()).run(big_store, "logs", {"what": "the code"}, root, sub, "run-1")

    assert result.value == "7XQ-42"
    outputs = [row["output"] for row in result.trajectory]
    assert outputs[0].startswith("<context logs: 1,000,000 rows")
    assert "{'id': 734211, 'text': 'INFO the secret code is 7XQ-42'}" in outputs[1]
    assert outputs[2] == "FINAL: {'answer': '7XQ-42'}"
    assert sub_engine.calls == []
    stored = _rows(big_store)
    assert [(r["iteration"], r["depth"], r["parent_call_id"]) for r in stored] == [
        (1, 0, None), (2, 0, None), (3, 0, None)]
    assert stored[1]["code"].startswith("hits = sql(")


def _chain_sub_lm(system: str, user: str) -> str:
    """Sub-LM: writes a child's REPL actions, or answers llm_query prompts from their text."""
    if ACTION_MARK in system:
        if history_steps(user) == 0:
            return action("part = llm_query('Name the colour in: ' + context.lines(0, 2))\n"
                          "print(part)")
        return action("SUBMIT(part)")
    colour = re.search(r"colour=(\w+)", user)
    return f"the colour is {colour.group(1)}" if colour else "no colour"


def test_rlm_query_chain_to_depth_two_shares_the_budget(store):
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'row ' || range AS text "
                      "FROM range(10)")
    steps = [
        "a = rlm_query('colour=teal\\nshape=round', 'Which colour?')\n"
        "b = rlm_query(['colour=plum'], 'Which colour?')\nprint(a)\nprint(b)",
        "SUBMIT(a + ' / ' + b)",
    ]
    root, _ = make_lm(scripted_root(steps))
    sub, sub_engine = make_lm(_chain_sub_lm)
    step = RlmStep(rlm_step(depth=2, max_llm_calls=5))
    result = step.run(store, "logs", {"what": "x"}, root, sub, "run-2")

    # child 1: two action calls + one llm_query = 3 calls; child 2 gets its first action and
    # its llm_query, then its second action finds the shared budget spent and the child stops.
    assert result.value.startswith("the colour is teal / ")
    assert result.value.endswith("the sub-agent stopped: the step's budget of 5 LM calls is spent "
                                 "(5 used, a sub-agent step needs 1 more); aggregate in code or "
                                 "SUBMIT what you have — this sub-agent stops here")
    assert len(sub_engine.calls) == 5
    ids = {row["id"]: row for row in result.trajectory}
    assert ids["root.1.1"]["code"].startswith("rlm_query:") and ids["root.1.1"]["depth"] == 1
    assert ids["root.1.1.1"]["parent_call_id"] == "root.1.1"  # child iteration 1
    assert ids["root.1.1.1.1"]["depth"] == 2  # the child's llm_query
    assert ids["root.1.1.1.1"]["output"] == "the colour is teal"
    assert ids["root.1.1.2"]["output"] == "FINAL: {'answer': 'the colour is teal'}"
    assert ids["root.1.2.1"]["depth"] == 1 and ids["root.1.2.1"]["parent_call_id"] == "root.1.2"
    assert len(_rows(store)) == len(result.trajectory)


def test_rlm_query_is_refused_beyond_the_step_depth(store):
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    steps = ["print(rlm_query('a', 'b'))", "SUBMIT('done')"]
    root, _ = make_lm(scripted_root(steps))
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step(depth=1)).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert "NameError (line 1): name 'rlm_query' is not defined" in result.trajectory[0]["output"]
    assert result.value == "done"


def test_llm_query_batched_runs_concurrently(store):
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'item-' || range AS text "
                      "FROM range(1000)")
    steps = [
        "import time\nt0 = time.time()\n"
        "answers = llm_query_batched(['Length of: ' + c for c in context.chunks(10)])\n"
        "print(len(answers), round(time.time() - t0, 2))",
        "SUBMIT(sum(int(a) for a in answers))",
    ]
    root, _ = make_lm(scripted_root(steps))
    sub, engine = make_lm(lambda s, u: str(len(u.split("Length of: ", 1)[1])), delay_s=0.1)
    step = RlmStep(rlm_step(output=Prim("int"), max_llm_calls=100), max_workers=16)
    result = step.run(store, "logs", {"what": "x"}, root, sub, "r")

    expected = sum(len("\n".join(f"item-{i}" for i in range(s, s + 10)))
                   for s in range(0, 1000, 10))
    assert result.value == expected
    assert len(engine.calls) == 100
    span = max(end for _, end, _ in engine.calls) - min(start for start, _, _ in engine.calls)
    sequential = 100 * 0.1
    assert span < sequential / 3, f"100 calls took {span:.2f}s, sequential would be {sequential}s"
    overlap = max(sum(s <= t < e for s, e, _ in engine.calls) for t, _, _ in engine.calls)
    assert overlap >= 8, f"at most {overlap} sub-calls ran at the same time"


def test_submit_with_a_wrong_type_is_re_asked(store):
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    steps = [
        "SUBMIT('forty-two')",
        lambda prompt: "SUBMIT(42)" if "[Type Error] answer: expected" in prompt else "pass",
    ]
    root, _ = make_lm(scripted_root(steps))
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step(output=Prim("int"))).run(store, "logs", {"what": "x"}, root, sub,
                                                       "r")
    assert result.value == 42
    first = result.trajectory[0]
    assert first["error"].startswith("[Type Error] answer: expected int, got str")


def test_record_output_is_validated_and_returned_as_plain_data(store):
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    incident = Record("Incident", (Field("at", Prim("str")), Field("n", Prim("int"))))
    steps = ["SUBMIT([{'at': 'noon'}])",
             "SUBMIT([{'at': 'noon', 'n': 3}])"]
    root, _ = make_lm(scripted_root(steps))
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step(output=ListOf(incident))).run(store, "logs", {"what": "x"}, root,
                                                            sub, "r")
    assert result.value == [{"at": "noon", "n": 3}]
    assert "Field required" in result.trajectory[0]["error"]


def test_prompt_longer_than_the_sub_lm_window_is_refused_without_a_call(store):
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    steps = ["r = llm_query('word ' * 5000)\nprint(r)", "SUBMIT(r[:40])"]
    root, _ = make_lm(scripted_root(steps))
    sub, engine = make_lm(lambda s, u: "unused")
    step = RlmStep(rlm_step(), context_window=4096)
    result = step.run(store, "logs", {"what": "x"}, root, sub, "r")
    refused, first = result.trajectory[:2]
    assert refused["id"] == "root.1.1" and refused["output"] is None
    assert refused["error"].startswith(
        "[ERROR] prompt too long for the sub-LM: about 6,250 tokens, but its window is 4,096 "
        "tokens (3,584 left for a prompt).")
    assert first["output"].startswith(refused["error"])
    assert engine.calls == []


def test_llm_call_budget_error_is_visible_to_the_model(store):
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    steps = ["print(llm_query_batched(['a', 'b', 'c']))", "SUBMIT('ok')"]
    root, _ = make_lm(scripted_root(steps))
    sub, engine = make_lm(lambda s, u: "fine")
    result = RlmStep(rlm_step(max_llm_calls=2)).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert "the step's budget of 2 LM calls is spent (0 used, llm_query_batched needs 3 more)" \
        in result.trajectory[0]["output"]
    assert engine.calls == [] and result.value == "ok"


def test_iterations_used_up_fall_back_to_extract(store):
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")

    def lm(system: str, user: str) -> str:
        if ACTION_MARK in system:
            return action("print('still looking')")
        return "[[ ## answer ## ]]\nbest guess\n\n[[ ## completed ## ]]"

    root, _ = make_lm(lm)
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step(max_iterations=2)).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert result.value == "best guess"
    assert [r["iteration"] for r in result.trajectory] == [1, 2, 3]
    assert result.trajectory[-1]["output"] == "EXTRACT: {'answer': 'best guess'}"


def test_predictors_keep_their_names_and_instructions_speak_of_our_tools():
    step = RlmStep(rlm_step(depth=2))
    names = [name for name, _ in step.named_predictors()]
    assert names == ["generate_action", "extract"]
    text = step.generate_action.signature.instructions
    for phrase in ("`context`", "`sql(query)`", "`llm_query_batched(prompts)`",
                   "`rlm_query(sub_context, question)`", "Budget: 20 sub-LM calls"):
        assert phrase in text
    assert "rlm_query" not in RlmStep(rlm_step(depth=1)).generate_action.signature.instructions


def test_a_non_rlm_step_is_refused():
    from dataclasses import replace

    from rlm_dsl.errors import SpecError

    with pytest.raises(SpecError, match="step 'rlm-answer' is not an rlm step"):
        RlmStep(replace(rlm_step(), kind="map"))


def test_run_budget_exhaustion_stops_the_step_and_keeps_the_trajectory(store):
    from rlm_dsl.errors import BudgetExhausted

    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")

    def exhausted(system: str, user: str) -> str:
        raise BudgetExhausted("the run's budget of 1 LM call is spent")

    steps = ["print('looking')", "print(llm_query('hi'))", "SUBMIT('never')"]
    root, _ = make_lm(scripted_root(steps))
    sub, _ = make_lm(exhausted)
    with pytest.raises(BudgetExhausted, match="the run's budget of 1 LM call is spent"):
        RlmStep(rlm_step()).run(store, "logs", {"what": "x"}, root, sub, "r")
    stored = _rows(store)
    assert [(r["iteration"], r["depth"]) for r in stored] == [(1, 0), (1, 1)]
    assert stored[1]["error"] == "BudgetExhausted: the run's budget of 1 LM call is spent"


def test_missing_isolation_is_reported_not_silent(store, monkeypatch):
    from rlm_dsl.runtime.repl import isolation, sandbox

    bare = isolation.Isolation(
        "none", warnings=(isolation.NO_NETNS.format(why="unshare -n: not permitted"),))
    monkeypatch.setattr(sandbox, "isolation", lambda: bare)
    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    root, _ = make_lm(scripted_root(["SUBMIT('ok')"]))
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step()).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert result.value == "ok"
    assert result.warnings == ["REPL sandbox: no network namespace (unshare -n: not permitted); "
                               "network access is refused only by the audit hook, and the "
                               "scratch dir has no size limit"]


def test_a_dead_repl_ends_the_step_with_a_clear_error(store):
    from rlm_dsl.runtime.repl.module import ReplError
    from rlm_dsl.runtime.repl.sandbox import SandboxLimits

    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    root, _ = make_lm(scripted_root(["import os\nos._exit(9)"]))
    sub, _ = make_lm(lambda s, u: "unused")
    step = RlmStep(rlm_step(), limits=SandboxLimits(timeout_s=5))
    with pytest.raises(ReplError, match=r"^step 'rlm-answer': the REPL failed: the REPL process "
                       r"died \(exit status 9\); the REPL was restarted 3 times already"):
        step.run(store, "logs", {"what": "x"}, root, sub, "r")
    assert [r["output"][:40] for r in _rows(store)] == [
        "[Error] the REPL process died (exit stat"] * 3


def test_run_budget_exhaustion_of_the_root_lm_propagates(store):
    from rlm_dsl.errors import BudgetExhausted

    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")
    answers = iter([action("print('first')")])

    def root_fn(system: str, user: str) -> str:
        answer = next(answers, None)
        if answer is None:
            raise BudgetExhausted("the run's budget of 1 LM call is spent")
        return answer

    root, _ = make_lm(root_fn)
    sub, _ = make_lm(lambda s, u: "unused")
    with pytest.raises(BudgetExhausted, match="the run's budget of 1 LM call is spent"):
        RlmStep(rlm_step()).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert [r["output"] for r in _rows(store)] == ["first\n"]


def test_a_history_that_outgrows_the_root_window_ends_the_step_cleanly(store):
    from dspy.lm15 import ContextLengthError

    from rlm_dsl.runtime.repl.module import ReplError

    store.con.execute("CREATE TABLE logs AS SELECT 0 AS id, 'x' AS text")

    def root_fn(system: str, user: str) -> str:
        if history_steps(user) >= 2:
            raise ContextLengthError("prompt of 9000 tokens exceeds n_ctx 8192")
        return action("print('x' * 5000)")

    root, _ = make_lm(root_fn)
    sub, _ = make_lm(lambda s, u: "unused")
    with pytest.raises(ReplError, match=r"^step 'rlm-answer': the REPL history outgrew the root "
                       r"LM's context window after 3 iteration\(s\)"):
        RlmStep(rlm_step()).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert len(_rows(store)) == 2


def test_max_tokens_caps_the_root_actions_but_not_the_sub_calls(store):
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'row ' || range AS text "
                      "FROM range(3)")
    seen: dict[str, list] = {"root": [], "sub": []}

    def recording(kind: str, fn):
        def answer(request):
            seen[kind].append(request.config.max_tokens)
            return fn(request)
        return answer

    root, root_engine = make_lm(scripted_root(["print(llm_query('hi'))", "SUBMIT('done')"]))
    sub, sub_engine = make_lm(lambda s, u: "hello")
    root_engine.complete = recording("root", root_engine.complete)
    sub_engine.complete = recording("sub", sub_engine.complete)
    result = RlmStep(rlm_step(max_tokens=96)).run(store, "logs", {"what": "x"}, root, sub, "r")

    assert result.value == "done"
    assert seen == {"root": [96, 96], "sub": [None]}
