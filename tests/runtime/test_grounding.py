"""Grounded fields: values not in the row's text are found, re-asked once and then nulled."""

from __future__ import annotations

from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.types import Field, ListOf, Optional, Prim, Record
from rlm_dsl.runtime.steps.grounding import Grounder, normalise

FINDING = Record("Finding", (Field("found", Prim("bool")), Field("value", Optional(Prim("str"))),
                             Field("hosts", ListOf(Prim("str")))))
TEXT = "2024-01-01  web-01   ERROR  Access code  XK-4411 rejected\nhost db-02 ok"


def test_comparison_ignores_case_and_whitespace_runs():
    assert normalise("  Access\n  CODE ") == "access code"
    grounder = Grounder(Prim("str"), "code", ["code"])
    assert grounder.missing("access   code xk-4411", TEXT) == []
    assert grounder.missing('"XK-4411".', TEXT) == []  # quotes and punctuation around it
    assert grounder.missing("XK-4412", TEXT) == [("code", "XK-4412")]


def test_record_fields_are_checked_per_list_element_and_nulled():
    grounder = Grounder(FINDING, "finding", ["value", "hosts"])
    invented = "491.188.124.227"
    value = {"found": True, "value": "1234567890", "hosts": ["web-01", invented, "DB-02"]}
    assert grounder.missing(value, TEXT) == [("value", "1234567890"), ("hosts", invented)]
    assert grounder.strip(value, TEXT) == {"found": True, "value": None,
                                           "hosts": ["web-01", "DB-02"]}


def test_a_list_of_records_is_checked_record_by_record():
    grounder = Grounder(ListOf(FINDING), "findings", ["value"])
    value = [{"found": True, "value": "XK-4411", "hosts": []},
             {"found": True, "value": "made up", "hosts": []}]
    assert grounder.missing(value, TEXT) == [("value", "made up")]
    assert [r["value"] for r in grounder.strip(value, TEXT)] == ["XK-4411", None]
    assert grounder.strip(None, TEXT) is None


def test_bare_and_quoted_names_compile_to_the_same_option():
    spec = '''
        recipe g "x"
        input doc: text
        chunk doc -> parts by lines(5)
        type Finding {{ found: bool, value: str? }}
        map parts -> finding: Finding with grounded={names} """{{{{ chunk.text }}}}"""
        output finding
    '''
    bare = compile_text(spec.format(names="[value]"))
    quoted = compile_text(spec.format(names='["value"]'))
    assert bare.step("map-finding").options["grounded"] == ["value"]
    assert bare.dumps() == quoted.dumps()


def test_a_value_counts_only_as_whole_words_of_the_text():
    # the 0.5B model answers "10" for a passage that only has "2010" and "100": not grounded
    grounder = Grounder(Prim("str"), "code", ["code"])
    text = "In 2010 we had 100 users; the code is XK-4411."
    assert grounder.missing("10", text) == [("code", "10")]
    assert grounder.missing("XK-44", text) == [("code", "XK-44")]
    assert grounder.missing("2010", text) == []
    assert grounder.missing("code is XK-4411", text) == []
    assert grounder.missing("(XK-4411)", text) == []


def test_a_serial_lm_gets_a_rows_re_ask_right_after_its_first_answer(spec, run_spec, items,
                                                                     tmp_path, query):
    # one model call at a time (the local engine): the re-ask must follow its own row's first
    # call, so the model still holds that row's passage in its prompt cache
    db = tmp_path / "run.duckdb"
    run_spec(spec('''
recipe r "x"
lm one = "test:delay=0.01" with max_concurrency=1
input doc: text
chunk doc -> parts by lines(10)
map parts -> hit: str? using one with grounded=[hit] """
  made-up answer
  {{ chunk.text }}
"""
output hit
'''), inputs={"doc": str(items)}, db=str(db))
    order = [row[0] for row in query(db, "SELECT chunk_id FROM lm_calls ORDER BY started_at")]
    assert len(order) > 4 and order == sorted(order)
    assert all(order.count(chunk) == 2 for chunk in set(order))
