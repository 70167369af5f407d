"""Log fields found anywhere in a line: level, syslog header, key=value pairs — as SQL.

This is the *per-line* part of the log format table, used for lines no file-wide format
matched (a file mixing formats, or one in no known format): :func:`level_any_sql` finds a level
where daemons put it (``[ERROR]``, ``ERROR:``, ``svc[pid]: error:``, ``[core:error]``,
``level=warn``, ``user.warn``, glog/logcat/CUPS/Rails one-letter levels, ESXi ``In(14)``),
:func:`header_sql` reads ``host process[pid]:`` after a timestamp, and :func:`kv_map_sql`
turns ``key=value`` pairs into a ``MAP(VARCHAR, VARCHAR)``. Everything is RE2 inside DuckDB.
"""

from __future__ import annotations

import re

from rlm_dsl.runtime.logs.sql import sql_str, with_struct

LEVEL_WORDS = (
    "trace|debug|dbg|verbose|info|information|notice|warn|warning|error|err|crit|critical|"
    "fatal|severe|alert|emerg|panic"
)
_UPPER = LEVEL_WORDS.upper()
_FACILITY = r"(?:kern|user|mail|daemon|auth|authpriv|syslog|lpr|news|uucp|cron|ftp|local\d)"
QUOTED = r'"(?:[^"\\]|\\.)*"'

# Each alternative captures one group; the leftmost match in the line wins.
_LEVEL_PLACES = (
    ("word", rf"\b({_UPPER})\b"),  # INFO, [ERROR], ERROR:, local.ERROR
    ("delimited", rf"[\[(|:,<]\s*((?i:{LEVEL_WORDS}))\s*[\])|:>,\s]"),  # [notice], [core:error]
    ("tagged", rf"\]:\s+((?i:{LEVEL_WORDS}))[:\s]"),  # sshd[811]: error: ...
    ("tabbed", rf"\t((?i:{LEVEL_WORDS}))\t"),  # zap console
    ("kv", rf"(?i:level|lvl|severity|loglevel)\"?\s*[=:]\s*\"?((?i:{LEVEL_WORDS}))\b"),
    ("facility", rf"\b{_FACILITY}\.((?i:{LEVEL_WORDS}))\b"),  # unifi user.warn
    ("esx", r"\b(In|Wa|Er|Db|No|Cr|Al|Em|Vb)\(\d+\)"),  # ESXi In(14)
    ("letter", r"^([IWEFDV])\d{4}|^([DIWEF]), \[|^([DIWEX]) \[|"
     r"^\d\d-\d\d \S+(?:\s+\S+)?\s+\d+\s+\d+\s+([VDIWEF]) |^\d\d-\d\d \S+ ([VDIWEF])/"),
)
# Every spelling a level is written in (upper-cased) → TRACE, DEBUG, INFO, WARN, ERROR, FATAL.
_LEVEL_NAMES = {
    **{k: "TRACE" for k in ("TRACE", "FINEST", "FINER", "VERBOSE", "V", "VB")},
    **{k: "DEBUG" for k in ("DEBUG", "DBG", "FINE", "D", "DB")},
    **{k: "INFO" for k in (
        "INFO", "INF", "INFORMATION", "NOTICE", "NOTE", "CONFIG", "I", "IN", "NO")},
    **{k: "WARN" for k in ("WARN", "WARNING", "WRN", "W", "WA")},
    **{k: "ERROR" for k in ("ERROR", "ERR", "SEVERE", "E", "ER")},
    **{k: "FATAL" for k in (
        "FATAL", "CRITICAL", "CRIT", "EMERG", "EMERGENCY", "ALERT", "PANIC", "F", "X", "CR", "AL",
        "EM")},
}
_LEVEL_MAP = "MAP {" + ", ".join(f"'{k}': '{v}'" for k, v in _LEVEL_NAMES.items()) + "}"


def level_sql(expr: str) -> str:
    """Normalise a level spelling (``warning``, ``ERR``, ``CRITICAL``, ``I``…) to TRACE…FATAL;
    NULL for anything else. ``expr`` appears once, so a costly expression is not repeated."""
    return f"{_LEVEL_MAP}[upper(trim({expr}))]"


def syslog_level_sql(pri: str) -> str:
    """Level from a syslog ``<PRI>`` or journald ``PRIORITY``: severity = value mod 8."""
    sev = f"(try_cast({pri} AS INTEGER) % 8)"
    return (
        f"(CASE WHEN {sev} <= 2 THEN 'FATAL' WHEN {sev} = 3 THEN 'ERROR' "
        f"WHEN {sev} = 4 THEN 'WARN' WHEN {sev} <= 6 THEN 'INFO' WHEN {sev} = 7 THEN 'DEBUG' END)"
    )


def level_any_sql(line: str = "line") -> str:
    """The level written anywhere in the first 200 characters of ``line`` (NULL if none)."""
    pattern = "|".join(regex for _, regex in _LEVEL_PLACES)
    groups = re.compile(pattern).groups
    names = ", ".join(f"'g{i}'" for i in range(groups))
    found = f"regexp_extract(left({line}, 200), {sql_str(pattern)}, [{names}])"
    values = " || ".join(f"f.g{i}" for i in range(groups))
    return with_struct(found, "f", level_sql(values))


# After a timestamp: ``host [facility.level] process[pid]:`` (syslog, journald short, Mac).
HEADER = (
    r"^\]?\s+([\w.\-:@/]+)\s+(?:[a-z]+\.[a-z]+\s+)?([^\s\[\]:(]+(?:\([^)]*\))?)"
    r"(?:\[(\d+)\])?:\s"
)
def header_sql(rest: str) -> str:
    """A STRUCT (host, process, pid) read from ``rest``, the text after a line's timestamp."""
    return f"regexp_extract({rest}, {sql_str(HEADER)}, ['host', 'process', 'pid'])"


_PAIR = rf"([A-Za-z_][\w.\-]*)=({QUOTED}|[^\s\"]*)"


def kv_map_sql(text: str, pair: str = _PAIR) -> str:
    """``key=value`` pairs of ``text`` as a MAP(VARCHAR, VARCHAR) (quotes removed; NULL if none).

    ``pair`` is the RE2 pattern of one pair (groups: key, value). A key written twice keeps its
    first value.
    """
    keys = f"regexp_extract_all({text}, {sql_str(pair)}, 1)"
    values = f"regexp_extract_all({text}, {sql_str(pair)}, 2)"
    unquoted = "list_transform(kv.v, lambda x: regexp_replace(x, '^\"(.*)\"$', '\\1'))"
    first = (
        f"list_filter(list_zip(kv.k, {unquoted}), lambda e, i: list_position(kv.k, e[1]) = i)"
    )
    return with_struct(
        f"{{'k': {keys}, 'v': {values}}}",
        "kv",
        f"CASE WHEN len(kv.k) > 0 THEN map_from_entries({first}) END",
    )
