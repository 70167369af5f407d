"""Shared pytest configuration: ``--update-golden``, the ``golden`` fixture, local-model skips.

Tests marked ``local_model`` need llama-cpp-python and the pulled model; without them they are
skipped here, in one place, with the reason and the command that fixes it.

Golden files (plan dumps, rendered diagnostics) live under ``tests/golden/``. A test compares its
output with the file; a missing golden fails with a message, and ``pytest --update-golden``
rewrites the files from the current output instead of comparing.
"""

from __future__ import annotations

import importlib.util
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


def _local_model_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'rlm-dsl[local]')"
    from rlm_dsl.runtime.lm.models import model_status

    if model_status() not in ("verified", "unverified"):
        return "the local model is not downloaded (rlm models pull)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("local_model")]
    reason = _local_model_missing() if marked else None
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))


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
