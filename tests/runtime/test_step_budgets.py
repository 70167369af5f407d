"""Step budgets (max_calls, max_total_tokens, max_calls_per_depth); what a run leaves behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_resume import ITEMS_SPEC  # tests/runtime is on sys.path

from rlm_dsl.errors import BudgetExhausted
from rlm_dsl.runtime.lm.budget import Budget
from rlm_dsl.runtime.lm.gate import reserve_all


def capped(spec, options: str) -> Path:
    """The resume tests' items spec with ``options`` added to its map step (``map-n``, line 4)."""
    return spec(ITEMS_SPEC.replace("with retries=1", f"with retries=1, {options}"))


def test_step_max_calls_stops_the_run_and_the_same_command_goes_on(tmp_path, spec, items, cli,
                                                                    query):
    path = capped(spec, "max_calls=40")
    db = tmp_path / "run.duckdb"
    args = ("run", path, "--input", f"items={items}", "--lm", "test", "--db", db)
    code, out, err = cli(*args)
    assert code == 3
    assert err.splitlines() == [
        f"budget exhausted: max_calls=40 of step 'map-n' ({path}:4:1) reached",
        f"step 'map-n' ({path}:4:1): 40 of 100 rows done, 60 missing",
        f"step 'reduce-total' ({path}:8:1): not run",
        f"finished results are kept in {db}",
        "to go on, run the same command again (finished calls are cached and free; the step's "
        "cap counts each run's new calls) or raise the step's cap in the spec",
        f"resume with: rlm run {path} --input items={items} --lm test --db {db}",
    ]
    assert query(db, "SELECT count(*) FROM n") == [(40,)]
    assert cli(*args)[0] == 3
    assert query(db, "SELECT count(*) FROM n") == [(80,)]
    code, out, err = cli(*args, "--json")
    assert code == 0
    assert '"total": 25' in out and '"rows": 100' in out
    assert query(db, "SELECT count(*) FROM lm_calls WHERE NOT cached") == [(100,)]


def test_the_run_cap_still_applies_and_a_refused_step_claim_costs_the_run_nothing(
        tmp_path, spec, items, cli, query):
    path = capped(spec, "max_calls=20")
    db = tmp_path / "run.duckdb"
    code, _, err = cli("run", path, "--input", f"items={items}", "--lm", "test", "--db", db,
                       "--max-calls", "7")
    assert code == 3
    assert err.splitlines()[0] == "budget exhausted: --max-calls 7 reached"
    assert err.splitlines()[-1].endswith("--max-calls 112")
    assert query(db, "SELECT count(*) FROM n") == [(7,)]
    run, step = Budget(max_calls=10), Budget(max_calls=1, step="step 'x'")
    step.reserve(0, priced=False)
    with pytest.raises(BudgetExhausted, match="max_calls=1 of step 'x' reached"):
        reserve_all((run, step), 0, False, 0)
    assert (run.calls, step.calls) == (0, 1)


def test_step_token_cap_counts_prompt_and_answer_tokens(spec, items, run_spec):
    path = capped(spec, "max_total_tokens=2000")
    with pytest.raises(BudgetExhausted) as caught:  # one worker: no call in flight at the check
        run_spec(path, inputs={"items": str(items)}, concurrency=1)
    first = str(caught.value).splitlines()[0]
    assert first.startswith(f"budget exhausted: max_total_tokens=2000 of step 'map-n' ({path}:4:1)"
                            " reached (")
    used = int(first.rsplit("(", 1)[1].split()[0])
    assert 1500 < used <= 2000


def test_calls_per_depth_caps_each_recursion_level(tmp_path, spec, cli, query):
    words = " ".join(f"word{i} bad" if i % 5 == 0 else f"word{i}" for i in range(400))
    doc = tmp_path / "doc.txt"
    doc.write_text(words + "\n")
    body = '''
        recipe dp "Count."
        input doc: lines
        map doc -> n: int {options}"""
          COUNT "bad"
          {{{{ chunk.text }}}}
        """
        output n
    '''
    free = spec(body.format(options=""), "free.rlm")
    limited = spec(body.format(options="with max_calls_per_depth=3 "), "capped.rlm")
    db = tmp_path / "free.duckdb"
    assert cli("run", free, "--input", f"doc={doc}", "--lm", "test:window=450", "--db", db)[0] == 0
    assert query(db, "SELECT depth, count(*) FROM lm_calls GROUP BY 1") == [(2, 4)]
    db = tmp_path / "capped.duckdb"
    code, _, err = cli("run", limited, "--input", f"doc={doc}", "--lm", "test:window=450",
                       "--db", db)
    assert code == 3
    assert err.splitlines()[0] == (f"budget exhausted: max_calls_per_depth=3 of step 'map-n' "
                                   f"({limited}:3:1) reached at depth 2")
    assert query(db, "SELECT depth, count(*) FROM lm_calls GROUP BY 1") == [(2, 3)]


def test_a_run_closes_its_lm_back_ends_even_when_a_cap_stops_it(spec, items, run_spec,
                                                                monkeypatch):
    from rlm_dsl.runtime.lm import testing

    closed: list[str] = []
    monkeypatch.setattr(testing.TestEngine, "close", lambda self: closed.append("test"))
    path = capped(spec, "max_calls=3")
    with pytest.raises(BudgetExhausted):
        run_spec(path, inputs={"items": str(items)})
    assert closed == ["test"]


def test_a_run_leaves_nothing_in_dspys_history(spec, items, run_spec):
    from dspy.clients import base_lm

    before = len(base_lm.GLOBAL_HISTORY)
    path = spec(ITEMS_SPEC)
    assert run_spec(path, inputs={"items": str(items)}).summary["calls"] == 100
    assert len(base_lm.GLOBAL_HISTORY) == before  # lm_calls is the history


def test_a_step_dollar_cap_without_a_price_is_said_once(spec, items, cli):
    path = capped(spec, "max_usd=0.5")
    code, _, err = cli("run", path, "--input", f"items={items}", "--lm", "test")
    assert code == 0
    warning = (f"warning: no price is known for the LM of step 'map-n' ({path}:4:1): its max_usd "
               "cannot be enforced; only its call and token caps apply")
    assert err.splitlines().count(warning) == 1


def test_an_rlm_step_cap_stops_its_repl(tmp_path, run_spec):
    root = Path(__file__).parents[2]
    text = (root / "recipes" / "handbook_qa.rlm").read_text()
    assert 'timeout=30 """' in text
    path = tmp_path / "capped_qa.rlm"
    path.write_text(text.replace('timeout=30 """', 'timeout=30, max_calls=1 """'))
    with pytest.raises(BudgetExhausted) as caught:
        run_spec(path, db=str(tmp_path / "run.duckdb"), lm_all=True,
                 inputs={"handbook": str(root / "recipes" / "data" / "handbook.md")})
    assert str(caught.value).startswith(
        f"budget exhausted: max_calls=1 of step 'rlm-answer' ({path}:14:1) reached")
