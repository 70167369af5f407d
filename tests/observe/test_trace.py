"""The trace tree and its JSON form over a store written following the schema (see conftest)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.errors import InputError
from rlm_dsl.runtime.observe.nodes import Node
from rlm_dsl.runtime.observe.trace import load_trace, open_trace
from rlm_dsl.runtime.store.store import Store


def _call_ids(tree: dict[str, Any]) -> list[str]:
    found = [tree["detail"]["call_id"]] if tree["kind"] == "call" else []
    for child in tree["children"]:
        found.extend(_call_ids(child))
    return found


def _find(node: Node, node_id: str) -> Node:
    return next(n for n in node.walk() if n.id == node_id)


def _path(node: Node, node_id: str) -> list[str]:
    if node.id == node_id:
        return [node.id]
    for child in node.children:
        rest = _path(child, node_id)
        if rest:
            return [node.id, *rest]
    return []


def test_every_call_appears_once_in_tree_and_json(synthetic_db) -> None:
    path, expected = synthetic_db
    trace = open_trace(str(path))
    ids = sorted(c["call_id"] for c in expected["calls"])
    assert sorted(_call_ids(trace.to_json()["tree"])) == ids
    json_ids = _call_ids(json.loads(json.dumps(trace.to_json(), default=str))["tree"])
    assert sorted(json_ids) == ids
    assert trace.root.stats.calls == len(ids)


def test_totals_match_the_store(synthetic_db) -> None:
    path, _ = synthetic_db
    trace = open_trace(str(path))
    with Store.open(path) as store:
        calls, tokens, cost = store.con.execute(
            "SELECT count(*) FILTER (WHERE NOT cached), sum(prompt_tokens + completion_tokens), "
            "sum(cost_usd) FROM lm_calls").fetchone()
        per_step = dict(store.con.execute(
            "SELECT step, count(*) FILTER (WHERE NOT cached) FROM lm_calls GROUP BY 1").fetchall())
    assert (trace.root.stats.calls, trace.root.stats.tokens) == (calls, tokens)
    assert trace.root.stats.cost_usd == pytest.approx(cost)
    assert {n.id: n.stats.calls for n in trace.step_nodes() if n.stats.calls} == per_step


def test_map_chunks_keep_split_calls_and_failures(synthetic_db) -> None:
    trace = open_trace(str(synthetic_db[0]))
    step = _find(trace.root, "map-notes")
    assert [c.label for c in step.children] == ["chunk 0", "chunk 1", "chunk 2"]
    (level,) = step.children[1].children  # a split row: its calls under their split level
    assert (level.label, [c.depth for c in level.children]) == ("split 1 (2 piece calls)", [1, 1])
    failed = step.children[2]
    assert failed.own.failures == 1 and failed.stats.errors == 1
    assert failed.detail["failures"][0]["error"] == "TimeoutError: slow"


def test_tree_reduce_has_levels_and_batches(synthetic_db) -> None:
    step = _find(open_trace(str(synthetic_db[0])).root, "reduce-summary")
    assert [(lvl.label, len(lvl.children)) for lvl in step.children] == [
        ("level 0", 3), ("level 1", 2), ("level 2", 1)]


def test_rlm_depth_two_calls_hang_on_their_repl_rows(synthetic_db) -> None:
    root = open_trace(str(synthetic_db[0])).root
    chunk = "rlm-answer.chunk-0"
    deep = "call-abcdef01-15"
    assert _path(root, deep) == [
        root.id, "rlm-answer", chunk, f"{chunk}.root.2", f"{chunk}.root.2.1",
        f"{chunk}.root.2.1.2", f"{chunk}.root.2.1.2.1", deep]
    # the child's own action calls go to its iterations, by time
    assert [c.id for c in _find(root, f"{chunk}.root.2.1.1").children] == ["call-abcdef01-13"]
    first = _find(root, f"{chunk}.root.1")
    assert [c.id for c in first.children] == ["call-abcdef01-10", f"{chunk}.root.1.1"]
    assert _find(root, f"{chunk}.root.1.1").detail["tool"] == "llm_query"
    assert _find(root, f"{chunk}.root.3").own.errors == 1


def test_filters_step_failed_depth(synthetic_db) -> None:
    trace = open_trace(str(synthetic_db[0]))
    assert [n.id for n in trace.filter(step="notes").root.children] == ["map-notes"]
    only_failed = trace.filter(failed=True)
    assert [n.id for n in only_failed.root.children] == ["map-notes", "rlm-answer"]
    assert [c.label for c in only_failed.root.children[0].children] == ["chunk 2"]
    # a failed node keeps its whole subtree: the calls that led to the failure
    assert [c.id for c in only_failed.root.children[0].children[0].children] == [
        "call-abcdef01-3"]
    shallow = trace.filter(depth=0)
    assert all(n.depth in (None, 0) for n in shallow.root.walk() if n.kind != "run")
    assert shallow.root.stats.calls == 8  # map chunks 0 and 2, reduce level 0 x3, 3 root actions
    assert trace.filter(depth=1).root.stats.calls == 15
    with pytest.raises(InputError, match=r"no step 'nope' in this run \(steps: input-doc, "):
        trace.filter(step="nope")


def test_empty_database_is_an_input_error(tmp_path) -> None:
    with Store.open(tmp_path / "empty.duckdb") as store, \
            pytest.raises(InputError, match="holds no run"):
        load_trace(store)


def test_cli_tree_json_html_and_errors(synthetic_db, tmp_path, capsys) -> None:
    path, expected = synthetic_db
    assert main(["trace", str(path)]) == 0
    text = capsys.readouterr().out
    assert "rlm_query root.2.1" in text and "llm_query root.2.1.2.1" in text
    assert "failure TimeoutError: slow (attempts 3)" in text
    assert main(["trace", str(path), "--json", "--step", "rlm-answer"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(_call_ids(data["tree"])) == sum(
        c["step"] == "rlm-answer" for c in expected["calls"])
    report = tmp_path / "r.html"
    assert main(["trace", str(path), "--html", str(report)]) == 0
    assert "<svg" in report.read_text()
    assert main(["trace", str(tmp_path / "missing.duckdb")]) == 2
    assert "missing.duckdb: no such file" in capsys.readouterr().err


def test_real_run_with_map_tree_reduce_and_depth_two_rlm(real_run, capsys) -> None:
    with Store.open(real_run) as store:
        calls = store.con.execute(
            "SELECT call_id, step, depth, parent_id FROM lm_calls ORDER BY call_id").fetchall()
    trace = open_trace(str(real_run))
    data = json.loads(json.dumps(trace.to_json(), default=str))
    assert sorted(_call_ids(data["tree"])) == sorted(c[0] for c in calls)
    assert sorted(_call_ids(trace.root.to_json())) == sorted(c[0] for c in calls)
    steps = {n.id: n for n in trace.step_nodes()}
    assert [len(c.children) for c in steps["map-n"].children] == [1, 1, 1, 1]
    assert [(lvl.label, len(lvl.children)) for lvl in steps["reduce-total"].children] == [
        ("level 0", 2), ("level 1", 1)]
    deep = [c for c in calls if c[2] == 2]
    assert len(deep) == 2
    chunk = "rlm-answer.chunk-0"
    for call_id, _, _, parent in deep:  # parent: the llm_query row, e.g. root.2.1.1.1
        path = _path(trace.root, f"call-{call_id}")
        assert path[-2] == f"{chunk}.{parent}"
        assert path[3:5] == [f"{chunk}.root.2", f"{chunk}.root.2.1"]
    assert main(["trace", str(real_run), "--depth", "1", "--json"]) == 0
    shallow = json.loads(capsys.readouterr().out)
    assert sorted(_call_ids(shallow["tree"])) == sorted(c[0] for c in calls if c[2] <= 1)


def test_sub_recipe_steps_nest_under_their_map_and_cache_hits_are_not_calls(tmp_path) -> None:
    def call(n: int, step: str, cached: bool) -> dict[str, Any]:
        return {"call_id": f"r-{n}", "run_id": "r", "step": step, "chunk_id": 0, "depth": 0,
                "model": "test", "messages": "[]", "response": "ok",
                "prompt_tokens": 0 if cached else 50, "completion_tokens": 0 if cached else 5,
                "latency_s": 0.1, "cached": cached, "started_at": f"2026-01-01 00:00:0{n}"}

    with Store.open(None) as store:
        store.insert_rows("runs", [{"run_id": "r", "recipe": "digest", "status": "done"}])
        store.insert_rows("step_status", [
            {"run_id": "r", "step": s, "status": "done"} for s in
            ("input-rows", "map-t__0__input-doc", "map-t__0__map-n", "map-t__1__input-doc",
             "map-t__1__map-n", "map-t", "reduce-all")])
        store.insert_rows("lm_calls", [call(1, "map-t__0__map-n", False),
                                       call(2, "map-t__1__map-n", True),
                                       call(3, "reduce-all", False)])
        trace = load_trace(store)
    assert [n.id for n in trace.step_nodes()] == ["input-rows", "map-t", "reduce-all"]
    mapped = trace.step_nodes()[1]
    assert [(r.label, [s.label for s in r.children]) for r in mapped.children] == [
        ("row 0", ["input-doc", "map-n"]), ("row 1", ["input-doc", "map-n"])]
    assert (mapped.stats.calls, mapped.stats.cached, mapped.stats.tokens) == (1, 1, 55)
    assert _find(trace.root, "call-r-2").label == "call r-2 (cached)"
    assert (trace.root.stats.calls, trace.root.stats.cached) == (2, 1)


def test_html_plan_graph_from_the_recipe(real_run, tmp_path) -> None:
    chain, real = tmp_path / "chain.html", tmp_path / "real.html"
    assert main(["trace", str(real_run), "--html", str(chain)]) == 0
    spec = real_run.parent / "traced.rlm"
    assert main(["trace", str(real_run), "--html", str(real), "--recipe", str(spec)]) == 0
    # execution order: a chain of 5 steps; the plan: input feeds both chunk and rlm
    assert chain.read_text().count("<line ") == 4
    svg = real.read_text().partition('<svg id="plan-graph"')[2].partition("</svg>")[0]
    boxes = dict(re.findall(r'data-step="([^"]+)"><rect class="[^"]+" x="\d+" y="(\d+)"', svg))
    assert boxes["chunk-parts"] == boxes["rlm-answer"] != boxes["input-notes"]
    assert svg.count("<line ") == 4
