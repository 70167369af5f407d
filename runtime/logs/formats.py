"""Log formats: the RE2 patterns and SQL column expressions the log parser runs inside DuckDB.

This is the *format table* stage of log ingest. Each :class:`LogFormat` says how to recognise a
line (``detect``, used on a sample to pick the format of a file), how a new record starts
(``start``; multi-line formats fold every other line into the record above), and how to turn a
line into the columns of a log table: either one ``regexp_extract`` with a list of group names
(a DuckDB STRUCT called ``m``) or, for JSON lines and logfmt, a ``struct_pack`` of extractions.
Column expressions are SQL over ``m`` and ``line``; nothing here runs per line in Python.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from rlm_dsl.runtime.store.store import quote_literal as sql_str  # the log modules' short name

# Timestamp and level fragments shared by several formats (RE2 syntax).
_ISO_TS = r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_BSD_TS = r"[A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d"
_LEVEL = r"TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|SEVERE|FATAL|CRITICAL"
_ANY_LEVEL = r"(?i:trace|debug|dbg|info|notice|warn|warning|error|err|crit|critical|fatal|severe)"
_QUOTED = r'"(?:[^"\\]|\\.)*"'


def level_sql(expr: str) -> str:
    """Normalise a level spelling (``warning``, ``ERR``, ``CRITICAL``…) to TRACE…FATAL."""
    return (
        f"(CASE upper(nullif(trim({expr}), '')) "
        "WHEN 'WARNING' THEN 'WARN' WHEN 'W' THEN 'WARN' "
        "WHEN 'ERR' THEN 'ERROR' WHEN 'E' THEN 'ERROR' WHEN 'SEVERE' THEN 'ERROR' "
        "WHEN 'CRITICAL' THEN 'FATAL' WHEN 'CRIT' THEN 'FATAL' WHEN 'EMERG' THEN 'FATAL' "
        "WHEN 'ALERT' THEN 'FATAL' WHEN 'PANIC' THEN 'FATAL' "
        "WHEN 'NOTICE' THEN 'INFO' WHEN 'INFORMATION' THEN 'INFO' WHEN 'I' THEN 'INFO' "
        "WHEN 'DBG' THEN 'DEBUG' WHEN 'D' THEN 'DEBUG' WHEN 'FINE' THEN 'DEBUG' "
        "WHEN 'FINEST' THEN 'TRACE' "
        f"ELSE upper(nullif(trim({expr}), '')) END)"
    )


def syslog_level_sql(pri: str) -> str:
    """Level from a syslog ``<PRI>``: severity = PRI mod 8 (0-2 fatal … 7 debug)."""
    sev = f"(try_cast({pri} AS INTEGER) % 8)"
    return (
        f"(CASE WHEN {sev} <= 2 THEN 'FATAL' WHEN {sev} = 3 THEN 'ERROR' "
        f"WHEN {sev} = 4 THEN 'WARN' WHEN {sev} <= 6 THEN 'INFO' WHEN {sev} = 7 THEN 'DEBUG' END)"
    )


def iso_ts_sql(expr: str) -> str:
    """An ISO-8601-ish timestamp (``T`` or space, ``,`` or ``.`` fraction) as TIMESTAMP.

    Offsets are dropped: timestamps are kept as written in the log (wall-clock time).
    """
    cleaned = f"regexp_replace(replace({expr}, ',', '.'), '(Z|[+-]\\d\\d:?\\d\\d)$', '')"
    return f"try_cast({cleaned} AS TIMESTAMP)"


def bsd_ts_sql(expr: str) -> str:
    """A syslog ``Mar  1 10:00:00`` timestamp (no year: the current year) or an ISO one."""
    year = datetime.date.today().year
    return (
        f"(CASE WHEN left({expr}, 1) BETWEEN '0' AND '9' THEN {iso_ts_sql(expr)} ELSE "
        f"try_strptime('{year} ' || {expr}, '%Y %b %d %H:%M:%S') END)"
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
    struct: str = ""  # SQL building ``m`` when not a regexp_extract

    def struct_sql(self) -> str:
        """The SQL expression producing the STRUCT ``m`` for one ``line``."""
        if self.struct:
            return self.struct
        names = ", ".join(sql_str(g) for g in self.groups)
        return f"regexp_extract(line, {sql_str(self.pattern)}, [{names}])"

    def ok_sql(self) -> str:
        """SQL that is true when ``line`` parsed as this format."""
        return self.ok or f"m.{self.groups[0]} <> ''"


def _m(name: str) -> str:
    return f"nullif(m.{name}, '')"


def _syslog_formats() -> list[LogFormat]:
    rfc5424 = LogFormat(
        name="syslog5424",
        detect=r"^<\d{1,3}>\d{1,2} \S+ \S+ \S+ \S+ \S+ (?:-|\[.*\])",
        pattern=r"^<(\d{1,3})>\d{1,2} (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)"
        r" ?(.*)$",
        groups=("pri", "ts", "host", "process", "pid", "msgid", "sd", "message"),
        columns={
            "ts": iso_ts_sql("m.ts"),
            "level": syslog_level_sql("m.pri"),
            "host": "nullif(m.host, '-')",
            "process": "nullif(m.process, '-')",
            "pid": "try_cast(m.pid AS BIGINT)",
            "component": "nullif(m.msgid, '-')",
            "message": "m.message",
        },
    )
    # The pattern stops at the tag's colon and leaves out the optional <PRI>: capturing the
    # long message with ``(.*)$``, or an optional leading group, makes RE2 two to three times
    # slower, so the PRI is cut off first and the message is cut off by length.
    has_pri = "starts_with(line, '<')"
    pri = f"(CASE WHEN {has_pri} THEN substr(line, 2, strpos(line, '>') - 2) END)"
    body = f"(CASE WHEN {has_pri} THEN substr(line, strpos(line, '>') + 1) ELSE line END)"
    head = (
        f"(CASE WHEN {has_pri} THEN strpos(line, '>') ELSE 0 END + length(m.ts) + "
        "length(m.host) + length(m.process) + "
        "CASE WHEN m.pid <> '' THEN length(m.pid) + 2 ELSE 0 END + 3)"
    )
    pattern = rf"^({_BSD_TS}|{_ISO_TS}) (\S+) ([^\s\[:]+)(?:\[(\d+)\])?:"
    rfc3164 = LogFormat(
        name="syslog",
        detect=rf"^(?:<\d{{1,3}}>)?(?:{_BSD_TS}|{_ISO_TS}) \S+ [^\s\[:]+(?:\[\d+\])?: ",
        struct=f"regexp_extract({body}, {sql_str(pattern)}, ['ts', 'host', 'process', 'pid'])",
        ok="m.ts <> ''",
        columns={
            "ts": bsd_ts_sql("m.ts"),
            "level": syslog_level_sql(pri),
            "host": _m("host"),
            "process": _m("process"),
            "pid": "try_cast(nullif(m.pid, '') AS BIGINT)",
            "message": f"CASE WHEN substr(line, {head} + 1, 1) = ' ' THEN substr(line, {head} + 2) "
            f"ELSE substr(line, {head} + 1) END",
        },
    )
    return [rfc5424, rfc3164]


def _apache_formats() -> list[LogFormat]:
    head = r"^(\S+) \S+ (\S+) \[([^\]]+)\] "
    request = rf"{_QUOTED} (\d{{3}}) (?:\d+|-)"
    cols = {
        "ts": "try_strptime(left(m.ts, 20), '%d/%b/%Y:%H:%M:%S')",
        "level": "(CASE WHEN m.status >= '500' THEN 'ERROR' WHEN m.status >= '400' THEN 'WARN' "
        "ELSE 'INFO' END)",
        "host": _m("host"),
        "component": "nullif(m.user, '-')",
        "message": "m.message",
    }
    groups = ("host", "user", "ts", "message", "status")
    combined = LogFormat(
        name="apache_combined",
        detect=rf"^\S+ \S+ \S+ \[[^\]]+\] {request} {_QUOTED} {_QUOTED}",
        pattern=rf"{head}({request} {_QUOTED} {_QUOTED}.*)$",
        groups=groups,
        columns=cols,
    )
    common = LogFormat(
        name="apache_common",
        detect=rf"^\S+ \S+ \S+ \[[^\]]+\] {request}\s*$",
        pattern=rf"{head}({request})\s*$",
        groups=groups,
        columns=cols,
    )
    return [combined, common]


def _json_format() -> LogFormat:
    def pick(*keys: str) -> str:
        paths = ", ".join(sql_str(f"$.{k}") for k in keys)
        return f"list_filter(json_extract_string(line, [{paths}]), lambda x: x IS NOT NULL)[1]"

    struct = (
        "struct_pack(ts := {ts}, level := {level}, host := {host}, process := {process}, "
        "pid := {pid}, component := {component}, message := {message})"
    ).format(
        ts=pick("timestamp", "ts", "time", "@timestamp", "datetime", "date"),
        level=pick("level", "severity", "lvl", "loglevel", "levelname", "log_level"),
        host=pick("host", "hostname"),
        process=pick("process", "service", "app", "program"),
        pid=pick("pid", "process_id"),
        component=pick("logger", "component", "module", "name", "logger_name", "source"),
        message=pick("message", "msg", "event", "text", "log"),
    )
    epoch = "try_cast(m.ts AS DOUBLE)"
    return LogFormat(
        name="jsonl",
        detect=r"^\s*\{.*\}\s*$",
        struct=f"(CASE WHEN json_valid(line) AND line ~ '^\\s*\\{{' THEN {struct} END)",
        ok="m IS NOT NULL",
        columns={
            "ts": f"coalesce({iso_ts_sql('m.ts')}, CASE WHEN {epoch} > 1e11 THEN "
            f"make_timestamp(CAST({epoch} * 1000 AS BIGINT)) WHEN {epoch} IS NOT NULL THEN "
            f"make_timestamp(CAST({epoch} * 1000000 AS BIGINT)) END)",
            "level": level_sql("m.level"),
            "host": "m.host",
            "process": "m.process",
            "pid": "try_cast(m.pid AS BIGINT)",
            "component": "m.component",
            "message": "coalesce(m.message, line)",
        },
    )


def _logfmt_format() -> LogFormat:
    def key(*names: str) -> str:
        alts = "|".join(names)
        value = rf"(?:^|\s)(?:{alts})=({_QUOTED}|[^\s\"]*)"
        raw = f"regexp_extract(line, {sql_str(value)}, 1)"
        return f"nullif(regexp_replace({raw}, '^\"(.*)\"$', '\\1'), '')"

    pair = rf"[A-Za-z_][\w.\-]*=(?:{_QUOTED}|[^\s\"]*)"
    struct = (
        f"struct_pack(ts := {key('ts', 'time', 'timestamp', 't')}, "
        f"level := {key('level', 'lvl', 'severity')}, host := {key('host', 'hostname')}, "
        f"process := {key('process', 'service', 'app')}, pid := {key('pid')}, "
        f"component := {key('component', 'logger', 'module', 'caller')}, "
        f"message := {key('msg', 'message', 'event')})"
    )
    line = rf"^\s*{pair}(?:\s+{pair})+\s*$"
    return LogFormat(
        name="logfmt",
        detect=line,
        struct=struct,
        ok=f"regexp_matches(line, {sql_str(line)})",
        columns={
            "ts": iso_ts_sql("m.ts"),
            "level": level_sql("m.level"),
            "host": "m.host",
            "process": "m.process",
            "pid": "try_cast(m.pid AS BIGINT)",
            "component": "m.component",
            "message": "coalesce(m.message, line)",
        },
    )


def _app_formats() -> list[LogFormat]:
    log4j = LogFormat(
        name="log4j",
        detect=rf"^{_ISO_TS}\s+(?:{_LEVEL})\s+(?:\d+\s+---\s+)?(?:\[[^\]]*\]\s+)?[\w.$]+\s+[-:] ",
        pattern=rf"^({_ISO_TS})\s+({_LEVEL})\s+(?:(\d+)\s+---\s+)?(?:\[\s*([^\]]*)\]\s+)?"
        r"([\w.$]+)\s+[-:] (.*)$",
        groups=("ts", "level", "pid", "process", "component", "message"),
        start=rf"^{_ISO_TS}\s",
        columns={
            "ts": iso_ts_sql("m.ts"),
            "level": level_sql("m.level"),
            "process": _m("process"),
            "pid": "try_cast(nullif(m.pid, '') AS BIGINT)",
            "component": _m("component"),
            "message": "m.message",
        },
    )
    python = LogFormat(
        name="python",
        detect=rf"^(?:{_ISO_TS} - \S+ - (?:{_LEVEL}) - |(?:{_LEVEL}):[^:\s]*:)",
        pattern=rf"^(?:({_ISO_TS}) - (\S+) - ({_LEVEL}) - (.*)|({_LEVEL}):([^:\s]*):(.*))$",
        groups=("ts", "component", "level", "message", "level2", "component2", "message2"),
        ok="(m.level <> '' OR m.level2 <> '')",
        start=rf"^(?:{_ISO_TS} - |(?:{_LEVEL}):[^:\s]*:)",
        columns={
            "ts": iso_ts_sql("nullif(m.ts, '')"),
            "level": level_sql("coalesce(nullif(m.level, ''), m.level2)"),
            "component": "coalesce(nullif(m.component, ''), nullif(m.component2, ''))",
            "message": "(CASE WHEN m.level <> '' THEN m.message ELSE m.message2 END)",
        },
    )
    generic = LogFormat(
        name="generic",
        detect=rf"^\[?(?:{_ISO_TS}|\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d)\]?\s+\[?{_ANY_LEVEL}\]?:?\s",
        pattern=rf"^\[?({_ISO_TS}|\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d)\]?\s+\[?({_ANY_LEVEL})\]?:?"
        r"\s+(.*)$",
        groups=("ts", "level", "message"),
        start=rf"^\[?(?:{_ISO_TS}|\d{{4}}/\d\d/\d\d \d\d:\d\d:\d\d)",
        columns={
            "ts": iso_ts_sql("replace(m.ts, '/', '-')"),
            "level": level_sql("m.level"),
            "message": "m.message",
        },
    )
    return [log4j, python, generic]


# Detection tie-breaks follow this order: more specific formats first.
FORMATS: dict[str, LogFormat] = {
    f.name: f
    for f in [
        _json_format(),
        *_syslog_formats(),
        *_apache_formats(),
        *_app_formats(),
        _logfmt_format(),
    ]
}

# The fallback when no format matches a file: every line is a record with a parse_error.
RAW = LogFormat(name="raw", detect="", struct="NULL", ok="false")
