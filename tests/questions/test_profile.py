"""The input profile (rlm_dsl/questions/profile.py): kind, size, columns, log format and record
delimiter from a sample of the head of each file; files, directories and globs; bad paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from questions.inputs import write_log
from rlm_dsl.errors import InputError
from rlm_dsl.questions.profile import profile_inputs


def test_a_log_is_recognised_with_its_format_and_columns(tmp_path: Path) -> None:
    profile = profile_inputs([str(write_log(tmp_path / "app.txt", lines=40))])
    assert (profile.kind, profile.timed) == ("log", True)
    assert profile.log_format is not None and "level" in profile.columns
    assert profile.lines == 40 and profile.tokens == -(-profile.bytes // 4)
    assert "log format: " in profile.describe()


def test_jsonl_and_csv_columns(tmp_path: Path) -> None:
    rows = tmp_path / "rows.data"
    rows.write_text("".join(json.dumps({"user": f"U{i}", "text": "q"}) + "\n" for i in range(5)))
    assert (profile_inputs([str(rows)]).kind, profile_inputs([str(rows)]).columns) == \
        ("jsonl", ("user", "text"))
    table = tmp_path / "t.csv"
    table.write_text("city,people\nOslo,700000\nBergen,290000\n")
    assert profile_inputs([str(table)]).columns == ("city", "people")


def test_text_with_a_record_delimiter(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("first note\n---\nsecond note\n---\nthird\n")
    profile = profile_inputs([str(notes)])
    assert (profile.kind, profile.delimiter, profile.columns) == ("text", "---", ())


def test_directories_and_globs_expand_hidden_files_skipped(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    for name in ("a.txt", "b.txt", ".hidden.txt"):
        (tmp_path / "d" / name).write_text("hello\n")
    assert len(profile_inputs([str(tmp_path / "d")]).files) == 2
    assert len(profile_inputs([str(tmp_path / "d" / "*.txt")]).files) == 2


def test_missing_paths_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such file or directory: '.*nope\.log'"):
        profile_inputs([str(tmp_path / "nope.log")])
    with pytest.raises(InputError, match=r"no files match '.*\*\.none'"):
        profile_inputs([str(tmp_path / "*.none")])
