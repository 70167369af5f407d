"""The runtime's shape: stage packages that import each other without cycles.

Reads the import statements of every module of ``rlm_dsl`` (its AST, nothing is imported) and
checks what STYLE.md "The runtime's shape" asks: no import cycle between the runtime's packages
(each top-level module counts as its own unit), the compiler never imports the runtime, the
runtime never imports the public API or the CLI, at most five loose modules at the top of
``runtime/``, and a function-level import only with a comment saying why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

import rlm_dsl
import rlm_dsl.compiler
import rlm_dsl.runtime

ROOTS = {"rlm_dsl.runtime": Path(rlm_dsl.runtime.__file__).parent,
         "rlm_dsl.compiler": Path(rlm_dsl.compiler.__file__).parent,
         "rlm_dsl": Path(rlm_dsl.__file__).parent}


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in ROOTS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.setdefault(".".join([package, *parts]), path)
    return found


MODULES = _modules()


def _imports(name: str) -> list[tuple[ast.stmt, str, bool]]:
    """``(statement, imported module, inside a function)`` for every import of ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nested = {id(node) for fn in ast.walk(tree)
              if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
              for node in ast.walk(fn) if isinstance(node, ast.Import | ast.ImportFrom)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: len(name.split(".")) - node.level
                                         + (path.name == "__init__.py")]
                base = ".".join([*package, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        out.extend((node, t, id(node) in nested) for t in targets)
    return out


def _unit(name: str) -> str | None:
    parts = name.split(".")
    return ".".join(parts[:3]) if parts[:2] == ["rlm_dsl", "runtime"] and len(parts) > 2 else None


def test_no_import_cycle_between_runtime_packages() -> None:
    graph = nx.DiGraph()
    for name in MODULES:
        for _, target, _ in _imports(name):
            a, b = _unit(name), _unit(target)
            if a and b and a != b and target in MODULES:
                graph.add_edge(a, b)
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert cycles == []


@pytest.mark.parametrize("importer, forbidden", [
    ("rlm_dsl.compiler", ("rlm_dsl.runtime", "rlm_dsl.api", "rlm_dsl.cli")),
    ("rlm_dsl.runtime", ("rlm_dsl.api", "rlm_dsl.cli")),
])
def test_stages_import_downwards_only(importer: str, forbidden: tuple[str, ...]) -> None:
    bad = sorted({f"{name} -> {target}" for name in MODULES if name.startswith(importer + ".")
                  for _, target, _ in _imports(name) if target.startswith(forbidden)})
    assert bad == []


def test_at_most_five_loose_runtime_modules() -> None:
    loose = [p.stem for p in ROOTS["rlm_dsl.runtime"].glob("*.py") if p.stem != "__init__"]
    assert len(loose) <= 5, sorted(loose)


def test_function_level_imports_say_why() -> None:
    """Only where they save start-up time (or load an optional extra), with a comment."""
    silent = []
    for name, path in MODULES.items():
        if not name.startswith("rlm_dsl.runtime."):
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, _, nested in _imports(name):
            first = node.lineno - 1
            while lines[first - 1].strip().startswith(("import ", "from ")):
                first -= 1  # a block of imports: its first line or the one above says why
            if nested and "#" not in lines[first] and not lines[first - 1].strip().startswith("#"):
                silent.append(f"{path.name}:{node.lineno}")
    assert sorted(set(silent)) == []
