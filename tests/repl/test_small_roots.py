"""A free-form step a 0.5B root can drive: bare SQL runs as sql(...), a repeated failure is not
run again but answered with a sharper hint, and the extract fallback never answers with input
text pasted as it is."""

from __future__ import annotations

from rlm_dsl.runtime.repl.actions import as_sql_call, raw_context
from rlm_dsl.runtime.repl.module import RlmStep

from .conftest import ACTION_MARK, action, make_lm, rlm_step, scripted_root

LOGS = ("CREATE TABLE logs AS SELECT i AS id, 'host-' || i || ' ERROR disk quota exceeded on "
        "volume /data/' || i AS text FROM range(40) t(i)")


def test_a_bare_sql_cell_becomes_a_sql_call():
    assert as_sql_call("SELECT count(*) FROM logs;") == 'print(sql(\'SELECT count(*) FROM logs\'))'
    assert as_sql_call("select text\nfrom logs where id = 3") == \
        "print(sql('select text\\nfrom logs where id = 3'))"
    assert as_sql_call("print(1)") == "print(1)"
    assert as_sql_call("SELECT 1; SELECT 2") == "SELECT 1; SELECT 2"  # two statements: as is


def test_the_root_writing_bare_sql_gets_rows_back(store):
    store.con.execute(LOGS)
    root, _ = make_lm(scripted_root([
        "SELECT count(*) AS n FROM logs",
        lambda user: f"SUBMIT(answer={'40' if '40' in user else 'none'!r})",
    ]))
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step()).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert result.value == "40"
    assert "[Error]" not in result.trajectory[0]["output"]


def test_an_action_identical_to_a_failed_one_is_not_run_again(store):
    store.con.execute(LOGS)
    root, _ = make_lm(scripted_root(["print(undefined_name)", "print(undefined_name)",
                                     "SUBMIT(answer='done')"]))
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step()).run(store, "logs", {"what": "x"}, root, sub, "r")
    first, second = result.trajectory[0]["output"], result.trajectory[1]["output"]
    assert "NameError" in first
    assert second.startswith("[Error] Not run: this is the same code as iteration 1")
    assert "Define every name before using it" in second


def test_the_extract_fallback_drops_raw_input_text(store):
    store.con.execute(LOGS)
    pasted = "\n".join(f"host-{i} ERROR disk quota exceeded on volume /data/{i}"
                       for i in range(8))

    def lm(system: str, user: str) -> str:
        if ACTION_MARK in system:
            return action("print('still looking')")
        return f"[[ ## answer ## ]]\n{pasted}\n\n[[ ## completed ## ]]"

    root, _ = make_lm(lm)
    sub, _ = make_lm(lambda s, u: "unused")
    result = RlmStep(rlm_step(max_iterations=2)).run(store, "logs", {"what": "x"}, root, sub, "r")
    assert result.value is None
    assert "dropped answer: raw input text, not an answer" in result.trajectory[-1]["output"]


def test_raw_context_needs_a_long_copy():
    rows = {"alpha beta gamma delta epsilon", "zeta eta theta iota kappa lambda"}

    def search(pattern: str, limit: int) -> list:
        import re

        return [r for r in rows if re.search(pattern, r)][:limit]

    assert not raw_context("alpha beta gamma delta epsilon", search)  # short: an answer
    long_copy = "\n".join(sorted(rows) * 4)
    assert raw_context(long_copy, search)
    assert not raw_context("The disk filled up. " * 12, search)
