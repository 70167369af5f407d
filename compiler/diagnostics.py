"""Diagnostics: compile errors with spans, rendered gcc-style with the source line and a caret.

Every stage of the compiler reports problems as :class:`Diagnostic` values; the driver collects
them, sorts them by position and raises one :class:`CompileError` (a :class:`SpecError`, exit 1)
whose text is every diagnostic rendered like::

    triage.rlm:7:5: error: unknown name 'windws'
        7 | map windws -> incidents: list[Incident]
          |     ^^^^^^
          = hint: did you mean 'windows'?
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rlm_dsl.compiler.source import Span
from rlm_dsl.errors import SpecError

# Long lines (minified JSON, 200K-char fuzz lines) are shown as a window around the caret.
_MAX_SHOWN = 160
_CONTEXT_BEFORE = 60


@dataclass(frozen=True, slots=True)
class Diagnostic:
    span: Span
    message: str
    hint: str | None = None

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.span.file, self.span.line, self.span.col, self.message)

    def to_dict(self) -> dict[str, Any]:
        """The diagnostic as a JSON object (``rlm check --json``, ``rlm run --json``)."""
        span = self.span
        return {"file": span.file, "line": span.line, "col": span.col, "end_line": span.end_line,
                "end_col": span.end_col, "severity": "error", "message": self.message,
                "hint": self.hint}

    def render(self, text: str | None) -> str:
        """Render with the source ``text`` of ``span.file`` (``None``: header and hint only)."""
        out = [f"{self.span}: error: {self.message}"]
        if text is not None:
            out.extend(_excerpt(self.span, text))
        if self.hint:
            pad = " " * (4 + len(str(self.span.line)) + 1)  # '=' under the gutter's '|'
            out.append(f"{pad}= hint: {self.hint}")
        return "\n".join(out)


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean ...?' hint for the closest candidate, or None."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else None


def _excerpt(span: Span, text: str) -> list[str]:
    lines = text.split("\n")
    if not 1 <= span.line <= len(lines):
        return []
    line = lines[span.line - 1].rstrip("\r").replace("\t", " ")
    start = span.col - 1
    end = span.end_col - 1 if span.end_line == span.line else len(line)
    end = max(end, start + 1)
    shown, offset = line, 0
    if len(line) > _MAX_SHOWN:
        offset = max(0, start - _CONTEXT_BEFORE)
        shown = line[offset : offset + _MAX_SHOWN]
    width = max(1, min(end, offset + _MAX_SHOWN) - start)
    number = str(span.line)
    gutter = " " * len(number)
    return [
        f"    {number} | {shown}".rstrip(),
        f"    {gutter} | {' ' * (start - offset)}{'^' * width}",
    ]


class CompileError(SpecError):
    """One or more diagnostics for one or more spec files; ``str()`` renders them all.

    Diagnostics are sorted by position; those of ``primary`` (the spec being compiled) come
    before those of the recipes it uses.
    """

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: Mapping[str, str],
                 primary: str | None = None) -> None:
        self.diagnostics = tuple(
            sorted(set(diagnostics), key=lambda d: (d.span.file != primary, *d.sort_key())))
        self.sources = dict(sources)
        super().__init__(self.render())

    def to_dict(self) -> dict[str, Any]:
        return {"diagnostics": [d.to_dict() for d in self.diagnostics]}

    def render(self) -> str:
        parts = [d.render(self.sources.get(d.span.file)) for d in self.diagnostics]
        count = len(self.diagnostics)
        parts.append(f"{count} error{'s' if count != 1 else ''}")
        return "\n".join(parts)


def end_span(path: str, text: str) -> Span:
    """The span just past the last character of ``text`` (where EOF errors point)."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start a new one
    col = len(lines[-1]) + 1
    return Span(path, len(lines), col, len(lines), col + 1)
