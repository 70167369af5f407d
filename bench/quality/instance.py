"""The task instance the quality bench builds, runs and scores.

Bench task stage (shared by :mod:`.tasks` and :mod:`.logs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Instance:
    task: str
    size: int            # the task's own size unit (tokens, items, docs, lines)
    tokens: int          # estimated input tokens (chars / 4), the plot's x axis
    question: str
    gold: Any
    metric: str
    text_path: str       # the whole input as text: what vanilla and rlm read
    recipe: str          # recipe path, relative to the repository root
    inputs: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    extract: str = "answer"   # how the recipe's outputs become an answer (methods.recipe_answer)
    labels: tuple[str, ...] = ()


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def text_tokens(text: str) -> int:
    return -(-len(text) // 4)


