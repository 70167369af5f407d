"""Application log formats: JSON lines (journald ``-o json`` too), logfmt, log4j, Python logging.

Part of the log format table (:mod:`rlm_dsl.runtime.logs.formats`): the formats libraries write.
JSON and logfmt keep every key in the ``fields`` column, a MAP(VARCHAR, VARCHAR) (nested JSON
values as JSON text); log4j/logback and Python logging records may span lines (stack traces).
"""

from __future__ import annotations

from rlm_dsl.runtime.logs.fields import QUOTED, kv_map_sql, level_sql, syslog_level_sql
from rlm_dsl.runtime.logs.logformat import LogFormat, group, int_group
from rlm_dsl.runtime.logs.sql import sql_str
from rlm_dsl.runtime.logs.timestamps import ISO_TS, iso_sql, line_ts_sql

_LEVEL = r"TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|SEVERE|FATAL|CRITICAL"


def epoch_value_sql(expr: str) -> str:
    """A number of seconds, milliseconds, microseconds or nanoseconds since 1970 as TIMESTAMP."""
    value = f"try_cast({expr} AS DOUBLE)"
    return (
        f"(CASE WHEN {value} > 1e17 THEN make_timestamp(CAST({value} / 1000 AS BIGINT)) "
        f"WHEN {value} > 1e14 THEN make_timestamp(CAST({value} AS BIGINT)) "
        f"WHEN {value} > 1e11 THEN make_timestamp(CAST({value} * 1000 AS BIGINT)) "
        f"WHEN {value} IS NOT NULL THEN make_timestamp(CAST({value} * 1000000 AS BIGINT)) END)"
    )


def json_format() -> LogFormat:
    """One JSON object per line (structlog, bunyan, pino, zap, journald ``-o json``…)."""

    def pick(*keys: str) -> str:
        paths = ", ".join(sql_str(f"$.{k}") for k in keys)
        return f"list_filter(json_extract_string(line, [{paths}]), lambda x: x IS NOT NULL)[1]"

    struct = (
        "struct_pack(ts := {ts}, level := {level}, host := {host}, process := {process}, "
        "pid := {pid}, component := {component}, message := {message})"
    ).format(
        ts=pick("timestamp", "ts", "time", "@timestamp", "datetime", "date", "t",
                "__REALTIME_TIMESTAMP", "timestamp_ns"),
        level=pick("level", "severity", "lvl", "loglevel", "levelname", "log_level", "PRIORITY",
                   "severity_text"),
        host=pick("host", "hostname", "_HOSTNAME"),
        process=pick("process", "service", "app", "program", "SYSLOG_IDENTIFIER", "_COMM"),
        pid=pick("pid", "process_id", "_PID"),
        component=pick("logger", "component", "module", "name", "logger_name", "source",
                       "target"),
        message=pick("message", "msg", "event", "text", "log", "MESSAGE", "body",
                     "fields.message"),
    )
    keys = "json_keys(line::JSON)"
    entries = "list_transform(" + keys + ", lambda k: {'key': k, 'value': line::JSON->>k})"
    return LogFormat(
        name="jsonl",
        detect=r"^\s*\{.*\}\s*$",
        struct=f"(CASE WHEN json_valid(line) AND line ~ '^\\s*\\{{' THEN {struct} END)",
        ok="m IS NOT NULL",
        columns={
            "ts": f"coalesce({iso_sql('m.ts')}, {epoch_value_sql('m.ts')}, "
            f"{line_ts_sql('line', 'file_time')})",
            "level": f"(CASE WHEN m.level ~ '^\\d+$' AND length(m.level) = 1 THEN "
            f"{syslog_level_sql('m.level')} ELSE {level_sql('m.level')} END)",
            "host": "m.host",
            "process": "m.process",
            "pid": "try_cast(m.pid AS BIGINT)",
            "component": "m.component",
            "fields": f"map_from_entries({entries})",
            "message": "coalesce(m.message, line)",
        },
    )


def logfmt_format() -> LogFormat:
    """``key=value`` lines (Go's logfmt, Heroku, Grafana…)."""

    def key(*names: str) -> str:
        alts = "|".join(names)
        value = rf"(?:^|\s)(?:{alts})=({QUOTED}|[^\s\"]*)"
        raw = f"regexp_extract(line, {sql_str(value)}, 1)"
        return f"nullif(regexp_replace({raw}, '^\"(.*)\"$', '\\1'), '')"

    pair = rf"[A-Za-z_][\w.\-]*=(?:{QUOTED}|[^\s\"]*)"
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
            "ts": f"coalesce({iso_sql('m.ts')}, {epoch_value_sql('m.ts')}, "
            f"{line_ts_sql('line', 'file_time')})",
            "level": level_sql("m.level"),
            "host": "m.host",
            "process": "m.process",
            "pid": "try_cast(m.pid AS BIGINT)",
            "component": "m.component",
            "fields": kv_map_sql("line"),
            "message": "coalesce(m.message, line)",
        },
    )


def java_python_formats() -> list[LogFormat]:
    """log4j/logback/Spring Boot and Python ``logging`` (default and ``basicConfig``) formats."""
    log4j = LogFormat(
        name="log4j",
        detect=rf"^{ISO_TS}\s+(?:{_LEVEL})\s+(?:\d+\s+---\s+)?(?:\[[^\]]*\]\s+)?[\w.$]+\s+[-:] ",
        pattern=rf"^({ISO_TS})\s+({_LEVEL})\s+(?:(\d+)\s+---\s+)?(?:\[\s*([^\]]*)\]\s+)?"
        r"([\w.$]+)\s+[-:] (.*)$",
        groups=("ts", "level", "pid", "process", "component", "message"),
        start=rf"^{ISO_TS}\s",
        columns={
            "ts": iso_sql("m.ts"),
            "level": level_sql("m.level"),
            "process": group("process"),
            "pid": int_group("pid"),
            "component": group("component"),
            "message": "m.message",
        },
    )
    python = LogFormat(
        name="python",
        detect=rf"^(?:{ISO_TS} - \S+ - (?:{_LEVEL}) - |(?:{_LEVEL}):[^:\s]*:)",
        pattern=rf"^(?:({ISO_TS}) - (\S+) - ({_LEVEL}) - (.*)|({_LEVEL}):([^:\s]*):(.*))$",
        groups=("ts", "component", "level", "message", "level2", "component2", "message2"),
        ok="(m.level <> '' OR m.level2 <> '')",
        start=rf"^(?:{ISO_TS} - |(?:{_LEVEL}):[^:\s]*:)",
        columns={
            "ts": iso_sql("nullif(m.ts, '')"),
            "level": level_sql("coalesce(nullif(m.level, ''), m.level2)"),
            "component": "coalesce(nullif(m.component, ''), nullif(m.component2, ''))",
            "message": "(CASE WHEN m.level <> '' THEN m.message ELSE m.message2 END)",
        },
    )
    return [log4j, python]
