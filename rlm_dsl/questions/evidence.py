"""Evidence and answer shape for ``rlm ask``: which input rows an answer came from.

Planner stage (``rlm ask``), read after a run. Where the answer is an LM reduce or a vote
(``lookup``, ``summarize``, ``timeline``), the runtime already wrote its evidence
(:mod:`rlm_dsl.runtime.steps.evidence`: the rows that voted for the winner, or whose value the
answer names); :func:`evidence` cites those rows at their grounded line, with that line's text
read from the chunk table the map read. Where the answer is an SQL reduce, each strategy knows
the table of rows it stands on — ``extract_all``: the accepted candidates (or those that yielded
an item); ``count``: the records with the target label, or the matching records; ``pairs``: the
labelled records that pair — and reads them from the store. A spec the LM wrote itself cites
the runtime's evidence rows with each line read from its file. Either way the result is
``{source, line, text}`` rows (first ``limit``). :func:`answer_value` turns a run's ``answer``
output into a plain value: an SQL reduce's single cell becomes a scalar, one column a list, two
a list of pairs.
"""

from __future__ import annotations

import linecache
from typing import Any

import duckdb

EVIDENCE_LIMIT = 20
# strategies whose answer step writes the runtime's evidence → the chunk table its map read
CHUNK_TABLES = {"lookup": "candidates", "summarize": "parts", "timeline": "periods"}
_QUERIES: dict[str, str] = {
    "extract_all_shape": """SELECT c.source, c.first_line, c.text FROM candidates AS c
        JOIN verdict AS v USING (id) WHERE CAST(v.verdict AS VARCHAR) = 'yes' ORDER BY c.id""",
    "extract_all": """SELECT c.source, c.first_line, c.text FROM candidates AS c
        JOIN items AS i USING (id) WHERE len(i.items) > 0 ORDER BY c.id""",
    "count_labels": """SELECT r.source, r.first_line, r.text FROM records AS r
        JOIN label AS l USING (id) WHERE CAST(l.label AS VARCHAR) = coalesce(?, l.label)
        ORDER BY r.id""",
    "count_judged": """SELECT m.source, m.first_line, m.text FROM matches AS m
        JOIN verdict AS v USING (id) WHERE CAST(v.verdict AS VARCHAR) = 'yes' ORDER BY m.id""",
    "count_matches": "SELECT source, first_line, text FROM matches ORDER BY id",
}


def evidence_query(strategy: str, slots: Any) -> tuple[str, list[Any]] | None:
    """The evidence query of a strategy and its parameters (None: no row-level evidence)."""
    if strategy == "extract_all":
        return _QUERIES["extract_all_shape" if slots.shape else "extract_all"], []
    if strategy == "count" and slots.labels:
        return _QUERIES["count_labels"], [slots.target]
    if strategy == "count":
        return _QUERIES["count_judged" if slots.judge else "count_matches"], []
    if strategy == "pairs":
        return _QUERIES["count_labels"], [slots.target]
    return None


def evidence(db: str, strategy: str, slots: Any, run_evidence: list[dict[str, Any]] | None,
             limit: int = EVIDENCE_LIMIT) -> list[dict[str, Any]]:
    """Up to ``limit`` ``{source, line, text}`` rows the answer stands on (``run_evidence``: the
    runtime's evidence rows of the ``answer`` output, when its step wrote them)."""
    if strategy in CHUNK_TABLES:
        return _cited(db, CHUNK_TABLES[strategy], (run_evidence or [])[:limit])
    query = evidence_query(strategy, slots)
    if query is None:  # a written spec: the runtime's rows, each line read from its file
        return [_line_of_file(row) for row in (run_evidence or [])[:limit]]
    sql, params = query
    rows = _read(db, f"{sql} LIMIT {int(limit)}", params)
    return [{"source": s, "line": line, "text": text} for s, line, text in rows]


def _cited(db: str, table: str, cited: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runtime's evidence rows at their line, with that line's text from ``table``."""
    if not cited:
        return []
    texts = dict(_read(db, f"SELECT id, text FROM {table} WHERE id IN "
                           f"(SELECT unnest(?::BIGINT[]))", [[row["id"] for row in cited]]))
    found = []
    for row in cited:
        first = row.get("first_line")
        line = row.get("line") if row.get("line") is not None else first
        lines = str(texts.get(row["id"], "")).split("\n")
        at = line - first if isinstance(line, int) and isinstance(first, int) else 0
        found.append({"source": row.get("source"), "line": line,
                      "text": lines[at] if 0 <= at < len(lines) else lines[0]})
    return found


def _line_of_file(row: dict[str, Any]) -> dict[str, Any]:
    line = row.get("line") if row.get("line") is not None else row.get("first_line")
    source = row.get("source")
    if not (isinstance(source, str) and isinstance(line, int)):
        return {"source": source, "line": line, "text": ""}
    linecache.checkcache(source)  # a file edited since an earlier ask in this process
    return {"source": source, "line": line,
            "text": linecache.getline(source, line).rstrip("\r\n")}


def _read(db: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(sql, params).fetchall()
    except duckdb.CatalogException:  # the step never ran (nothing matched upstream)
        return []
    finally:
        con.close()


def answer_value(value: Any) -> Any:
    """An output as a plain answer (see the module docstring)."""
    if not (isinstance(value, list) and value and all(isinstance(r, dict) for r in value)):
        return value
    width = len(value[0])
    if width == 1:
        cells = [next(iter(r.values())) for r in value]
        return cells[0] if len(cells) == 1 else cells
    if width == 2 and all("n" not in r for r in value):
        return [list(r.values()) for r in value]
    return value
