"""Log timestamps: every common way a log line writes its time, found and parsed in DuckDB SQL.

This is the *timestamp* part of the log format table. :data:`SHAPES` lists the timestamp shapes
daemons write — ISO 8601 (``T`` or space, fractions, ``Z``/offsets), ``2016/06/07`` (nginx, Go),
BSD syslog with one- or two-digit days, with or without a year, ctime and Apache error
(``Tue Jun 07 04:11:02.123 2016``), Common Log Format, US dates with AM/PM (Windows), compact
ones (HDFS ``081111 101735``, Spark ``17/06/09``, glog ``I0517``, Android logcat ``05-26``,
HealthApp) and epoch seconds/milliseconds/microseconds. :func:`find_ts_sql` finds the leftmost
of them in a line with one RE2 search and :func:`ts_sql` turns the text found into a TIMESTAMP
(``try_strptime`` with format lists). Offsets are dropped: timestamps stay as written
(wall-clock). A timestamp without a year takes the year of ``file_time`` (the file's mtime) and
rolls back a year when that would put it more than two days after the file was last written (a
log spanning New Year).
"""

from __future__ import annotations

from rlm_dsl.runtime.logs.sql import sql_str, with_struct

_MON = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_HMS = r"\d\d:\d\d:\d\d"
ISO_TS = (
    r"\d{4}-\d\d-\d\d(?:T| {1,2}|\t)\d{1,2}:\d\d(?::\d\d)?(?:[.,]\d+)?"
    r"(?: ?(?:Z|[+-]\d\d:?\d\d))?"
)
BSD_TS = (
    rf"(?:\d{{4}}\.\d\d\.\d\d \S+ )?(?:{_DAY},? )?{_MON}[ -] ?\d{{1,2}},?(?: \d{{4}})? "
    rf"{_HMS}(?:[.:]\d+)?(?: [A-Z]{{3,4}})?(?: \d{{4}}\b)?"
)

# (name, RE2 pattern). Order only matters for equal-start matches (RE2 prefers the first).
SHAPES: tuple[tuple[str, str], ...] = (
    ("iso", ISO_TS),
    ("bgl", r"\d{4}-\d\d-\d\d-\d\d\.\d\d\.\d\d(?:\.\d+)?"),
    ("slash", rf"\d{{4}}/\d\d/\d\d[ T]{_HMS}(?:\.\d+)?"),
    ("bsd", BSD_TS),
    ("clf", rf"\d{{1,2}}/{_MON}/\d{{4}}[: ]{_HMS}(?:[.:]\d+)?"),
    ("us", r"\d{1,2}/\d{1,2}/\d{4}(?:[-,] ?| )\d{1,2}:\d\d:\d\d(?:[.:]\d+)?(?: ?[AP]M)?"),
    ("compact", rf"^\d{{6}} \d{{6}}\b|^\d\d/\d\d/\d\d {_HMS}|^\[?\d{{8}}-{_HMS}(?::\d+)?"
     rf"|^\d{{8}}_\d{{6}}\b"
     rf"|^[IWEFDV]?\d{{8}} {_HMS}(?:\.\d+)?|# Time: \d{{6}} {{1,2}}\d{{1,2}}:\d\d:\d\d"),
    ("dmy", rf"\b\d{{1,2}}[ -]{_MON}(?:[ -]\d{{4}})? {_HMS}(?:\.\d+)?"),
    ("time", rf"^\[?{_HMS}(?:[.,:]\d+)?\b"),
    ("monthday", rf"^[IWEFDV]?\d{{4}} {_HMS}(?:\.\d+)?|^\d\d-\d\d {_HMS}(?:\.\d+)?"
     rf"|^\[\d\d\.\d\d {_HMS}\]"),
)
# Epochs are searched only where no other shape matched, near the start of the line
# (seconds 2001-2033, or milliseconds / microseconds of the same range).
EPOCH = r"(?:^\[?|[\s(=\"'+])(1\d{9}(?:\.\d{1,9})?|1\d{12}|1\d{15}|1\d{18})(?:$|[\s\]):.,\"'])"
_FRACTION = r"(?:\.|\d\d:\d\d:\d\d:)(\d+)$"  # .089828, or HealthApp's 22:15:29:606
_TIME_FRACTION = r"\d\d:\d\d:\d\d[.,:](\d+)$"
_TRAILING_FRACTION = r"\.(\d+)\]?$"
HEAD_CHARS = 200  # a line's timestamp is searched in its first characters only


def find_ts_sql(line: str = "line") -> str:
    """One RE2 search for the leftmost timestamp shape: a STRUCT with one field per shape."""
    pattern = "|".join(f"({regex})" for _, regex in SHAPES)
    names = ", ".join(sql_str(name) for name, _ in SHAPES)
    return f"regexp_extract(left({line}, {HEAD_CHARS}), {sql_str(pattern)}, [{names}])"


def iso_sql(text: str) -> str:
    """ISO 8601 text (``T`` or space, ``,`` or ``.`` fraction, offset dropped) as TIMESTAMP."""
    cleaned = f"regexp_replace(translate({text}, ',\t', '. '), ' ?(Z|[+-]\\d\\d:?\\d\\d)$', '')"
    return f"try_cast({cleaned} AS TIMESTAMP)"


def yearless_sql(text: str, fmt: str, file_time: str) -> str:
    """``text`` without a year parsed by ``fmt`` (which starts ``%Y ``) in ``file_time``'s year,
    a year earlier when it would fall more than two days after ``file_time``."""
    def parse(year: str) -> str:
        return f"try_strptime(CAST({year} AS VARCHAR) || ' ' || {text}, {sql_str(fmt)})"

    this_year = parse(f"year({file_time})")
    last_year = parse(f"year({file_time}) - 1")
    # this year's parse written once (a one-item list filtered), not three times in a CASE:
    # DuckDB does not share repeated expressions inside a CASE, and this is the hot path
    return (f"coalesce(list_filter([{this_year}], lambda t: t <= {file_time} + INTERVAL 2 DAY)[1], "
            f"{last_year})")


def _fraction(text: str, pattern: str) -> str:
    """An INTERVAL for the fraction of a second captured by ``pattern``'s group (0 if none)."""
    digits = f"regexp_extract({text}, {sql_str(pattern)}, 1)"
    micros = f"CAST(rpad(left({digits}, 6), 6, '0') AS BIGINT)"
    return f"(CASE WHEN {digits} = '' THEN INTERVAL 0 SECOND ELSE to_microseconds({micros}) END)"


def bsd_sql(text: str, file_time: str) -> str:
    """``[Tue] Jun  7 [2016] 04:11:02[.123] [UTC] [2016]`` (syslog, ctime, Apache error)."""
    parts = (
        rf"^(?:(\d{{4}})\.\d\d\.\d\d \S+ )?(?:{_DAY},? )?({_MON})[ -] ?(\d{{1,2}}),?(?: (\d{{4}}))?"
        rf" ({_HMS})(?:[.:](\d+))?(?: [A-Z]{{3,4}})?(?: (\d{{4}}))?"
    )
    no_year = "concat_ws(' ', b.mon, b.day, b.hms)"
    m = f"regexp_extract({text}, {sql_str(parts)}, ['y1', 'mon', 'day', 'y2', 'hms', 'frac', 'y3'])"
    return with_struct(
        m,
        "b",
        "(coalesce(try_strptime(concat_ws(' ', coalesce(nullif(b.y1, ''), nullif(b.y2, ''), "
        "nullif(b.y3, '')), b.mon, b.day, b.hms), '%Y %b %d %H:%M:%S'), "
        f"{yearless_sql(no_year, '%Y %b %d %H:%M:%S', file_time)}) "
        f"+ {_fraction('b.frac', '^(.*)$')})",
    )


def ts_sql(found: str, file_time: str) -> str:
    """The TIMESTAMP of ``found`` (a :func:`find_ts_sql` STRUCT); NULL when nothing matched."""
    compact = f"{found}.compact"
    monthday = f"{found}.monthday"
    return (
        f"(CASE WHEN {found}.iso <> '' THEN {iso_sql(f'{found}.iso')} "
        f"WHEN {found}.bgl <> '' THEN try_strptime({found}.bgl, "
        "['%Y-%m-%d-%H.%M.%S.%f', '%Y-%m-%d-%H.%M.%S']) "
        f"WHEN {found}.slash <> '' THEN {iso_sql(f'replace({found}.slash, chr(47), chr(45))')} "
        f"WHEN {found}.bsd <> '' THEN {bsd_sql(f'{found}.bsd', file_time)} "
        f"WHEN {found}.clf <> '' THEN try_strptime(replace({found}.clf, ':', ' '), "
        "['%d/%b/%Y %H %M %S', '%d/%b/%Y %H %M %S.%f']) "
        f"WHEN {found}.us <> '' THEN try_strptime(regexp_replace(regexp_replace({found}.us, "
        "'^(\\S+?)[-,] ?', '\\1 '), "
        "'(:\\d\\d:\\d\\d)[.:]\\d+', '\\1'), "
        "['%m/%d/%Y %I:%M:%S %p', '%m/%d/%Y %I:%M:%S%p', '%m/%d/%Y %H:%M:%S']) "
        f"WHEN {compact} <> '' THEN {compact_sql(compact)} "
        f"WHEN {found}.dmy <> '' THEN {dmy_sql(f'{found}.dmy', file_time)} "
        f"WHEN {monthday} <> '' THEN {monthday_sql(monthday, file_time)} "
        f"WHEN {found}.time <> '' THEN {time_only_sql(f'{found}.time', file_time)} END)"
    )


def compact_sql(text: str) -> str:
    """HDFS ``081111 101735``, Spark ``17/06/09 20:10:52``, HealthApp ``20171223-22:15:29:606``,
    glog ``I20200308 23:47:32.08``, Robot ``20260327 11:34:21.908``, MySQL ``# Time: 170213``."""
    bare = f"regexp_replace({text}, '^# Time: |^[IWEFDV\\[]', '')"
    bare = f"regexp_replace({bare}, '(\\d\\d:\\d\\d:\\d\\d)[.:]\\d+$', '\\1')"
    formats = "'%y%m%d %H%M%S', '%y/%m/%d %H:%M:%S', '%Y%m%d-%H:%M:%S', '%Y%m%d %H:%M:%S', "
    formats += "'%y%m%d %H:%M:%S', '%Y%m%d_%H%M%S'"
    return f"(try_strptime({bare}, [{formats}]) + {_fraction(text, _FRACTION)})"


def dmy_sql(text: str, file_time: str) -> str:
    """Redis ``29 Aug 2023 13:47:38.984`` and ``13 Apr 12:52:30.731`` (no year)."""
    bare = f"replace(regexp_replace({text}, '\\.\\d+$', ''), '-', ' ')"
    return (
        f"(coalesce(try_strptime({bare}, '%d %b %Y %H:%M:%S'), "
        f"{yearless_sql(bare, '%Y %d %b %H:%M:%S', file_time)}) + {_fraction(text, _FRACTION)})"
    )


def monthday_sql(text: str, file_time: str) -> str:
    """Month and day without a year: glog ``I0517 15:04:22.619``, logcat ``05-26 11:18:41.509``,
    Proxifier ``[10.30 16:49:06]``."""
    digits = f"regexp_replace({text}, '^[IWEFDV\\[]?(\\d\\d)[-.]?(\\d\\d) ', '\\1-\\2 ')"
    hms = f"regexp_extract({digits}, '^\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d')"
    return (
        f"({yearless_sql(hms, '%Y %m-%d %H:%M:%S', file_time)} + "
        f"{_fraction(text, _TRAILING_FRACTION)})"
    )


def time_only_sql(text: str, file_time: str) -> str:
    """A time of day alone (Anaconda, Spotify, strace ``-t``) on ``file_time``'s date, or the
    day before when that would be later than ``file_time``."""
    hms = f"try_cast(replace(regexp_extract({text}, '\\d\\d:\\d\\d:\\d\\d'), ',', '.') AS TIME)"
    today = f"(CAST({file_time} AS DATE) + {hms} + {_fraction(text, _TIME_FRACTION)})"
    return f"(CASE WHEN {today} > {file_time} THEN {today} - INTERVAL 1 DAY ELSE {today} END)"


def epoch_sql(line: str = "line") -> str:
    """Epoch seconds, milliseconds or microseconds near the start of ``line`` as TIMESTAMP."""
    digits = f"regexp_extract(left({line}, 64), {sql_str(EPOCH)}, 1)"
    value = f"try_cast({digits} AS DOUBLE)"
    return (
        f"(CASE WHEN {digits} = '' THEN NULL WHEN {value} > 1e17 THEN make_timestamp(CAST("
        f"{value} / 1000 AS BIGINT)) WHEN {value} > 1e14 THEN make_timestamp(CAST({value}"
        f" AS BIGINT)) WHEN {value} > 1e11 THEN make_timestamp(CAST({value} * 1000 AS BIGINT)) "
        f"ELSE make_timestamp(CAST({value} * 1000000 AS BIGINT)) END)"
    )


def line_ts_sql(line: str, file_time: str) -> str:
    """The timestamp of ``line`` in any known shape (epochs only where no other shape is)."""
    found = with_struct(find_ts_sql(line), "f", ts_sql("f", file_time))
    return f"coalesce({found}, {epoch_sql(line)})"
