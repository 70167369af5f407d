"""Maps over ``use``d recipes: one sub-recipe run per row, one table per sub-step, prefixed step
names, and the run record that lets the trace draw them."""

from __future__ import annotations

from rlm_dsl.runtime.observe.trace import open_trace

COUNTER = '''
    recipe counter "Count words in one text."
    param word: str = "bad"
    input doc: text
    chunk doc -> parts by lines(2)
    map parts -> n: int """
      COUNT "{{ word }}"
      {{ chunk.text }}
    """
    reduce n -> total: int by tree(fanin=4) """
      SUM
      {{ items | tojson }}
    """
    output total
'''


MAIN = '''
    recipe main "Per ticket."
    input rows: csv
    use "counter.rlm" as counter
    chunk rows -> threads by column("ticket")
    map threads -> counts: int using recipe counter with params={word: "ugly"}
    output counts
'''


def _sub_recipe_run(spec, run_spec, tmp_path):
    spec(COUNTER, "counter.rlm")
    data = tmp_path / "tickets.csv"
    data.write_text("ticket,text\n1,bad\n2,ugly\n1,bad again\n1,fine\n2,ugly ugly\n")
    db = tmp_path / "run.duckdb"
    result = run_spec(spec(MAIN), inputs={"rows": str(data)}, db=str(db))
    return result, db


def test_use_runs_a_sub_recipe_per_row(spec, run_spec, tmp_path, query):
    result, db = _sub_recipe_run(spec, run_spec, tmp_path)
    assert result.outputs["counts"] == [0, 2]
    tables = {r[0] for r in query(db, "SELECT table_name FROM duckdb_tables()")}
    assert {"map-counts__parts", "map-counts__n"} <= tables  # one table per sub-step
    assert not any(t.startswith(("map-counts__0__", "map-counts__1__")) for t in tables)


def test_sub_recipe_calls_carry_the_prefixed_step(spec, run_spec, tmp_path, query):
    result, db = _sub_recipe_run(spec, run_spec, tmp_path)
    assert result.outputs["counts"] == [0, 2]
    steps = {r[0] for r in query(db, "SELECT DISTINCT step FROM lm_calls")}
    assert steps == {"map-counts__0__map-n", "map-counts__1__map-n",
                     "map-counts__0__reduce-total", "map-counts__1__reduce-total"}
    trace = open_trace(str(db))
    top = {node.id: node for node in trace.step_nodes()}
    assert "map-n" not in top and "map-counts__0__map-n" not in top
    rows = top["map-counts"].children
    assert [r.label for r in rows] == ["row 0", "row 1"]
    inner = {n.label: n for n in rows[1].children}
    assert inner["map-n"].stats.calls == 1  # ticket 2: two lines, one chunk of lines(2)
    assert top["map-counts"].stats.calls == result.summary["calls"]


def test_the_run_record_keeps_the_plan_and_the_trace_draws_its_edges(spec, run_spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a ERROR x\nb ok\nc ERROR y\n")
    path = spec('''
        recipe fork "Two maps over the same chunks."
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> shout: str """
          {{ chunk.text }}
        """
        map pieces -> whisper: str """
          {{ chunk.text }}
        """
        output shout, whisper
    ''')
    db = tmp_path / "run.duckdb"
    run_spec(path, inputs={"items": str(data)}, db=str(db))
    trace = open_trace(str(db))
    assert trace.run["summary"]["plan"]["recipe"] == "fork"
    assert sorted(trace.edges) == [("chunk-pieces", "map-shout"), ("chunk-pieces", "map-whisper"),
                                   ("input-items", "chunk-pieces")]
    from rlm_dsl.runtime.observe.report_html import plan_svg

    svg = plan_svg(trace)
    assert svg.count("<line ") == 3  # the fork, not the chain map-shout -> map-whisper
