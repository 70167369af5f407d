"""``rlm ask --write-spec``: the LM writes its own spec from the chosen template; it runs only
once it compiles and reads nothing but the question's files (no other file, table function,
model binding or recipe), repaired from what the checks report a bounded number of times, else
the template runs. End to end through the CLI with a back end that writes the spec."""

from __future__ import annotations

import json
import re
from pathlib import Path

import dspy
import pytest
from dspy.utils import DummyLM

from questions.inputs import PROFILES, reply, write_essay
from rlm_dsl.cli.main import main
from rlm_dsl.questions.heuristics import heuristic_plan
from rlm_dsl.questions.planner import Planner
from rlm_dsl.questions.strategies import Layout, render
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend, resolve_lm

FACT = "The vault code for project kestrel-onyx is 4417."
QUESTION = "What is the vault code for project kestrel-onyx?"
INPUT_LINE = re.compile(r"^input docs: .*$", re.M)


def own_spec(input_line: str, query: str = "SELECT source, line_no AS first_line, line_no AS "
             "last_line, text FROM {{ input }} WHERE contains(text, 'kestrel-onyx')") -> str:
    """A spec of the LM's own: the lines naming the project, read and voted."""
    return f'''recipe written "The lines that name the project, read and voted."
param question: str = "{QUESTION}"
{input_line}
chunk docs -> hits by sql """{query}"""
map hits -> findings: str """
  {{{{ chunk.text }}}}
  Question: {{{{ question }}}}
"""
reduce findings -> answer: str by vote with empty="not found"
output answer
'''


def _template() -> str:
    profile = PROFILES["text"]
    return render("lookup", QUESTION, profile, heuristic_plan(QUESTION, profile).slots, Layout())


def _plan(*answers: dict[str, str]):
    planner, lm = Planner(), DummyLM(list(answers))
    with dspy.context(lm=lm):
        chosen = planner(question=QUESTION, profile=PROFILES["text"], layout=Layout(),
                         strategy="lookup", write=True)
    return chosen, lm


def test_a_spec_reading_a_file_is_refused_then_repaired() -> None:
    line = INPUT_LINE.search(_template()).group(0)
    leak = own_spec(line, "SELECT content AS text, 1 AS first_line FROM "
                          "read_text('/etc/passwd'), {{ input }}")
    mine = own_spec(line)
    chosen, lm = _plan({"spec": leak}, {"fixed_spec": mine})
    assert (chosen.strategy, chosen.source, chosen.spec) == ("written", "written", mine)
    assert "table function read_text() is refused" in lm.history[1]["messages"][-1]["content"]
    assert "failed its checks" in chosen.notes[0]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda s: s.replace("output answer", 'input more: text with path="/etc/shadow"\n'
                         "output answer"), "keep exactly the example's input line"),
    (lambda s: 'lm spy = "openai/gpt-4o-mini"\n' + s.replace("map hits -> findings: str",
                                                            "map hits -> findings: str using spy"),
     "do not bind LMs"),
    (lambda s: s.replace("output answer", "output findings"), "value named answer"),
    (lambda s: s.replace("FROM {{ input }}", "FROM {{ input }}, 'secret.csv'"),
     "unknown table 'secret.csv'"),
])
def test_a_spec_that_reaches_beyond_its_inputs_never_runs(change, problem) -> None:
    bad = change(own_spec(INPUT_LINE.search(_template()).group(0)))
    chosen, lm = _plan({"spec": bad}, *[{"fixed_spec": bad}] * 3)
    assert chosen.source == "forced" and chosen.strategy == "lookup"  # the template runs
    assert chosen.spec == _template()
    assert any(problem in n for n in chosen.notes), chosen.notes
    assert chosen.notes[-1] == "ran the lookup template instead"
    assert len(lm.history) == 1 + Planner().max_repairs


class SpecWriter:
    """The test LM, except that it answers a WriteSpec request with ``spec_of(example)``."""

    def __init__(self, spec_of) -> None:
        self.spec_of, self.test = spec_of, resolve_lm("test").engine

    def complete(self, request):
        user = "\n".join(m.text or "" for m in request.messages)
        if "[[ ## example ## ]]" not in user:
            return self.test.complete(request)
        text = f"[[ ## spec ## ]]\n{self.spec_of(user)}\n\n[[ ## completed ## ]]"
        return reply("writer", text)


@pytest.fixture(scope="module", autouse=True)
def writer_backend():
    register_backend("writer", lambda model, options: ResolvedLM(
        model_id=model, engine=SpecWriter(lambda user: own_spec(INPUT_LINE.search(user)
                                                                .group(0))),
        context_window=128_000))


def test_ask_runs_the_lms_own_spec_and_rlm_run_reproduces_it(tmp_path: Path, capsys,
                                                             monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_essay(tmp_path / "essay.txt", FACT)
    assert main(["ask", QUESTION, "essay.txt", "--lm", "writer", "--write-spec", "--json",
                 "--save", "q.rlm"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["answer"], out["strategy"], out["summary"]["planned_by"]) == \
        (FACT, "written", "written")
    assert out["evidence"] == [{"source": "essay.txt", "line": 151, "text": FACT}]
    assert out["summary"]["calls"] == 1  # one line names the project
    assert (tmp_path / "q.rlm").read_text() == out["spec"]
    assert main(["run", "q.rlm", "--lm", "test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["answer"] == FACT


def test_a_written_specs_citation_reads_the_file_as_it_is_now(tmp_path: Path) -> None:
    from rlm_dsl.questions.evidence import evidence

    notes = tmp_path / "notes.txt"
    notes.write_text("a\nthe old line\n")
    cited = [{"id": 0, "source": str(notes), "first_line": 2, "last_line": 2, "line": 2}]
    assert evidence("unused.duckdb", "written", None, cited)[0]["text"] == "the old line"
    notes.write_text("a\nthe line after an edit\n")  # asked again in the same process
    assert evidence("unused.duckdb", "written", None, cited)[0]["text"] == \
        "the line after an edit"
