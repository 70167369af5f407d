"""How slot values enter a generated spec: as data, never as code.

Planner stage (``rlm ask``). A question and the slots filled from it are values; a strategy
template places them only through these filters, so a question holding quotes, ``%``, ``{{ }}``,
``'``, ``;`` or SQL cannot change a plan's code. :func:`rlm_string` writes a ``.rlm`` string
literal (the spec's own escapes: a ``param`` default or an option value, which the runtime
treats as data). :func:`sql_term` writes a DuckDB regex string literal that matches the term as
written, case-insensitively: every character outside ``[A-Za-z0-9 _-]`` becomes an RE2 ``\\x{HH}``
escape, so the literal holds no quote, no Jinja delimiter and no regex metacharacter.
:func:`label` and :func:`column` admit only plain names (enum labels, column names), which is
what the language allows there anyway.
"""

from __future__ import annotations

import re

_PLAIN = re.compile(r"[A-Za-z0-9 _-]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RLM_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}
# Words the language reserves; an enum label or a column cannot be one of them.
_RESERVED = frozenset({"true", "false", "none", "str", "int", "float", "bool", "list", "id"})


def rlm_string(value: str) -> str:
    """``value`` as a one-line ``.rlm`` string literal (``"…"`` with the spec's escapes; other
    control characters, which the language cannot escape, become spaces)."""
    return '"' + "".join(_RLM_ESCAPES.get(ch) or (" " if _control(ch) else ch)
                         for ch in value) + '"'


def rlm_paths(paths: list[str]) -> str:
    """One path as a ``.rlm`` string literal, several as a list of them."""
    literals = [rlm_string(p) for p in paths]
    return literals[0] if len(literals) == 1 else "[" + ", ".join(literals) + "]"


def _control(ch: str) -> bool:
    return ord(ch) < 32 or ord(ch) == 127


def term_regex(term: str) -> str:
    """An RE2 pattern matching ``term`` literally, case-insensitively (see the module doc)."""
    body = "".join(ch if _PLAIN.fullmatch(ch) else f"\\x{{{ord(ch):x}}}" for ch in term)
    return "(?i)" + body


def sql_term(term: str) -> str:
    """``term_regex(term)`` as a SQL string literal (it holds no quote to escape)."""
    return f"'{term_regex(term)}'"


def label(value: str) -> str | None:
    """``value`` as an enum label (lower case, other characters as ``_``); None if unusable."""
    name = re.sub(r"[^a-z0-9_]+", "_", value.strip().lower()).strip("_")
    if name[:1].isdigit():
        name = "n_" + name
    return name if _NAME.fullmatch(name) and name not in _RESERVED else None


def column(value: str | None, columns: tuple[str, ...]) -> str | None:
    """``value`` when it is one of ``columns`` and a plain name; else None."""
    if value and value in columns and _NAME.fullmatch(value) and value not in _RESERVED:
        return value
    return None
