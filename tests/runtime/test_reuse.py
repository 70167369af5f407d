"""Content-keyed reuse: a stored step result is reused only when its fingerprint matches; a change
of param, input, prompt or model re-runs exactly the affected steps, and ``--explain`` says why."""

from __future__ import annotations

import json

TWO_MAPS = '''
    recipe two "Two counts over the same pieces."
    param kw: str = "bad"
    input items: lines
    chunk items -> pieces by lines(1)
    map pieces -> hits: int """
      COUNT "{{ kw }}"
      {{ chunk.text }}
    """
    map pieces -> oks: int """
      COUNT "ok"
      {{ chunk.text }}
    """
    reduce hits -> total_hits: int by sql "SELECT sum(hits) FROM {{ input }}"
    reduce oks -> total_oks: int by sql "SELECT sum(oks) FROM {{ input }}"
    output total_hits, total_oks
'''


def _run(cli, path, items, db, *extra):
    code, out, err = cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", db,
                         "--json", "--explain", *extra)
    assert code == 0, err
    obj = json.loads(out)
    steps = {k: (v["action"], v["reason"]) for k, v in obj["summary"]["steps"].items()}
    return obj["outputs"], obj["summary"]["calls"], steps


def _fresh(cli, path, items, tmp_path, *extra):
    """The answer a fresh database gives."""
    fresh = tmp_path / f"fresh-{len(list(tmp_path.glob('fresh-*')))}.duckdb"
    return _run(cli, path, items, fresh, *extra)[0]


def test_an_unchanged_run_reuses_every_step_and_says_so(tmp_path, spec, items, cli):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    first, calls, steps = _run(cli, path, items, db)
    assert calls == 200 and first == {"total_hits": 25, "total_oks": 75}
    assert set(steps.values()) == {("ran", "no stored result")}
    again, calls, steps = _run(cli, path, items, db)
    assert (again, calls) == (first, 0)
    assert set(steps.values()) == {("reused", "unchanged")}


def test_a_changed_param_reruns_only_the_steps_that_read_it(tmp_path, spec, items, cli):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    _run(cli, path, items, db)
    outputs, calls, steps = _run(cli, path, items, db, "-p", "kw=item")
    assert outputs == {"total_hits": 100, "total_oks": 75}
    assert outputs == _fresh(cli, path, items, tmp_path, "-p", "kw=item")
    assert calls == 100  # the hits map only
    assert steps["map-hits"] == ("re-ran", "param 'kw' changed")
    assert steps["reduce-total_hits"] == ("re-ran", "upstream 'map-hits' changed")
    assert steps["map-oks"] == steps["reduce-total_oks"] == ("reused", "unchanged")


def test_a_changed_input_file_replaces_the_old_rows(tmp_path, spec, write_items, cli, query):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    items = write_items(100)
    _run(cli, path, items, db)
    write_items(8)  # the same path, new content
    outputs, calls, steps = _run(cli, path, items, db)
    assert outputs == {"total_hits": 2, "total_oks": 6}
    assert steps["input-items"] == ("re-ran", "its input files changed")
    assert calls == 0  # the 8 lines were asked before: the LM-call cache answers them
    assert query(db, "SELECT count(*) FROM items") == [(8,)]
    assert query(db, "SELECT count(*) FROM hits") == [(8,)]


def test_a_changed_prompt_reruns_the_step_and_those_below(tmp_path, spec, items, cli):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    _run(cli, path, items, db)
    path.write_text(path.read_text().replace('COUNT "ok"', 'COUNT "item"'))
    outputs, calls, steps = _run(cli, path, items, db)
    assert outputs == {"total_hits": 25, "total_oks": 100} == _fresh(cli, path, items, tmp_path)
    assert calls == 100
    assert steps["map-oks"] == ("re-ran", "its definition changed")
    assert steps["map-hits"] == ("reused", "unchanged")


def test_a_changed_model_reruns_the_lm_steps(tmp_path, spec, items, cli):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    _run(cli, path, items, db)
    code, out, err = cli("run", path, "-i", f"items={items}", "--lm", "test:seed=7",
                         "--db", db, "--json")
    summary = json.loads(out)["summary"]
    assert code == 0 and summary["calls"] == 200, err
    assert summary["steps"]["map-hits"] == {"action": "re-ran",
                                            "reason": "its model or LM settings changed"}
    assert summary["steps"]["chunk-pieces"]["action"] == "reused"


def test_explain_prints_one_line_per_step(tmp_path, spec, items, cli):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    _run(cli, path, items, db)
    code, _, err = cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", db,
                       "-p", "kw=ok", "--explain")
    assert code == 0
    assert "map-hits           re-ran    param 'kw' changed" in err.splitlines()
    assert "map-oks            reused    unchanged" in err.splitlines()


def test_a_run_stopped_before_a_changed_step_shows_no_stale_output(tmp_path, spec, write_items,
                                                                   cli, query):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    items = write_items(100)
    _run(cli, path, items, db)
    write_items(120)
    code, out, _ = cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", db,
                       "--max-calls", "10", "--json")
    assert code == 3
    assert json.loads(out)["outputs"] == {"total_hits": None, "total_oks": None}
    # map-oks runs beside map-hits (one generation), so the stop may find it started: its old
    # table was dropped and whatever it holds now was written by this run, never reused
    steps = json.loads(out)["summary"]["steps"]
    assert steps["map-oks"]["action"] == "re-ran", steps
    assert query(db, "SELECT count(*) FROM step_fingerprints WHERE step = 'map-oks' "
                     "AND status = 'done'") == [(0,)]


def test_a_budget_stop_after_a_change_counts_what_is_missing_now(tmp_path, spec, write_items,
                                                                 cli):
    path, db = spec(TWO_MAPS), tmp_path / "run.duckdb"
    items = write_items(100)
    _run(cli, path, items, db)
    path.write_text(path.read_text().replace('COUNT "ok"', 'COUNT "item"'))
    code, _, err = cli("run", path, "-i", f"items={items}", "--lm", "test", "--db", db,
                       "--max-calls", "40")
    assert code == 3
    assert f"step 'map-oks' ({path}:9:1): 40 of 100 rows done, 60 missing" in err
    assert "--max-calls 73" in err  # 60 missing calls and a 20 % margin
