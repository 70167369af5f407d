"""Public entry points of the front end: compile a `.rlm` spec file or text into a Plan.

:func:`compile_file` reads the spec (an unreadable, binary or non-UTF-8 file is an
:class:`~rlm_dsl.errors.InputError`, exit 2) and hands the text to the compiler driver;
:func:`compile_text` compiles text directly. Spec problems raise
:class:`~rlm_dsl.compiler.diagnostics.CompileError` (a :class:`~rlm_dsl.errors.SpecError`, exit 1)
carrying every diagnostic.
"""

from __future__ import annotations

import os

from rlm_dsl.compiler.diagnostics import CompileError, Diagnostic
from rlm_dsl.compiler.driver import MAX_SPEC_CHARS, compile_source
from rlm_dsl.compiler.plan import Plan
from rlm_dsl.compiler.source import Span
from rlm_dsl.errors import InputError

__all__ = ["compile_file", "compile_text", "read_spec"]

_MAX_SPEC_BYTES = 4 * MAX_SPEC_CHARS  # UTF-8 takes at most 4 bytes per character


def read_spec(path: str | os.PathLike[str]) -> str:
    """The text of the spec at ``path``; InputError when it cannot be read as UTF-8 text."""
    name = os.fspath(path)
    if os.path.isdir(name):
        raise InputError(f"{name}: is a directory, not a spec file")
    try:
        with open(name, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(_MAX_SPEC_BYTES + 1)
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read: {exc.strerror or exc}") from None
    if size > _MAX_SPEC_BYTES:
        head = Span(name, 1, 1, 1, 2)
        raise CompileError([Diagnostic(head, f"spec is too large ({size:,} bytes; the limit is "
                                             f"{MAX_SPEC_CHARS:,} characters)")], {})
    if b"\0" in data[:8192]:
        raise InputError(f"{name}: is a binary file, not a spec (found NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - data.rfind(b"\n", 0, exc.start)
        raise InputError(f"{name}:{line}:{col}: is not UTF-8 text "
                         f"(byte 0x{data[exc.start]:02x})") from None
    return text.removeprefix("\ufeff")


def compile_file(path: str | os.PathLike[str]) -> Plan:
    """Compile the spec file at ``path`` (and the recipes it uses) into a Plan."""
    return compile_source(read_spec(path), os.fspath(path))


def compile_text(text: str, path: str = "<string>") -> Plan:
    """Compile spec ``text``; ``path`` names it in messages and anchors relative ``use`` paths."""
    return compile_source(text, path)
