"""Escape suite, end to end: a scripted root LM emits the attacks as its actions in `rlm run`.

The run goes through the real executor (and, for the weak-sandbox refusal, the real CLI). Each
attack's evidence is checked on the host and in the run's store: the secret never reaches
``rlm_iterations``, no file is planted, the run finishes with the model's answer.
"""

from __future__ import annotations

import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.compile import compile_text
from rlm_dsl.runtime.executor import execute
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend
from rlm_dsl.runtime.repl import isolation, sandbox
from rlm_dsl.runtime.runinfo import RunOptions
from rlm_dsl.runtime.store.store import Store

from .conftest import ACTION_MARK, FnEngine, action, history_steps
from .test_escapes import TAMPER

SECRET = "e2e-secret-93b1"
SPEC = '''recipe probe "Look around."
input notes: lines
rlm notes -> answer: str with max_iterations=4, max_llm_calls=4 """
  Look around.
"""
output answer
'''
ATTACKS: list[str] = []  # the scripted root's actions, set per test


def _scripted(system: str, user: str) -> str:
    assert ACTION_MARK in system
    return action(ATTACKS[min(history_steps(user), len(ATTACKS) - 1)])


@pytest.fixture(scope="module", autouse=True)
def scripted_backend():
    register_backend("attacker", lambda model, options: ResolvedLM(
        model_id=model, engine=FnEngine(_scripted), context_window=8192))


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text(f"k\n{SECRET}\n")
    path.chmod(0o600)
    return path


def _run(tmp_path, attacks: list[str], **options):
    ATTACKS[:] = attacks
    notes = tmp_path / "notes.txt"
    notes.write_text("one\ntwo\n")
    db = str(tmp_path / "run.duckdb")
    result = execute(compile_text(SPEC, "probe.rlm"),
                     RunOptions(inputs={"notes": str(notes)}, lm="attacker", db=db, **options))
    with Store.open(db) as store:
        trail = " ".join(str(row) for row in store.rows("rlm_iterations", order_by="\"at\""))
    return result, trail


strong = pytest.mark.skipif(not isolation.isolation().strong, reason="needs kernel isolation")


@strong
def test_tampering_then_reading_and_exec_end_to_end(tmp_path, secret):
    planted = tmp_path / "planted"
    result, trail = _run(tmp_path, [
        TAMPER,
        f"print(open({str(secret)!r}).read())",
        f"import os\nos.execv('/usr/bin/touch', ['touch', {str(planted)!r}])",
        "SUBMIT('done')",
    ])
    assert result.outputs == {"answer": "done"}
    assert "x7fELF" in trail  # the hook was off
    assert SECRET not in trail and "No such file or directory" in trail
    assert "Operation not permitted" in trail and not planted.exists()


@strong
def test_the_cte_path_trick_end_to_end(tmp_path, secret):
    trick = f'SELECT * FROM (WITH "{secret}" AS (SELECT 1) SELECT 1) s, "{secret}" t'
    result, trail = _run(tmp_path, [f"print(sql({trick!r}))", "SUBMIT('done')"])
    assert result.outputs == {"answer": "done"}
    assert SECRET not in trail and "[Error]" in trail


@strong
def test_a_protocol_flood_end_to_end_costs_one_restart(tmp_path):
    flood = ("import sys\nframe = sys._getframe()\nwhile frame.f_code.co_name != 'main':\n"
             "    frame = frame.f_back\nframe.f_locals['channel']._out.write(b'x' * (40 << 20))")
    result, trail = _run(tmp_path, [flood, "SUBMIT('after')"])
    assert result.outputs == {"answer": "after"}
    assert "the REPL worker broke the protocol" in trail


WEAK = isolation.Isolation("none", warnings=(isolation.WEAK.format(
    why="bubblewrap (`bwrap`) is not installed"),))


@pytest.fixture
def weak(monkeypatch):
    monkeypatch.delenv("RLM_ALLOW_WEAK_SANDBOX", raising=False)
    monkeypatch.setattr(isolation, "isolation", lambda: WEAK)
    monkeypatch.setattr(sandbox, "isolation", lambda: WEAK)


def test_a_weak_sandbox_refuses_rlm_steps(tmp_path, weak):
    with pytest.raises(isolation.WeakSandbox, match=r"^REPL sandbox is weak: bubblewrap "
                       r"\(`bwrap`\) is not installed; .* pass --allow-weak-sandbox"):
        _run(tmp_path, ["SUBMIT('never')"])


def test_allow_weak_sandbox_runs_and_says_so(tmp_path, weak):
    result, _ = _run(tmp_path, ["SUBMIT('weak but allowed')"], allow_weak_sandbox=True)
    assert result.outputs == {"answer": "weak but allowed"}
    assert WEAK.warnings[0] in result.warnings


def test_the_machine_wide_switch_allows_a_weak_sandbox(tmp_path, weak, monkeypatch):
    monkeypatch.setenv("RLM_ALLOW_WEAK_SANDBOX", "1")
    result, _ = _run(tmp_path, ["SUBMIT('allowed by the environment')"])
    assert result.outputs == {"answer": "allowed by the environment"}
    assert WEAK.warnings[0] in result.warnings


def test_rlm_run_refuses_then_accepts_with_the_flag(tmp_path, weak, capsys):
    ATTACKS[:] = ["SUBMIT('cli')"]
    spec, notes = tmp_path / "probe.rlm", tmp_path / "notes.txt"
    spec.write_text(SPEC)
    notes.write_text("one\n")
    argv = ["run", str(spec), "-i", f"notes={notes}", "--lm", "attacker", "-q"]
    assert main(argv) == 1
    assert "REPL sandbox is weak" in capsys.readouterr().err
    assert main([*argv, "--allow-weak-sandbox"]) == 0
    captured = capsys.readouterr()
    assert "cli" in captured.out and "REPL sandbox is weak" in captured.err
