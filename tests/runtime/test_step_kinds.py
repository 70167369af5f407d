"""Step kinds through a run: LM filters, votes, record fields, and the structured answers of the
test LM."""

from __future__ import annotations


def test_lm_filter_vote_and_record_fields(spec, run_spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("a high\nb keep low\nc keep high\nd keep high\ne low\n")
    path = spec('''
        recipe kinds "Filter, map records, vote on a field."
        type Verdict { line: str, level: low | high }
        input items: lines
        chunk items -> pieces by lines(1)
        filter pieces where lm """
          YES IF "keep"
          {{ chunk.text }}
        """
        map pieces -> verdict: Verdict """
          {{ chunk.text }}
        """
        reduce verdict.level -> usual by vote
        output usual, verdict
    ''')
    data.write_text("a high\nb keep low\nc keep high\nd keep high\ne low\n")
    result = run_spec(path, inputs={"items": str(data)}, max_usd=1.0)
    assert [v["line"] for v in result.outputs["verdict"]] == ["b keep low", "c keep high",
                                                               "d keep high"]
    assert result.outputs["usual"] == "high"
    assert result.warnings == ["warning: no price is known for model 'test': --max-usd cannot "
                               "be enforced for its calls; only call and token caps apply"]


def test_the_test_lm_answers_structured_outputs_validly(spec, run_spec, tmp_path):
    data = tmp_path / "d.txt"
    data.write_text("disk ERROR high on db-1 label=high\nall fine label=low\n")
    path = spec('''
        recipe shapes "Records, lists of records and enums from the test LM."
        type Sev = low | high
        type Item { what: str, tags: list[str], sev: Sev, due: str?, n: int }
        input items: lines
        chunk items -> pieces by lines(1)
        map pieces -> found: list[Item] """
          FIND "ERROR"
          {{ chunk.text }}
        """
        map pieces -> info: Item """
          {{ chunk.text }}
        """
        map pieces -> sev: Sev """
          {{ chunk.text }}
        """
        map pieces -> labels: list[Sev] """
          LABELS
          {{ chunk.text }}
        """
        output found, info, sev, labels
    ''')
    result = run_spec(path, inputs={"items": str(data)})
    line = "disk ERROR high on db-1 label=high"
    item = {"what": line, "tags": [line], "sev": "high", "due": line, "n": 6}
    assert result.outputs["found"] == [[item], []]
    assert result.outputs["info"][0] == item
    assert result.outputs["info"][1]["sev"] == "low"
    assert result.outputs["sev"] == ["high", "low"]
    assert result.outputs["labels"] == [["high"], ["low"]]
    assert (result.summary["failures"], result.summary["calls"]) == (0, 8)
