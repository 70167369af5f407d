"""Shared pytest configuration: the ``--update-golden`` option and the ``golden`` fixture.

Golden files (plan dumps, rendered diagnostics) live under ``tests/golden/``. A test compares its
output with the file; a missing golden fails with a message, and ``pytest --update-golden``
rewrites the files from the current output instead of comparing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

GOLDEN_DIR = Path(__file__).parent / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ files from the current output instead of comparing",
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[Path, str], None]:
    """``golden(path, actual)``: compare ``actual`` with the golden file (or rewrite it)."""
    update = request.config.getoption("--update-golden")

    def check(path: Path, actual: str) -> None:
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"missing golden file {path}; run pytest --update-golden to create it")
        assert actual == path.read_text(encoding="utf-8")

    return check
