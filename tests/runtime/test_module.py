"""``rlm_dsl.load``: a compiled recipe as an optimizable DSPy module (runtime/module.py)."""

from __future__ import annotations

import dspy

import rlm_dsl


def test_load_returns_an_optimizable_module(spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a bad\nb ok\nc bad\n")
    path = spec('''
        recipe api "API."
        input items: lines
        chunk items -> pieces by lines(1)
        filter pieces where regex "bad"
        map pieces -> n: int with reason=true """
          COUNT "bad"
          {{ chunk.text }}
        """
        reduce n -> total: int by tree(fanin=2) """
          SUM
          {{ items | tojson }}
        """
        output total
    ''')
    program = rlm_dsl.load(path)
    assert isinstance(program, dspy.Module)
    names = [name for name, _ in program.named_predictors()]
    assert names == ["map-n.predict.predict", "reduce-total.predict"]
    result = program.run(inputs={"items": str(data)}, lm="test")
    assert result.outputs == {"total": 2}
    assert result.summary["calls"] == 3
    assert program(items=str(data), lm="test").total == 2


def test_run_takes_the_encoding_of_line_inputs(spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_bytes("caf\u00e9\n".encode("utf-16"))
    path = spec('''
        recipe enc "Encoding."
        input items: lines
        output items
    ''')
    program = rlm_dsl.load(path)
    result = program.run(inputs={"items": str(data)}, lm="test", encoding="utf-16")
    assert [row["text"] for row in result.outputs["items"]] == ["caf\u00e9"]
