"""An `rlm` recipe through the real executor: the call gate records every depth in `lm_calls`."""

from __future__ import annotations

import re

import pytest

from rlm_dsl.compile import compile_text
from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.runtime.executor import execute
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend
from rlm_dsl.runtime.runinfo import RunOptions
from rlm_dsl.runtime.store.store import Store

from .conftest import ACTION_MARK, FnEngine, action, history_steps

SPEC = '''recipe vault "Find the vault code."
param what: str = "the vault code"
input notes: lines
rlm notes -> answer: str with max_iterations=4, max_llm_calls=6, depth=2 """
  Find {{ what }}.
"""
output answer
'''


def _scripted(system: str, user: str) -> str:
    """Root: search, then ask a sub-agent about the hit; the sub-agent asks llm_query."""
    if ACTION_MARK not in system:
        code = re.search(r"code (\w+)", user)
        return f"The code is {code.group(1)}." if code else "No code."
    if "Find the vault code." not in user:  # not the root's task: the child's
        return action("print(llm_query('Read: ' + context.lines(0, 5)))" if history_steps(user)
                      == 0 else "SUBMIT(llm_query('Read: ' + context.lines(0, 5)))")
    steps = [
        "hits = context.search('vault')\nprint(hits)",
        "answer = rlm_query([h['text'] for h in hits], 'Which code is in these lines?')\n"
        "print(answer)",
        "SUBMIT(answer)",
    ]
    return action(steps[min(history_steps(user), len(steps) - 1)])


@pytest.fixture(scope="module", autouse=True)
def scripted_backend():
    register_backend("replscript", lambda model, options: ResolvedLM(
        model_id=model, engine=FnEngine(_scripted), context_window=8192))


def _run(tmp_path, **options):
    notes = tmp_path / "notes.txt"
    notes.write_text("day one\nthe vault code K9Q is taped under the desk\nday three\n")
    plan = compile_text(SPEC, "vault.rlm")
    db = str(tmp_path / "run.duckdb")
    result = execute(plan, RunOptions(inputs={"notes": str(notes)}, lm="replscript", db=db,
                                      **options))
    return result, db


def test_rlm_recipe_records_every_depth_through_the_gate(tmp_path):
    result, db = _run(tmp_path)
    assert result.outputs == {"answer": "The code is K9Q."}
    with Store.open(db) as store:
        calls = store.con.execute(
            "SELECT depth, parent_id, count(*) FROM lm_calls WHERE step = 'rlm-answer' "
            "GROUP BY ALL ORDER BY ALL").fetchall()
        rows = store.con.execute(
            "SELECT depth, parent_call_id, iteration FROM rlm_iterations ORDER BY \"at\""
        ).fetchall()
    assert calls == [
        (0, None, 3),  # the root's three actions
        (1, "root.2.1", 2),  # the child's two actions, under the rlm_query call
        (2, "root.2.1.1.1", 1),  # the child's llm_query in its first step
        (2, "root.2.1.2.1", 1),  # and in its second
    ]
    assert rows == [
        (0, None, 1),
        (2, "root.2.1.1", 1), (1, "root.2.1", 1), (2, "root.2.1.2", 1), (1, "root.2.1", 2),
        (1, "root.2", 1), (0, None, 2), (0, None, 3),
    ]


def test_budget_exhaustion_inside_an_rlm_step_keeps_the_finished_iterations(tmp_path):
    with pytest.raises(BudgetExhausted) as caught:
        _run(tmp_path, max_calls=4)
    assert str(caught.value).startswith("budget exhausted: --max-calls 4 reached")
    with Store.open(str(tmp_path / "run.duckdb")) as store:
        assert store.count("lm_calls") == 4
        rows = store.con.execute("SELECT depth, parent_call_id, iteration FROM rlm_iterations "
                                 "ORDER BY \"at\"").fetchall()
    assert rows == [(0, None, 1), (2, "root.2.1.1", 1), (1, "root.2.1", 1), (1, "root.2", 1)]
