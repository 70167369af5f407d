"""End-to-end runs on inputs far beyond the test LM's window: needle, counting, fold, recursion."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

LABELS = ("abbreviation", "description", "entity", "human", "location", "number")


def test_needle_in_a_5m_character_log_with_a_4k_window(tmp_path, spec, run_spec, query):
    rng = random.Random(5)
    log = tmp_path / "app.log"
    needle_at = 41_337
    with log.open("w") as out:
        for i in range(67_000):
            if i == needle_at:
                out.write("2024-03-01T10:00:00 WARN vault: NEEDLE the passphrase is amber-falcon\n")
            else:
                out.write(f"2024-03-01T10:00:00 INFO svc-{rng.randint(1, 99):02d}: request "
                          f"{i} served in {rng.randint(1, 999)} ms from pool {rng.randint(1, 9)}\n")
    assert log.stat().st_size > 5_000_000
    path = spec('''
        recipe needle "Find the needle."
        input logs: lines
        chunk logs -> windows by lines(100)
        map windows -> hits: list[str] """
          FIND "NEEDLE"
          {{ chunk.text }}
        """
        reduce hits -> found: list[str] by tree(fanin=8) """
          MERGE
          {{ items | tojson }}
        """
        output found
    ''')
    db = tmp_path / "run.duckdb"
    result = run_spec(path, lm="test:window=4096", inputs={"logs": str(log)}, db=str(db))
    assert result.outputs["found"] == [
        "2024-03-01T10:00:00 WARN vault: NEEDLE the passphrase is amber-falcon"
    ]
    assert query(db, "SELECT count(*) FROM lm_calls WHERE error IS NOT NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM hits WHERE len(hits) > 0") == [(1,)]


def test_counting_50k_labelled_lines_is_exact(tmp_path, spec, run_spec, query):
    rng = random.Random(50)
    labels = [rng.choice(LABELS) for _ in range(50_000)]
    data = tmp_path / "questions.txt"
    data.write_text("".join(f"q{i} what is it? label={lab}\n" for i, lab in enumerate(labels)))
    path = spec('''
        recipe counting "Count labels exactly."
        type Label = abbreviation | description | entity | human | location | number
        input questions: lines
        chunk questions -> batches by lines(500)
        map batches -> labels: list[Label] """
          LABELS
          {{ chunk.text }}
        """
        reduce labels -> counts by sql """
          SELECT label, count(*) AS n FROM (SELECT unnest(labels) AS label FROM {{ input }})
          GROUP BY label ORDER BY label
        """
        output counts
    ''')
    result = run_spec(path, inputs={"questions": str(data)}, concurrency=8)
    expected = sorted(Counter(labels).items())
    assert [(r["label"], r["n"]) for r in result.outputs["counts"]] == expected
    assert result.summary["calls"] == 100


def test_fold_sees_200_chunks_in_id_order(tmp_path, spec, run_spec, query):
    order = list(range(200))
    random.Random(200).shuffle(order)
    data = tmp_path / "records.txt"
    data.write_text("".join(f"record {n}\n" for n in order))
    path = spec('''
        recipe ordered "Fold in order."
        input records: lines
        chunk records -> pieces by lines(1)
        map pieces -> said: str """
          Repeat this line: {{ chunk.text }}
        """
        reduce said -> seen: list[int] by fold(init=[]) """
          NUMBERS
          {{ state | tojson }}
          {{ items | tojson }}
        """
        output seen
    ''')
    result = run_spec(path, inputs={"records": str(data)})
    assert result.outputs["seen"] == order
    assert result.summary["calls"] == 400


def test_a_40k_token_record_is_split_to_fit_a_4k_window(tmp_path, spec, run_spec, query):
    rng = random.Random(40)
    lines = []
    for i in range(4_000):
        word = "ERROR" if rng.random() < 0.13 else "fine"
        lines.append(f"event {i}: subsystem {rng.randint(1, 50)} reports {word} state {i * 7}")
    text = "\n".join(lines)
    data = tmp_path / "big.jsonl"
    data.write_text(json.dumps({"text": text}) + "\n")
    path = spec('''
        recipe recursion "Count in one huge record."
        input docs: jsonl
        chunk docs -> records by record
        map records -> errors: int """
          COUNT "ERROR"
          {{ chunk.text }}
        """
        output errors
    ''')
    db = tmp_path / "run.duckdb"
    result = run_spec(path, lm="test:window=4096", inputs={"docs": str(data)}, db=str(db))
    assert query(db, "SELECT sum(n_tokens) > 40000 FROM records") == [(True,)]
    assert result.outputs["errors"] == [sum("ERROR" in line for line in lines)]
    depth, errors = query(db, "SELECT max(depth), count(error) FROM lm_calls")[0]
    assert depth >= 4 and errors == 0


def test_reduce_tree_recurses_until_one_call_fits(tmp_path: Path, spec, run_spec, query):
    data = tmp_path / "numbers.txt"
    data.write_text("".join(f"{i} " * 40 + "\n" for i in range(300)))
    path = spec('''
        recipe tree "Sum numbers in a tree."
        input rows: lines
        chunk rows -> pieces by lines(1)
        map pieces -> line: str """
          {{ chunk.text }}
        """
        reduce line -> total: int by concat """
          SUM
          {{ items | tojson }}
        """
        output total
    ''')
    db = tmp_path / "run.duckdb"
    result = run_spec(path, lm="test:window=2048", inputs={"rows": str(data)}, db=str(db))
    assert result.outputs["total"] == 40 * sum(range(300))
    assert query(db, "SELECT count(DISTINCT depth) > 1, count(error) FROM lm_calls")[0] == (
        True, 0)
