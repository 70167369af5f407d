"""Actions a small root model writes, made runnable or answered without running them again.

REPL stage, used by :class:`~rlm_dsl.runtime.repl.module.RlmStep`. A 0.5B root model often writes
a bare SQL query as its action, or repeats a failed action word for word. :func:`as_sql_call`
turns a cell that is not Python but reads as one SQL statement into ``print(sql("…"))``;
:class:`FailedActions` remembers each failed action of an invocation so that the same code is
answered with the earlier error and a sharper hint instead of being run again; and
:func:`raw_context` tells when an extracted answer is only text copied out of the input, which
the step must not submit as its answer.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

_SQL_START = re.compile(r"^\s*(SELECT|WITH|FROM|DESCRIBE|SHOW|PRAGMA|SUMMARIZE)\b", re.I)
_SPACE = re.compile(r"\s+")
RAW_CONTEXT_CHARS = 200  # an answer this long found word for word in the input is a copy


def as_sql_call(code: str) -> str:
    """``print(sql("…"))`` for a cell that is one SQL statement and not Python; else ``code``."""
    text = code.strip().rstrip(";").strip()
    if not _SQL_START.match(text) or ";" in text:
        return code
    try:
        ast.parse(code)
    except SyntaxError:
        return f"print(sql({text!r}))"
    return code


def _key(code: str) -> str:
    return _SPACE.sub(" ", code).strip()


class FailedActions:
    """The failed actions of one invocation: normalised code → (iteration, error)."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, str]] = {}

    def repeat(self, code: str) -> str | None:
        """The answer to ``code`` when it repeats a failed action, else None (run it)."""
        earlier = self.seen.get(_key(code))
        if earlier is None:
            return None
        iteration, error = earlier
        return (f"[Error] Not run: this is the same code as iteration {iteration}, which failed "
                f"with:\n{error.strip()[:600]}\nIt would fail again. {hint(error)}")

    def note(self, code: str, result: object, iteration: int) -> None:
        if isinstance(result, str) and result.startswith("[Error]"):
            self.seen.setdefault(_key(code), (iteration, result))


def hint(error: str) -> str:
    """What to do instead, by the kind of error."""
    if "SyntaxError" in error:
        return ("Write one Python cell: query tables with print(sql(\"SELECT ...\")), read text "
                "with print(context[:2000]), and finish with SUBMIT(answer=...).")
    if "NameError" in error:
        return "Define every name before using it, or use only context, sql(...) and SUBMIT."
    return "Change the code: try a different query or a smaller slice of the context."


def raw_context(answer: object, search: Callable[[str, int], list]) -> bool:
    """Whether ``answer`` is input text copied as it is — at least ``RAW_CONTEXT_CHARS`` long,
    and most of its lines found word for word among the input's rows (``search(regex, limit)``
    is the ``context`` search) — rather than an answer."""
    if not isinstance(answer, str) or len(answer.strip()) < RAW_CONTEXT_CHARS:
        return False
    lines = [line.strip() for line in answer.splitlines() if len(line.strip()) >= 20][:20]
    if not lines:
        return False
    copied = sum(1 for line in lines if search(re.escape(line), 1))
    return copied * 2 > len(lines)
