"""Spec SQL has a time limit: a runaway query is stopped, naming the step and its place."""

from __future__ import annotations

import time

import pytest

from rlm_dsl.errors import SpecError
from rlm_dsl.runtime.store import sql_limit

ENDLESS = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
           "SELECT max(n) FROM r")
SPECS = {
    "reduce": f'''
        recipe endless "Count forever."
        input items: lines
        reduce items -> total by sql """
          SELECT count(*) AS total FROM {{{{ input }}}}, ({ENDLESS}) e
        """
        output total
    ''',
    "filter": f'''
        recipe endless "Filter forever."
        input items: lines
        filter items where sql "id IN ({ENDLESS})"
        output items
    ''',
    "chunk": f'''
        recipe endless "Chunk forever."
        input items: lines
        chunk items -> pieces by sql """
          SELECT text FROM {{{{ input }}}}, ({ENDLESS}) e
        """
        output pieces
    ''',
}
LINE = {"reduce": 3, "filter": 3, "chunk": 3}


@pytest.mark.parametrize("kind", SPECS)
def test_runaway_spec_sql_is_stopped_with_the_step_named(kind, spec, run_spec, items,
                                                         monkeypatch):
    monkeypatch.setattr(sql_limit, "SPEC_SQL_TIMEOUT_S", 0.5)
    recipe = spec(SPECS[kind])
    started = time.monotonic()
    with pytest.raises(SpecError) as caught:
        run_spec(recipe, inputs={"items": str(items)})
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert f"({recipe}:{LINE[kind]}:1) failed: its SQL ran longer than 0.5 s and was stopped" \
        in message
