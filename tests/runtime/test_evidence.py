"""Answers carry their evidence: map rows keep source and lines, reduces the rows they rest on."""

from __future__ import annotations

import json

import pytest

from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.diagnostics import CompileError


def test_map_rows_keep_source_and_lines_and_the_answer_cites_the_line(spec, run_spec, items,
                                                                     tmp_path, query,
                                                                     find_spec):
    db = tmp_path / "run.duckdb"
    result = run_spec(spec(find_spec), inputs={"doc": str(items)}, db=str(db))
    assert result.outputs["answer"] == '["item 17 ok"]'
    # item 17 is line 18 of the file, in the second chunk (lines 11-20)
    assert query(db, "SELECT id, source, first_line, last_line, line FROM hit WHERE id < 3 "
                     "ORDER BY id") == [(0, str(items), 1, 10, None), (1, str(items), 11, 20, 18),
                                        (2, str(items), 21, 30, None)]
    assert result.evidence == {"answer": [
        {"id": 1, "source": str(items), "first_line": 11, "last_line": 20, "line": 18}]}


def test_rlm_run_prints_citations_and_json_includes_them(spec, cli, items, find_spec):
    path = spec(find_spec)
    code, out, err = cli("run", path, "--lm", "test", "--input", f"doc={items}", "-q")
    assert code == 0
    assert out.splitlines() == ['["item 17 ok"]']  # stdout stays the value alone
    assert err.splitlines()[0] == f"  [1] {items}:18"
    code, out, _ = cli("run", path, "--lm", "test", "--input", f"doc={items}", "-q", "--json")
    assert json.loads(out)["evidence"]["answer"][0]["cite"] == f"{items}:18"


def test_a_vote_cites_the_rows_that_voted_for_the_winner(spec, run_spec, items, vote_spec):
    # each 4-line chunk starts with a bad item (every 4th), so every label is the first word
    # of the line that is a label: "bad"
    result = run_spec(spec(vote_spec), inputs={"doc": str(items)})
    winner = result.outputs["winner"]
    cited = result.evidence["winner"]
    assert winner in ("bad", "ok") and cited
    assert [row["first_line"] for row in cited[:2]] == [1, 5]


def test_an_empty_value_cites_nothing(spec, run_spec, items, find_spec):
    result = run_spec(spec(find_spec.replace("item 17 ", "zebra")), inputs={"doc": str(items)})
    assert result.outputs["answer"] is None
    assert result.evidence == {"answer": []}


def test_a_grounded_map_keeps_the_text_of_its_cited_line_for_later_steps(spec, run_spec, items,
                                                                         tmp_path, query,
                                                                         find_spec):
    check = find_spec.replace("reduce hit", 'filter hit where lm """\n  YES IF "item 17 "\n'
                                            '  {{ chunk.line_text }}\n"""\nreduce hit')
    db = tmp_path / "run.duckdb"
    result = run_spec(spec(check), inputs={"doc": str(items)}, db=str(db))
    assert query(db, "SELECT id, line, line_text FROM hit WHERE line IS NOT NULL") == [
        (1, 18, "item 17 ok")]
    assert result.outputs["answer"] == '["item 17 ok"]'


def test_only_a_grounded_map_has_line_text(find_spec):
    ungrounded = find_spec.replace(" with grounded=[hit]", "").replace(
        "reduce hit", 'filter hit where lm """{{ chunk.line_text }}"""\nreduce hit')
    with pytest.raises(CompileError, match="no column 'line_text'"):
        compile_text(ungrounded)
