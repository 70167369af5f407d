"""Fixtures for the log-ingest tests: an in-memory store and a helper writing log files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from rlm_dsl.runtime.store.store import Store


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


def _repetitive_log(path: Path, lines: int) -> None:
    """200K lines of 12 message shapes with varying numbers, IPs, ids — plus one rare error."""
    shapes = (
        "CASE i % 12 WHEN 0 THEN 'GET /api/items/' || i || ' 200 in ' || (i % 97) || ' ms' "
        "WHEN 1 THEN 'client 10.0.' || (i % 250) || '.' || (i % 7) || ' connected' "
        "WHEN 2 THEN 'session ' || md5(i::VARCHAR) || ' renewed' "
        "WHEN 3 THEN 'cache hit ratio 0.' || (i % 100) "
        "ELSE 'worker ' || (i % 12) || ' heartbeat seq=' || i END"
    )
    level = "CASE WHEN i = 150000 THEN 'ERROR' WHEN i % 12 = 3 THEN 'WARN' ELSE 'INFO' END"
    message = f"CASE WHEN i = 150000 THEN 'disk full on /dev/sda1' ELSE {shapes} END"
    line = (
        "strftime(TIMESTAMP '2026-03-14 00:00:00' + to_seconds(i // 10), '%Y-%m-%d %H:%M:%S') "
        f"|| ' ' || {level} || ' ' || {message}"
    )
    duckdb.execute(
        f"COPY (SELECT {line} FROM range({lines}) t(i)) TO '{path}' "
        "(FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')"
    )


@pytest.fixture
def repetitive_log() -> Callable[[Path, int], None]:
    """``repetitive_log(path, lines)``: 12 message shapes, one ERROR at line 150,001."""
    return _repetitive_log
