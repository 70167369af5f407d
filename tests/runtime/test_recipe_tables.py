"""A map over a ``use``d recipe keeps ONE table per sub-recipe step (its rows carry the parent
row's id in ``parent_id``), not one set of tables per row, and reuse, resume, --explain, replay
and --retry-failed still hold for it."""

from __future__ import annotations

import pytest

from rlm_dsl.errors import BudgetExhausted, RowsFailed
from rlm_dsl.runtime.store.store import SYSTEM_TABLES
from tests.runtime.test_recipe_map import COUNTER

MAIN = '''
    recipe main "Per file."
    input docs: files
    use "counter.rlm" as counter
    map docs -> counts: int using recipe counter with params={word: "ugly"}
    output counts
'''


def _files(tmp_path, n):
    folder = tmp_path / "docs"
    folder.mkdir(exist_ok=True)
    for i in range(n):
        (folder / f"f{i:02}.txt").write_text("\n".join(["ugly"] * (i % 4) + [f"fine {i}"] * 3))
    return folder


def _user_tables(query, db):
    return sorted(r[0] for r in query(db, "SELECT table_name FROM information_schema.tables "
                                          "WHERE table_schema = 'main'")  # views too
                  if r[0] not in SYSTEM_TABLES)


def test_a_use_map_keeps_one_table_per_sub_step_whatever_the_row_count(
        spec, run_spec, tmp_path, query):
    spec(COUNTER, "counter.rlm")
    main = spec(MAIN)
    db = tmp_path / "run.duckdb"
    result = run_spec(main, inputs={"docs": str(_files(tmp_path, 50))}, db=str(db))
    assert result.outputs["counts"] == [i % 4 for i in range(50)]
    tables = _user_tables(query, db)
    assert tables == ["counts", "docs", "map-counts__doc", "map-counts__n", "map-counts__parts",
                      "map-counts__total"]
    # every row of every sub-step is kept, keyed by the parent row
    per_row = query(db, 'SELECT parent_id, "total" FROM "map-counts__total" ORDER BY parent_id')
    assert per_row == [(i, i % 4) for i in range(50)]
    parts = query(db, 'SELECT count(DISTINCT parent_id), count(*) FROM "map-counts__parts"')
    assert parts == [(50, sum((3 + i % 4 + 1) // 2 for i in range(50)))]  # lines(2) chunks


def test_reuse_resume_explain_and_replay_hold_for_one_table_per_step(
        spec, run_spec, tmp_path, query, cli):
    spec(COUNTER, "counter.rlm")
    main = spec(MAIN)
    docs = _files(tmp_path, 12)
    fresh = run_spec(main, inputs={"docs": str(docs)}, db=str(tmp_path / "fresh.duckdb"))
    db = tmp_path / "run.duckdb"
    with pytest.raises(BudgetExhausted):
        run_spec(main, inputs={"docs": str(docs)}, db=str(db), max_calls=9)
    resumed = run_spec(main, inputs={"docs": str(docs)}, db=str(db))
    assert resumed.outputs == fresh.outputs
    # no finished call was made twice, and every row sits once in each folded table
    assert resumed.summary["calls"] + 9 == fresh.summary["calls"]
    assert query(db, 'SELECT count(*), count(DISTINCT parent_id) FROM "map-counts__total"') == [
        (12, 12)]
    assert _user_tables(query, db) == _user_tables(query, tmp_path / "fresh.duckdb")
    again = run_spec(main, inputs={"docs": str(docs)}, db=str(db))
    assert again.summary["calls"] == 0
    assert again.summary["steps"]["map-counts"]["action"] == "reused"
    # a change of the sub-recipe re-runs the map and leaves no stale sub-step rows behind
    spec(COUNTER.replace('"bad"', '"fine"').replace('{word: "ugly"}', ''), "counter.rlm")
    spec(MAIN.replace('with params={word: "ugly"}', ''))
    code, out, err = cli("run", main, "-i", f"docs={docs}", "--db", db, "--lm", "test",
                         "--explain", "--quiet")
    assert code == 0, err
    assert "map-counts  re-ran    its definition changed" in out + err
    assert query(db, 'SELECT sum("total") FROM "map-counts__total"') == [(36,)]
    assert query(db, 'SELECT count(*) FROM "map-counts__total"') == [(12,)]
    # a replay of the recorded run gives the same outputs with no model
    replayed = run_spec(main, inputs={"docs": str(docs)}, lm=f"replay:{db}",
                        db=str(tmp_path / "replayed.duckdb"))
    assert replayed.outputs["counts"] == [3] * 12


def test_a_reduce_over_a_use_map_cites_the_files_its_rows_came_from(spec, run_spec, tmp_path):
    spec(COUNTER, "counter.rlm")
    main = spec(MAIN.replace("output counts", '''reduce counts -> busiest: int by vote
    output busiest'''))
    docs = _files(tmp_path, 8)
    result = run_spec(main, inputs={"docs": str(docs)}, db=str(tmp_path / "run.duckdb"))
    assert result.outputs["busiest"] in (0, 1, 2, 3)
    cited = sorted(row["source"] for row in result.evidence["busiest"])
    voters = [i for i in range(8) if i % 4 == result.outputs["busiest"]]
    assert cited == [str(docs / f"f{i:02}.txt") for i in voters]


def test_retry_failed_retries_the_rows_that_failed_inside_a_sub_recipe(spec, run_spec,
                                                                       tmp_path, query):
    spec(COUNTER, "counter.rlm")
    main = spec(MAIN)
    docs = _files(tmp_path, 12)
    fresh = run_spec(main, inputs={"docs": str(docs)}, db=str(tmp_path / "fresh.duckdb"))
    db = tmp_path / "run.duckdb"
    with pytest.raises(RowsFailed) as failed:
        run_spec(main, inputs={"docs": str(docs)}, db=str(db), lm="test:fail=0.3,seed=4")
    assert "(map-n)" in str(failed.value) and " of row " in str(failed.value)
    kept = failed.value.result.outputs["counts"]
    assert len(kept) < 12  # a row whose sub-recipe lost a chunk is missing, not half counted
    retried = run_spec(main, inputs={"docs": str(docs)}, db=str(db), lm="test:fail=0.3,seed=4",
                       retry_failed=True)
    assert retried.outputs == fresh.outputs
    assert retried.summary["steps"]["map-counts"]["action"] == "resumed"
    assert query(db, "SELECT count(*) FROM failures WHERE NOT resolved") == [(0,)]
    assert query(db, 'SELECT count(*) FROM "map-counts__total"') == [(12,)]
