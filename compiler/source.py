"""Source positions: the :class:`Span` every AST node, diagnostic and plan step carries.

Lines and columns are 1-based, ``end_col`` is exclusive, and ``file`` is the path as the user gave
it, so a span renders directly as ``file:line:col`` in messages.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"
