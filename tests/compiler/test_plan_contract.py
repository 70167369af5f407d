"""The Plan contract of docs/architecture.md: ids, tables, sources, args, options, types, spans."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.diagnostics import CompileError
from rlm_dsl.compiler.types import Enum, Field, ListOf, Optional, Prim, Record

ROOT = Path(__file__).resolve().parents[2]
HEAD = 'recipe t "Test."\n'


def plan_of(body: str):
    return compile_text(HEAD + body, "t.rlm")


def errors_of(body: str) -> list[str]:
    with pytest.raises(CompileError) as caught:
        compile_text(HEAD + body, "t.rlm")
    return [f"{d.span.line}:{d.span.col} {d.message}" for d in caught.value.diagnostics]


def test_filters_rebind_names_and_get_numbered_tables() -> None:
    plan = plan_of(
        "input logs: log\n"
        "chunk logs -> windows by lines(400, overlap=20)\n"
        "filter windows where sql \"level = 'ERROR'\"\n"
        'filter windows where regex "(?i)timeout\\s+\\d+"\n'
        'map windows -> notes: str """{{ chunk.text }}"""\n'
        "output notes\n"
    )
    rows = [(s.id, s.source, s.table, s.strategy, s.args) for s in plan.steps()]
    assert rows == [
        ("input-logs", None, "logs", "log", ()),
        ("chunk-windows", "logs", "windows", "lines", (400,)),
        ("filter-windows", "windows", "windows_filtered", "sql", ("level = 'ERROR'",)),
        ("filter-windows-2", "windows_filtered", "windows_filtered_2", "regex",
         ("(?i)timeout\\s+\\d+",)),
        ("map-notes", "windows_filtered_2", "notes", "predict", ()),
    ]
    assert plan.producer("windows").id == "filter-windows-2"
    assert plan.step("chunk-windows").options == {"overlap": 20}


def test_forward_reference_reads_the_final_binding() -> None:
    plan = plan_of(
        'map windows -> notes: str """{{ chunk.text }}"""\n'
        "input logs: text\n"
        "chunk logs -> windows by chars(1000)\n"
        'filter windows where regex "x"\n'
        "output notes\n"
    )
    assert plan.step("map-notes").source == "windows_filtered"
    assert list(plan.graph.predecessors("map-notes")) == ["filter-windows"]


def test_documented_defaults_are_filled_in() -> None:
    plan = plan_of(
        "input doc: log\n"
        'chunk doc -> periods by window("5m")\n'
        'map periods -> notes: str """{{ chunk.key }}"""\n'
        'reduce notes -> merged: str by tree """{{ items }} {{ level }}"""\n'
        'rlm doc -> answer: int """How many?"""\n'
        "output merged, answer\n"
    )
    assert plan.step("chunk-periods").options == {"column": "ts"}
    assert plan.step("reduce-merged").options == {"fanin": 8}
    assert plan.step("rlm-answer").options == {"max_iterations": 20, "max_llm_calls": 50,
                                               "depth": 1}
    assert plan.step("rlm-answer").output == Field("answer", Prim("int"))


def test_reduce_options_types_and_projection() -> None:
    plan = plan_of(
        "lm fast = env(\"FAST\") with temperature=0, n_ctx=8192\n"
        "type Verdict { label: yes | no, score: float? }\n"
        "input q: jsonl\n"
        'map q -> verdicts: Verdict using fast with reason=true, retries=2 """{{ chunk.text }}"""\n'
        "reduce verdicts.label -> majority by vote\n"
        'reduce verdicts -> story: str by fold(init="") with retries=1\n'
        '  """{{ state }}{{ items }}"""\n'
        'reduce verdicts -> n by sql "SELECT count(*) AS n FROM {{ input }}"\n'
        "output majority, story, n\n"
    )
    verdict = Record("Verdict", (Field("label", Enum(("yes", "no"))),
                                 Field("score", Optional(Prim("float")))))
    mapped = plan.step("map-verdicts")
    assert mapped.output == Field("verdicts", verdict) and mapped.lm == "fast"
    assert mapped.options == {"reason": True, "retries": 2}
    vote = plan.step("reduce-majority")
    assert vote.options == {"field": "label"}
    assert vote.output == Field("majority", Enum(("yes", "no")))
    assert plan.step("reduce-story").options == {"init": "", "retries": 1}
    sql = plan.step("reduce-n")
    assert sql.args == ("SELECT count(*) AS n FROM {{ input }}",) and sql.output is None
    (lm,) = plan.lms
    assert (lm.name, lm.model, lm.env, lm.options) == ("fast", None, "FAST",
                                                       {"temperature": 0, "n_ctx": 8192})


def test_params_prompts_and_spans() -> None:
    plan = plan_of(
        'param question: str = "Why?"\n'
        "param limit: int\n"
        "param tags: list[str]? \n"
        "input doc: text\n"
        'rlm doc -> answer: list[str] using big sub small with tools=["sql"] """\n'
        "    Answer {{ question }}\n"
        "      in at most {{ limit }} items.\n"
        '"""\n'
        'lm big = "openai/gpt-4o-mini"\n'
        'lm small = "local"\n'
        "output answer\n"
    )
    assert [(p.name, p.default, p.required) for p in plan.params] == [
        ("question", "Why?", False), ("limit", None, True), ("tags", None, False)]
    step = plan.step("rlm-answer")
    assert step.prompt == "Answer {{ question }}\n  in at most {{ limit }} items."
    assert (step.lm, step.sub_lm, step.output) == ("big", "small", Field("answer",
                                                                         ListOf(Prim("str"))))
    assert (step.span.line, step.span.col, step.span.end_line) == (6, 1, 9)


def test_template_errors_point_into_multiline_prompts() -> None:
    assert errors_of(
        "input doc: text\n"
        'map doc -> notes: str """\n'
        "  first line\n"
        "  second {{ chunk.text }} and {{ chunk.nope }}\n"
        '"""\n'
        "output notes\n"
    ) == ["5:40 the rows have no column 'nope'"]


def test_record_fields_of_mapped_values_are_checked_in_templates() -> None:
    assert errors_of(
        "type V { label: str }\n"
        "input doc: text\n"
        'map doc -> v: V """{{ chunk.text }}"""\n'
        'map v -> w: str """{{ chunk.v.label }} {{ chunk.v.lable }} {{ chunk.text }}"""\n'
        "output w\n"
    ) == ["5:51 'v' (V) has no field 'lable'", "5:69 the rows have no column 'text'"]


def test_used_recipe_is_compiled_into_uses(tmp_path) -> None:
    (tmp_path / "sub.rlm").write_text(
        'recipe sub "Sub."\nparam focus: str = "x"\ninput doc: text\n'
        'map doc -> s: str """{{ chunk.text }} {{ focus }}"""\noutput s\n', encoding="utf-8")
    main = tmp_path / "main.rlm"
    main.write_text(
        HEAD + 'use "sub.rlm" as sub\ninput rows: csv\n'
        'map rows -> out: str using recipe sub with params={focus: "y"}\noutput out\n',
        encoding="utf-8")
    from rlm_dsl.compile import compile_file

    plan = compile_file(main)
    assert plan.uses["sub"].recipe == "sub"
    step = plan.step("map-out")
    assert (step.recipe, step.options, step.prompt) == ("sub", {"params": {"focus": "y"}}, None)
    main.write_text(main.read_text().replace('focus: "y"', "focsu: 1"), encoding="utf-8")
    with pytest.raises(CompileError) as caught:
        compile_file(main)
    assert [d.message for d in caught.value.diagnostics] == ["recipe 'sub' has no param 'focsu'"]


def test_crlf_and_bom_specs_compile_to_the_same_plan(tmp_path) -> None:
    from rlm_dsl.compile import compile_file

    text = (ROOT / "recipes" / "incident_report.rlm").read_text(encoding="utf-8")
    unix, windows = tmp_path / "unix.rlm", tmp_path / "windows.rlm"
    unix.write_text(text, encoding="utf-8")
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    expected = compile_file(unix).dumps()
    assert compile_file(windows).dumps() == expected
