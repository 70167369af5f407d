"""One shape for every value in ``outputs``, and the declared type of ``reduce … by sql`` enforced
(scalar, record, list[record]; a mismatch is an error naming the step)."""

from __future__ import annotations

import json

SHAPES = '''
    recipe shapes "Every kind of value."
    input items: lines
    chunk items -> pieces by lines(1)
    type Tally { n: int, first: str }
    reduce pieces -> count: int by sql "SELECT count(*) FROM {{ input }}"
    reduce pieces -> tally: Tally by sql """
      SELECT count(*) AS n, min(text) AS first FROM {{ input }}
    """
    reduce pieces -> rows: list[Tally] by sql """
      SELECT id AS n, text AS first FROM {{ input }} ORDER BY id LIMIT 2
    """
    reduce pieces -> raw by sql "SELECT count(*) AS n FROM {{ input }}"
    map pieces -> hits: int """
      COUNT "bad"
      {{ chunk.text }}
    """
    filter hits where sql "hits > 0"
    output count, tally, rows, raw, hits
'''


def test_every_output_has_its_documented_shape(spec, write_items, cli):
    items = write_items(8)
    code, out, err = cli("run", spec(SHAPES), "-i", f"items={items}", "--lm", "test", "--json")
    assert code == 0, err
    assert json.loads(out)["outputs"] == {
        "count": 8,  # a typed scalar: the value itself
        "tally": {"n": 8, "first": "item 0 bad"},  # a record
        "rows": [{"n": 0, "first": "item 0 bad"}, {"n": 1, "first": "item 1 ok"}],
        "raw": [{"n": 8}],  # untyped sql: the query's rows
        "hits": [1, 1],  # a filtered map value is still a list of values, not rows with ids
    }


def test_a_sql_value_that_does_not_fit_its_declared_type_is_an_error(spec, write_items, cli):
    items = write_items(3)
    path = spec('''
        recipe bad "Two columns for an int."
        input items: lines
        reduce items -> n: int by sql "SELECT count(*) AS a, 1 AS b FROM {{ input }}"
        output n
    ''')
    code, _, err = cli("run", path, "-i", f"items={items}", "--lm", "test")
    assert code == 1
    assert err.strip() == (f"step 'reduce-n' ({path}:3:1) failed: reduce by sql declares int "
                           "but the query returned 2 columns (a, b)")
