"""A reduce over a filtered map reads the map's value column: the filter keeps its source's
value (a vote over ``filter findings where sql …`` got whole rows, ``{"findings": …}``)."""

from __future__ import annotations

from pathlib import Path


def test_vote_over_a_filtered_map_votes_on_the_values(spec, run_spec, tmp_path: Path) -> None:
    data = tmp_path / "lines.txt"
    data.write_text("apple\nNONE\napple\npear\n")
    path = spec('''
        recipe votes "Vote on the kept values."
        input items: lines
        chunk items -> rows by lines(1)
        map rows -> findings: str """
          {{ chunk.text }}
        """
        filter findings where sql "findings <> 'NONE'"
        reduce findings -> answer: str by vote
        output answer
    ''')
    assert run_spec(path, inputs={"items": str(data)}).outputs["answer"] == "apple"
