"""Log formats: the table of formats the log parser runs inside DuckDB, and the per-line parse.

This is the *format table* stage of log ingest. :data:`FORMATS` holds every file-wide format
(:mod:`~rlm_dsl.runtime.logs.formats_daemon`, :mod:`~rlm_dsl.runtime.logs.formats_app`), most
specific first; ``generic`` is the per-line parse: the leftmost timestamp of any known shape
(:mod:`~rlm_dsl.runtime.logs.timestamps`), a level from any common position, and a syslog-style
``host process[pid]:`` header after the timestamp (:mod:`~rlm_dsl.runtime.logs.fields`). A file
is parsed with the format that matches most of its first lines; every line that format does not
match falls back to the generic parse, so a file that mixes formats still gets its timestamps.
"""

from __future__ import annotations

from rlm_dsl.runtime.logs.fields import (
    LEVEL_WORDS,
    header_sql,
    kv_map_sql,
    level_any_sql,
    level_sql,
)
from rlm_dsl.runtime.logs.formats_app import java_python_formats, json_format, logfmt_format
from rlm_dsl.runtime.logs.formats_daemon import (
    access_formats,
    journal_export_format,
    syslog_formats,
    web_error_formats,
)
from rlm_dsl.runtime.logs.logformat import PARSED, LogFormat
from rlm_dsl.runtime.logs.sql import sql_str
from rlm_dsl.runtime.logs.timestamps import SHAPES, epoch_sql, find_ts_sql, ts_sql

__all__ = ["FORMATS", "GENERIC", "PARSED", "RAW", "LogFormat", "generic_columns", "sql_str"]

_LEAD = r"^[\[(\"]?"  # a timestamp may open the line inside brackets, parentheses or quotes
_REST_LEVEL = rf"^[\])\"]?:?[\s,|-]*\[?\s*((?i:{LEVEL_WORDS}))\s*\]?(?::|\s|$)"
_LEVEL_HEAD = rf"^[\])\"]?:?[\s,|-]*(?:\[\s*(?i:{LEVEL_WORDS})\s*\]|(?i:{LEVEL_WORDS})\b:?)?\s*"


def ts_text_sql(found: str) -> str:
    """The text of the timestamp a :func:`find_ts_sql` STRUCT ``found`` matched ('' if none)."""
    return "concat(" + ", ".join(f"{found}.{name}" for name, _ in SHAPES) + ")"


def after_ts_sql(found: str) -> str:
    """The part of ``line`` after the timestamp ``found`` matched (the whole line if none)."""
    text = ts_text_sql(found)
    return (
        f"(CASE WHEN {text} = '' THEN line "
        f"ELSE substr(line, strpos(line, {text}) + length({text})) END)"
    )


def generic_columns(found: str, header: str) -> dict[str, str]:
    """Columns of the per-line parse, over ``found`` (:func:`find_ts_sql` of ``line``) and
    ``header`` (:func:`header_sql` of the text after the timestamp)."""
    rest = after_ts_sql(found)
    after_header = (
        f"(CASE WHEN {header}.host <> '' THEN substr({rest}, length(regexp_extract({rest}, "
        f"'^\\]?\\s+\\S+\\s+(?:[a-z]+\\.[a-z]+\\s+)?[^:]*:\\s')) + 1) ELSE {rest} END)"
    )
    real = f"{level_sql(f'{header}.host')} IS NULL"  # a level word is no host (Spark's INFO)
    return {
        "ts": f"coalesce({ts_sql(found, 'file_time')}, {epoch_sql('line')})",
        "level": f"coalesce({level_sql(f'regexp_extract({rest}, {sql_str(_REST_LEVEL)}, 1)')}, "
        f"{level_any_sql('line')})",
        "host": f"CASE WHEN {real} THEN nullif({header}.host, '') END",
        "process": f"CASE WHEN {real} THEN nullif({header}.process, '') END",
        "pid": f"CASE WHEN {real} THEN try_cast(nullif({header}.pid, '') AS BIGINT) END",
        "fields": f"(CASE WHEN contains(line, '=') THEN {kv_map_sql('line')} END)",
        "message": f"regexp_replace({after_header}, {sql_str(_LEVEL_HEAD)}, '')",
    }


def generic_header_sql(found: str) -> str:
    """The :func:`header_sql` STRUCT of the text after the timestamp ``found`` matched."""
    return header_sql(after_ts_sql(found))


def generic_ok_sql(found: str) -> str:
    """True when the per-line parse found a timestamp (of any shape, or an epoch)."""
    return f"({ts_text_sql(found)} <> '' OR {epoch_sql('line')} IS NOT NULL)"


# Lines that continue the record above in a file of mixed lines: indented lines (stack frames,
# wrapped messages), Java's "Caused by:" and "... 12 more", Python's traceback, blank lines.
_CONTINUATION = r"^(?:\s|$|Caused by: |Traceback \(|\.\.\. \d+ more)"
_ANY_TS = "|".join(regex.replace("^", "") for _, regex in SHAPES)
GENERIC = LogFormat(
    name="generic",
    detect=f"{_LEAD}(?:{_ANY_TS})",
    struct=find_ts_sql("line"),
    ok=generic_ok_sql("m"),
    continuation=_CONTINUATION,
    columns=generic_columns("m", "h"),
)

# Detection tie-breaks follow this order: more specific formats first.
FORMATS: dict[str, LogFormat] = {
    f.name: f
    for f in [
        json_format(),
        journal_export_format(),
        *syslog_formats(),
        *web_error_formats(),
        *access_formats(),
        *java_python_formats(),
        logfmt_format(),
        GENERIC,
    ]
}

# The fallback when no format matches a file: every line is a record, parsed line by line.
RAW = LogFormat(name="raw", detect="", struct="NULL", ok="false")
