"""The log format type: how one format is recognised, where records start, and its columns.

A :class:`LogFormat` says how to recognise a line (``detect``, used on a sample to pick the
format of a file), how a new record starts (``start``; multi-line formats fold every other line
into the record above), and how to turn a line into the columns of a log table: either one
``regexp_extract`` with a list of group names (a DuckDB STRUCT called ``m``) or any SQL building
``m`` (``struct``). Column expressions are SQL over ``m``, ``line`` and ``file_time`` (the
file's mtime, for timestamps without a year); ``record_columns`` are recomputed from a folded
multi-line record's ``text``. Nothing here runs per line in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rlm_dsl.runtime.logs.sql import sql_str

# The parsed columns a format may fill, in table order (docs/architecture.md).
PARSED = (
    "ts", "level", "host", "process", "pid", "component", "client", "method", "path", "status",
    "bytes", "referrer", "user_agent", "fields",
)


@dataclass(frozen=True, slots=True)
class LogFormat:
    """One log format: how to detect it, where records start, and its column expressions."""

    name: str
    detect: str  # RE2 pattern a well-formed record line matches
    pattern: str = ""  # RE2 pattern with positional groups named by ``groups``
    groups: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)  # column -> SQL over m / line
    ok: str = ""  # SQL: the line parsed (defaults to "the line matches ``pattern``")
    start: str | None = None  # RE2: a line that starts a record (multi-line formats)
    continuation: str | None = None  # RE2: a line that continues the record above (else start)
    struct: str = ""  # SQL building ``m`` when not a regexp_extract
    ingest_struct: str = ""  # a cheaper ``m`` with only what ``ok`` and the stored ``ts`` read
    record_columns: dict[str, str] = field(default_factory=dict)  # column -> SQL over text

    def struct_sql(self) -> str:
        """The SQL expression producing the STRUCT ``m`` for one ``line``."""
        if self.struct:
            return self.struct
        names = ", ".join(sql_str(g) for g in self.groups)
        return f"regexp_extract(line, {sql_str(self.pattern)}, [{names}])"

    def ingest_struct_sql(self) -> str:
        """The SQL building ``m`` at ingest, where only ``ok`` and ``columns["ts"]`` read it (the
        view derives the other columns with :meth:`struct_sql`)."""
        return self.ingest_struct or self.struct_sql()

    @property
    def multiline(self) -> bool:
        """Whether records may span lines (``start`` or ``continuation`` is set)."""
        return self.start is not None or self.continuation is not None

    def starts_record_sql(self) -> str:
        """SQL that is true when ``line`` starts a record (multi-line formats only)."""
        if self.start is not None:
            return f"regexp_matches(line, {sql_str(self.start)})"
        return f"NOT regexp_matches(line, {sql_str(self.continuation or '')})"

    def ok_sql(self) -> str:
        """SQL that is true when ``line`` parsed as this format."""
        return self.ok or f"m.{self.groups[0]} <> ''"


def group(name: str) -> str:
    """A captured group of ``m`` as SQL, NULL when it did not match."""
    return f"nullif(m.{name}, '')"


def int_group(name: str) -> str:
    """A captured group of ``m`` as BIGINT (NULL when absent or not a number)."""
    return f"try_cast(nullif(m.{name}, '') AS BIGINT)"
