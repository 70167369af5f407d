"""Log inputs: format detection and parsing in DuckDB, templates and dedup, ingest.

``load_log`` parses log files into a table of the run's store (``input x: log``, ``rlm ingest``),
``append_new`` ingests only lines added since, ``template_sql`` masks the variable parts of a
message. See :mod:`rlm_dsl.runtime.logs.formats` for the formats understood.
"""

from __future__ import annotations

from rlm_dsl.runtime.logs.formats import FORMATS
from rlm_dsl.runtime.logs.load import (
    FileResult,
    LoadReport,
    LogIngestError,
    append_new,
    load_log,
)
from rlm_dsl.runtime.logs.templates import dedup_table, template_sql

__all__ = [
    "FORMATS",
    "FileResult",
    "LoadReport",
    "LogIngestError",
    "append_new",
    "dedup_table",
    "load_log",
    "template_sql",
]
