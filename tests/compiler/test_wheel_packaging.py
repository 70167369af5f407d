"""Packaging: a built wheel ships the grammar as package data and maps the sub-packages."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import setuptools

from rlm_dsl.compiler.parser import grammar

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "README.md", "grammar", "compiler", "runtime", "rlm_dsl")


def test_grammar_loads_from_the_installed_package() -> None:
    assert grammar() is grammar()  # built once
    assert "chunk" in {t.pattern.value for t in grammar().terminals if t.pattern.type == "str"}


def _can_build_wheels() -> bool:
    """setuptools builds wheels itself from 70.1; before that it needs the `wheel` package."""
    major, minor = (int(x) for x in setuptools.__version__.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.mark.skipif(not _can_build_wheels(), reason="needs setuptools>=70.1 or `wheel`")
def test_wheel_contains_the_grammar(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    tree.mkdir()
    for name in SOURCES:  # build from a copy so concurrent work in the checkout is untouched
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.exists():
            shutil.copy2(source, tree / name)
        else:
            (tree / name).write_text("rlm-dsl\n", encoding="utf-8")
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check",
         "--outdir", str(dist)],
        cwd=tree, check=True, capture_output=True, text=True, timeout=300,
    )
    (wheel,) = dist.glob("rlm_dsl-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rlm_dsl/grammar/rlm.lark" in names
    assert "rlm_dsl/compiler/parser.py" in names and "rlm_dsl/py.typed" in names
    assert not any(n.startswith(("compiler/", "runtime/", "grammar/")) for n in names)
