"""Value types to DSPy signatures and DuckDB columns, and split answers combined by type."""

from __future__ import annotations

from typing import Literal

import pytest

from rlm_dsl.compiler.types import Enum, Field, ListOf, Optional, Prim, Record
from rlm_dsl.runtime.lm.signatures import annotation, combine, duckdb_type, make_signature

INCIDENT = Record("Incident", (Field("at", Prim("str")), Field("severity", Enum(("low", "high")))))


def test_signature_is_readable_and_typed():
    sig = make_signature("map", "incidents", ListOf(INCIDENT), "Find incidents.")
    assert sig.__name__ == "MapIncidents"
    assert list(sig.input_fields) == ["prompt"] and list(sig.output_fields) == ["incidents"]
    assert sig.instructions == "Find incidents."
    assert annotation(Enum(("a", "b"))) == Literal["a", "b"]
    assert annotation(Optional(Prim("int"))) == int | None


def test_duckdb_types():
    assert duckdb_type(ListOf(INCIDENT)) == 'STRUCT("at" VARCHAR, "severity" VARCHAR)[]'
    assert duckdb_type(Optional(Prim("float"))) == "DOUBLE"
    assert duckdb_type(ListOf(Prim("bool"))) == "BOOLEAN[]"


@pytest.mark.parametrize(("t", "parts", "expected"), [
    (ListOf(Prim("str")), [["a"], None, ["b", "c"]], ["a", "b", "c"]),
    (Prim("int"), [2, 3, 4], 9),
    (Prim("bool"), [False, True], True),
    (Prim("str"), ["left", "", "right"], "left\nright"),
    (Enum(("x", "y")), ["y", "x", "x", "y"], "y"),
    (INCIDENT, [{"at": "a", "severity": "low"}, {"at": "b", "severity": "high"},
                {"at": "c", "severity": "high"}], {"at": "a\nb\nc", "severity": "high"}),
])
def test_combine_by_type(t, parts, expected):
    assert combine(t, parts) == expected
