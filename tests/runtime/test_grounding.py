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
