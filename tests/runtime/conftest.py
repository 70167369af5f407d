"""Fixtures for the runtime tests: write a spec, run it in-process or through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, RunResult, execute


@pytest.fixture
def write_items(tmp_path: Path) -> Callable[[int], Path]:
    """``write_items(n)``: ``items.txt`` of n lines ``item <i> bad|ok`` (every 4th is bad)."""

    def write(n: int) -> Path:
        path = tmp_path / "items.txt"
        path.write_text("".join(f"item {i} {'bad' if i % 4 == 0 else 'ok'}\n" for i in range(n)))
        return path

    return write


@pytest.fixture
def items(write_items: Callable[[int], Path]) -> Path:
    """100 item lines, 25 of them bad."""
    return write_items(100)


@pytest.fixture
def spec(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write spec text (dedented) to ``tmp_path/<name>`` and return its path."""

    def write(text: str, name: str = "recipe.rlm") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def run_spec() -> Callable[..., RunResult]:
    """Compile and execute a spec in-process with the test LM (``lm=`` overrides)."""

    def run(path: Path, lm: str = "test", **options: Any) -> RunResult:
        return execute(compile_file(path), RunOptions(lm=lm, **options))

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``rlm <args>`` in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def rlm_process() -> Callable[..., subprocess.Popen[str]]:
    return rlm_subprocess


def rlm_subprocess(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``rlm <args>`` as a separate process (stdout/stderr piped)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-c", "from rlm_dsl.cli.main import main; main()", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs,
    )


@pytest.fixture
def query() -> Callable[[Path, str], list[tuple[Any, ...]]]:
    """``query(db, sql)``: the rows of ``sql`` over a finished run's database file."""

    def run(db: Path, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(sql).fetchall()

    return run
