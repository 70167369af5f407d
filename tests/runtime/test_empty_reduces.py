"""Nothing in, nothing invented: a reduce over no item makes no LM call and says why it is empty.

A concat / tree / fold reduce whose items were all filtered out, all failed or never existed
yields null (or its ``with empty=…`` default) without calling the LM; ``vote`` over nothing is
null; the run summary names every empty value and the reason.
"""

from __future__ import annotations

import pytest

from rlm_dsl.errors import RowsFailed
from rlm_dsl.runtime.runinfo import summary_line

FILTERED = '''
    recipe needle "Find the code."
    input doc: text
    chunk doc -> parts by lines(2)
    filter parts where regex "zebra"
    map parts -> hit: str """
      FIND "zebra"
      {{ chunk.text }}
    """
    reduce hit -> answer: str by {strategy} """
      {{ items | tojson }}
    """
    output answer
'''


@pytest.mark.parametrize("strategy", ["concat", "tree(fanin=2)", "fold"])
def test_a_reduce_over_filtered_out_items_calls_no_lm_and_is_null(strategy, spec, run_spec, items,
                                                                  tmp_path, query):
    db = tmp_path / "run.duckdb"
    result = run_spec(spec(FILTERED.format(strategy=strategy)), inputs={"doc": str(items)},
                      db=str(db))
    assert result.outputs["answer"] is None
    assert query(db, "SELECT count(*) FROM lm_calls")[0][0] == 0
    assert result.summary["empty"] == {
        "answer": "filter 'filter-parts' kept none of 50 rows"}
    assert "empty: answer (filter 'filter-parts' kept none of 50 rows)" in summary_line(
        result.summary)


def test_the_declared_empty_default_is_the_value(spec, run_spec, items):
    text = FILTERED.format(strategy='concat with empty="not found"')
    result = run_spec(spec(text), inputs={"doc": str(items)})
    assert result.outputs["answer"] == "not found"
    assert result.summary["calls"] == 0
    assert "answer" in result.summary["empty"]


def test_null_items_are_dropped_before_the_lm_reads_them(spec, run_spec, items, tmp_path, query):
    # one line holds "item 7 ": FIND answers NONE elsewhere, which is not in the text, so the
    # grounded map re-asks those 9 rows once and then nulls them
    text = '''
        recipe find "Find one item."
        input doc: text
        chunk doc -> parts by lines(10)
        map parts -> hit: str? with grounded=[hit] """
          FIND "item 7 "
          {{ chunk.text }}
        """
        reduce hit -> answer: str by concat """
          {{ items | tojson }}
        """
        output answer
    '''
    db = tmp_path / "run.duckdb"
    result = run_spec(spec(text), inputs={"doc": str(items)}, db=str(db))
    assert result.summary["calls"] == 10 + 9 + 1  # chunks, re-asks, one reduce call
    assert result.outputs["answer"] == '["item 7 ok"]'
    assert query(db, "SELECT id, hit, grounded FROM hit ORDER BY id LIMIT 2") == [
        (0, "item 7 ok", True), (1, None, False)]


def test_vote_over_nothing_is_null(spec, run_spec, items):
    text = '''
        recipe v "Vote."
        input doc: text
        chunk doc -> parts by lines(2)
        filter parts where regex "zebra"
        map parts -> label: bad | ok """
          {{ chunk.text }}
        """
        reduce label -> winner by vote
        output winner
    '''
    result = run_spec(spec(text), inputs={"doc": str(items)})
    assert result.outputs["winner"] is None
    assert result.summary["empty"] == {"winner": "filter 'filter-parts' kept none of 50 rows"}


def test_an_empty_input_is_named(spec, run_spec, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("text\n")  # a header, no row
    text = FILTERED.format(strategy="concat").replace("doc: text", "doc: csv")
    result = run_spec(spec(text), inputs={"doc": str(empty)})
    assert result.outputs["answer"] is None
    assert result.summary["empty"] == {"answer": "input 'doc' is empty"}


def test_all_rows_failed_is_named(spec, run_spec, items):
    text = '''
        recipe f "All fail."
        input doc: text
        chunk doc -> parts by lines(50)
        map parts -> hit: int with retries=0 """
          {{ chunk.text }}
        """
        reduce hit -> answer: str by concat """
          {{ items | tojson }}
        """
        output answer
    '''
    with pytest.raises(RowsFailed) as failed:  # exit 4: rows failed (the run contract)
        run_spec(spec(text), lm="test:fail=1.0", inputs={"doc": str(items)})
    result = failed.value.result
    assert result.outputs["answer"] is None
    assert result.summary["calls"] == 2  # the two map rows; no reduce call
    assert result.summary["empty"] == {"answer": "all 2 rows of 'map-hit' failed"}


def test_a_reduce_with_items_is_not_listed_as_empty(spec, run_spec, items):
    text = FILTERED.replace('"zebra"', '"item 1 "')
    result = run_spec(spec(text.format(strategy="concat")), inputs={"doc": str(items)})
    assert result.outputs["answer"]
    assert result.summary["empty"] == {}


def test_empty_lists_say_nothing_either(spec, run_spec, items, tmp_path, query):
    # a list map whose every row found nothing (the 0.5B model's incident lists over quiet log
    # windows): no incident to merge, so no LM call and the declared default
    db = tmp_path / "run.duckdb"
    result = run_spec(spec('''
        recipe quiet "Merge incident lists."
        input doc: text
        chunk doc -> parts by lines(25)
        map parts -> hits: list[str] """
          FIND "zebra"
          {{ chunk.text }}
        """
        reduce hits -> report: str by tree(fanin=2) with empty="no incidents" """
          {{ items | tojson }}
        """
        output report
    '''), inputs={"doc": str(items)}, db=str(db))
    assert result.outputs["report"] == "no incidents"
    assert query(db, "SELECT count(*) FROM lm_calls WHERE step = 'reduce-report'")[0][0] == 0
    assert result.summary["empty"] == {
        "report": "all 4 values of 'hits' are null or empty (not found or not grounded)"}
