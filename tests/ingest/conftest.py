"""Fixtures for the input and chunking tests: step builders and files on disk (the ``store``
fixture is the root conftest's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.source import Span
from rlm_dsl.runtime.lm.tokens import TokenCounter, estimate_tokens

SPAN = Span("test.rlm", 1, 1, 1, 2)
ESTIMATE = TokenCounter("estimate (chars/4)", estimate_tokens, estimated=True)


def input_step(kind: str, name: str = "x", **options: Any) -> Step:
    return Step(
        id=f"input-{name}",
        kind="input",
        name=name,
        table=name,
        span=SPAN,
        strategy=kind,
        options=options,
    )


def chunk_step(strategy: str, *args: Any, source: str = "x", **options: Any) -> Step:
    return Step(
        id="chunk-c",
        kind="chunk",
        name="c",
        table="c",
        span=SPAN,
        source=source,
        strategy=strategy,
        args=args,
        options=options,
    )


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, str | bytes], str]:
    """``write(name, content)`` creates ``tmp_path/name`` and returns its path."""

    def make(name: str, content: str | bytes) -> str:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        path.write_bytes(data)
        return str(path)

    return make
