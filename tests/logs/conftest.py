"""Fixtures for the log-ingest tests: an in-memory store and a helper writing log files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rlm_dsl.runtime.store import Store


@pytest.fixture
def store() -> Iterator[Store]:
    with Store.open(None) as opened:
        yield opened


@pytest.fixture
def write_log(tmp_path: Path) -> Callable[[str, str], str]:
    """``write_log(name, text)`` writes ``text`` under tmp_path and returns the path."""

    def write(name: str, text: str) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


@pytest.fixture
def rows(store: Store) -> Callable[..., list[tuple]]:
    """``rows(columns, table="logs")``: ``SELECT columns FROM table ORDER BY id`` as tuples."""

    def select(columns: str, table: str = "logs") -> list[tuple]:
        return store.con.execute(f'SELECT {columns} FROM "{table}" ORDER BY id').fetchall()

    return select
