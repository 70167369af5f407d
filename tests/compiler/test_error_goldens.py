"""Malformed specs in tests/golden/errors/*.rlm render exactly as the matching .txt files.

Each spec is compiled from its own folder (paths in messages are as the user typed them); files
starting with ``_`` are helpers that other specs ``use``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlm_dsl.compile import compile_file
from rlm_dsl.compiler.diagnostics import CompileError
from rlm_dsl.errors import SpecError

ERRORS = Path(__file__).resolve().parents[1] / "golden" / "errors"
SPECS = sorted(p for p in ERRORS.glob("*.rlm") if not p.name.startswith("_"))


def test_enough_malformed_specs() -> None:
    assert len(SPECS) >= 25


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_error_rendering_matches_golden(spec: Path, golden, monkeypatch) -> None:
    monkeypatch.chdir(ERRORS)
    with pytest.raises(CompileError) as caught:
        compile_file(spec.name)
    error = caught.value
    assert isinstance(error, SpecError) and error.exit_code == 1
    keys = [(d.span.file != spec.name, *d.sort_key()) for d in error.diagnostics]
    assert keys == sorted(keys)
    golden(spec.with_suffix(".txt"), str(error) + "\n")
