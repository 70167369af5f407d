"""Task builders and answer extraction of the quality bench (bench/quality/tasks.py, logs.py,
methods.py), on small stand-in data so no download happens; one recipe run with the test LM."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import duckdb
import pytest

import rlm_dsl
from bench.quality import data, tasks
from bench.quality.logs import build_logs
from bench.quality.methods import RECIPES, REPO, recipe_answer

QUESTIONS = [
    {"question": f"Question {i}?", "answer": ans,
     "context": [[f"Title {i} {j}", [f"Sentence {i} {j}."]] for j in range(10)]}
    for i, ans in enumerate(["yes", "1997", "Paris", "no", "Ada Lovelace", "12 km"] * 10)
]


@pytest.fixture
def fake_data(monkeypatch: pytest.MonkeyPatch) -> None:
    essay = "".join(f"Essay line {i} about startups and painting.\n" for i in range(2_000))
    monkeypatch.setattr(data, "essays", lambda: essay)
    monkeypatch.setattr(data, "hotpotqa", lambda: QUESTIONS)


def test_answer_labels() -> None:
    assert [tasks.answer_label(a) for a in ["Yes", "no ", "1997", "12 km", "Paris"]] == [
        "yes_no", "yes_no", "number", "number", "name"]


def test_niah_hides_exactly_one_needle_of_the_asked_size(fake_data: None, tmp_path: Path) -> None:
    inst = tasks.build_niah(4_000, random.Random(3), tmp_path)
    text = Path(inst.text_path).read_text()
    needles = re.findall(r"special magic numbers for (\S+) is: (\d+)\.", text)
    assert needles == [(inst.params["key"], inst.gold)]
    assert inst.params["key"] in inst.question
    assert 3_990 <= inst.tokens <= 4_030


def test_builders_are_seeded(fake_data: None, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for task, size in [("niah", 2_000), ("oolong", 20), ("pairs", 20), ("docqa", 30)]:
        first = tasks.BUILDERS[task](size, random.Random(5), tmp_path / "a")
        again = tasks.BUILDERS[task](size, random.Random(5), tmp_path / "b")
        assert (first.question, first.gold) == (again.question, again.gold)
        assert Path(first.text_path).read_text() == Path(again.text_path).read_text()


def test_oolong_gold_matches_the_written_items(fake_data: None, tmp_path: Path) -> None:
    for seed in range(12):
        inst = tasks.build_oolong(30, random.Random(seed), tmp_path)
        rows = [json.loads(line) for line in Path(inst.inputs["items"]).read_text().splitlines()]
        labels = {q["question"]: tasks.answer_label(q["answer"]) for q in QUESTIONS}
        user_counts = [{"user": u, "label": lab, "n": sum(
            1 for r in rows if r["user"] == u and labels[r["text"]] == lab)}
            for u in {r["user"] for r in rows} for lab in tasks.LABELS]
        counts = [{"label": lab, "n": sum(1 for r in rows if labels[r["text"]] == lab)}
                  for lab in tasks.LABELS]
        outputs = {"counts": counts, "user_counts": user_counts}
        assert recipe_answer(inst.extract, outputs) == inst.gold, inst.question


def test_pairs_gold_is_every_pair_of_users_with_the_label(fake_data: None, tmp_path: Path) -> None:
    inst = tasks.build_pairs(30, random.Random(1), tmp_path)
    label = inst.extract.split(":")[1]
    text = Path(inst.text_path).read_text().splitlines()
    labels = {q["question"]: tasks.answer_label(q["answer"]) for q in QUESTIONS}
    users = {line.split(" | ")[0].removeprefix("user=") for line in text
             if labels[line.split(" | ")[1]] == label}
    assert len(inst.gold) == len(users) * (len(users) - 1) // 2 > 0
    assert {u for pair in inst.gold for u in pair} == users


def test_docqa_holds_the_question_paragraphs_among_distractors(
    fake_data: None, tmp_path: Path
) -> None:
    inst = tasks.build_docqa(35, random.Random(2), tmp_path)
    lines = Path(inst.text_path).read_text().splitlines()
    number = int(re.search(r"\d+", inst.question).group())
    assert len(lines) == 35
    assert sum(line.startswith(f"Title {number} ") for line in lines) == 10
    assert inst.gold == QUESTIONS[number]["answer"] not in {"yes", "no"}


def test_recipe_answer_reads_a_label_ranking_and_pairs() -> None:
    outputs = {"counts": [{"label": "name", "n": 5}, {"label": "number", "n": 2}],
               "user_counts": [{"user": "U1", "label": "number", "n": 1},
                               {"user": "U3", "label": "number", "n": 2},
                               {"user": "U2", "label": "name", "n": 4}]}
    assert recipe_answer("most", outputs) == "name"
    assert recipe_answer("least", outputs) == "yes_no"        # absent from the table: 0
    assert recipe_answer("count:number", outputs) == 2
    assert recipe_answer("user:U3:number", outputs) == 2
    assert recipe_answer("pairs:number", outputs) == [("U1", "U3")]
    assert recipe_answer("answer", {"answer": ["42"]}) == "42"


def test_log_truth_matches_the_shipped_census_recipe(tmp_path: Path) -> None:
    inst = build_logs(400, random.Random(4), tmp_path)
    result = rlm_dsl.load(REPO / inst.recipe).run(inputs=inst.inputs, lm="test", lm_all=True)
    assert inst.gold > 0
    assert recipe_answer(inst.extract, result.outputs) == inst.gold


def test_bench_recipes_compile(tmp_path: Path) -> None:
    for name in ["niah.rlm", "label_agg.rlm", "doc_qa.rlm"]:
        assert rlm_dsl.load(RECIPES / name).plan.outputs
    for name in ["vanilla.rlm.tmpl", "free_rlm.rlm.tmpl"]:
        filled = re.sub(r"__[A-Z_]+__", "8", (RECIPES / name).read_text())
        path = tmp_path / name.removesuffix(".tmpl")
        path.write_text(filled)
        assert rlm_dsl.load(path).plan.outputs == ("answer",)


def test_niah_recipe_reads_every_passage(fake_data: None, tmp_path: Path) -> None:
    """The generic recipe: no regex keyed to the needle; every passage goes to the LM once (a
    grounding re-ask repeats a passage), and exactly one of them holds the needle."""
    inst = tasks.build_niah(8_000, random.Random(7), tmp_path)
    db = tmp_path / "run.duckdb"
    rlm_dsl.load(REPO / inst.recipe).run(inputs=inst.inputs, params=inst.params, lm="test",
                                         lm_all=True, db=db)
    with duckdb.connect(str(db), read_only=True) as con:
        passages = con.execute("SELECT count(*) FROM passages").fetchone()[0]
        read = con.execute("SELECT count(DISTINCT chunk_id) FROM lm_calls "
                           "WHERE step = 'map-findings'").fetchone()[0]
        needle = con.execute(
            "SELECT count(DISTINCT chunk_id) FROM lm_calls WHERE step = 'map-findings' "
            "AND contains(messages, ?)",
            [f"magic numbers for {inst.params['key']} is: {inst.gold}."]).fetchone()[0]
    assert passages > 1 and read == passages
    assert needle == 1
