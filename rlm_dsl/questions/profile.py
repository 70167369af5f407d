"""Input profile: what the planner of ``rlm ask`` is told about the inputs before it plans.

Planner stage (``rlm ask``). :func:`profile_inputs` resolves the paths given on the command line
(files, directories — hidden files skipped — and globs), reads a sample from the head of each
file and describes the whole: the input kind the language would read it as (``jsonl``, ``csv``,
``parquet`` by extension or content, ``log`` when the shipped log formats recognise most sample
lines, else ``text``), the size in bytes, lines and estimated tokens (4 characters a token, the
test LM's and roughly the local model's rate), a few sample rows, the detected log format or
record delimiter, the columns (DuckDB reads the structured kinds) and whether rows carry a time.
Nothing here loads a whole input into memory.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field

import duckdb

from rlm_dsl.errors import InputError
from rlm_dsl.runtime.logs.formats import FORMATS
from rlm_dsl.runtime.logs.load import expand_paths

SAMPLE_BYTES = 64 * 1024
SAMPLE_ROWS = 5
_STRUCTURED = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "csv",
               ".parquet": "parquet"}
_LOG_COLUMNS = ("ts", "level", "host", "process", "pid", "component", "message")
_DELIMITERS = ("---", "***", "===", "")
_TIME_KEYS = {"ts", "time", "timestamp", "@timestamp", "datetime"}  # JSON lines that are logs


@dataclass(frozen=True)
class InputProfile:
    """What the planner knows about the inputs (see the module docstring)."""

    paths: tuple[str, ...]
    files: tuple[str, ...]
    kind: str
    bytes: int
    lines: int
    tokens: int
    sample: tuple[str, ...]
    log_format: str | None = None
    delimiter: str | None = None
    columns: tuple[str, ...] = field(default_factory=tuple)
    timed: bool = False

    def describe(self) -> str:
        """The profile as the planner's LM reads it."""
        parts = [f"kind: {self.kind}", f"files: {len(self.files)}",
                 f"size: {self.bytes:,} bytes, about {self.lines:,} lines, "
                 f"{self.tokens:,} tokens"]
        if self.log_format:
            parts.append(f"log format: {self.log_format}")
        if self.delimiter is not None:
            parts.append(f"record delimiter: {self.delimiter or 'blank line'!r}")
        if self.columns:
            parts.append("columns: " + ", ".join(self.columns))
        parts.append("time column: " + ("yes" if self.timed else "no"))
        parts.append("sample rows:\n" + "\n".join(s[:120] for s in self.sample[:3]))
        return "\n".join(parts)


def profile_inputs(paths: list[str]) -> InputProfile:
    """Profile the inputs at ``paths`` (see the module docstring)."""
    files = expand_paths([os.path.expanduser(p) for p in paths])
    heads = {path: _head(path) for path in files}
    size = sum(os.path.getsize(p) for p in files)
    kinds = Counter(_kind(path, heads[path]) for path in files)
    kind = kinds.most_common(1)[0][0] if len(kinds) == 1 else "text"
    sample_lines = [line for head in heads.values() for line in head.splitlines() if line.strip()]
    head_bytes = sum(len(h.encode()) for h in heads.values()) or 1
    lines = round(sum(h.count("\n") for h in heads.values()) * size / head_bytes)
    log_format = _log_format(sample_lines) if kind == "log" else None
    columns = _columns(kind, files[0]) if kind in ("jsonl", "csv", "parquet") else ()
    if kind == "log":
        columns = _LOG_COLUMNS
    return InputProfile(
        paths=tuple(paths), files=tuple(files), kind=kind, bytes=size, lines=max(lines, 1),
        tokens=-(-size // 4), sample=tuple(sample_lines[:SAMPLE_ROWS]), log_format=log_format,
        delimiter=_delimiter(sample_lines, heads) if kind == "text" else None,
        columns=columns, timed=kind == "log" and log_format is not None,
    )


def _head(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(SAMPLE_BYTES)
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if path.endswith(".parquet"):
        return ""
    if b"\0" in data:
        raise InputError(f"{path}: binary file, not text")
    return data.decode("utf-8", errors="replace")


def _kind(path: str, head: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension in _STRUCTURED:
        return _STRUCTURED[extension]
    lines = [line for line in head.splitlines()[:50] if line.strip()]
    objects = [_json_object(line) for line in lines[:-1] or lines]  # the last may be cut off
    if lines and all(o is not None for o in objects):
        timed = all(_TIME_KEYS & set(o) for o in objects if o is not None)
        return "log" if timed else "jsonl"
    if lines and _log_format(lines) is not None:
        return "log"
    return "log" if extension == ".log" else "text"


def _json_object(line: str) -> dict | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _log_format(lines: list[str]) -> str | None:
    """The shipped log format most of ``lines`` match (RE2, as the loader detects), if any."""
    sample = lines[:50]
    if not sample:
        return None
    con = duckdb.connect()
    best, hits = None, 0
    for name, fmt in FORMATS.items():
        if not fmt.detect:
            continue
        matched = con.execute("SELECT count(*) FROM unnest(?) t(line) WHERE "
                              "regexp_matches(line, ?)", [sample, fmt.detect]).fetchone()[0]
        if matched > hits:
            best, hits = name, matched
    con.close()
    return best if hits * 10 >= len(sample) * 6 else None


def _delimiter(lines: list[str], heads: dict[str, str]) -> str | None:
    counts = Counter(line.strip() for line in lines)
    for mark in _DELIMITERS[:-1]:
        if counts[mark] >= 2:
            return mark
    blank = sum(h.count("\n\n") for h in heads.values())
    return "" if blank >= 2 else None


def _columns(kind: str, path: str) -> tuple[str, ...]:
    reader = {"jsonl": "read_json_auto", "csv": "read_csv_auto", "parquet": "read_parquet"}[kind]
    con = duckdb.connect()
    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {reader}(?)", [path]).fetchall()
    except duckdb.Error:
        return ()
    finally:
        con.close()
    return tuple(str(row[0]) for row in rows)
