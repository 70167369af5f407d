"""Evidence and answer shape for ``rlm ask``: which input rows an answer came from.

Planner stage (``rlm ask``), read after a run from its store. Each strategy knows the table of
rows its answer stands on — ``lookup``: the candidates whose finding is the voted answer;
``extract_all``: the accepted candidates (or those that yielded an item); ``count``: the
records with the target label, or the matching records; ``pairs``: the labelled records that
pair — and :func:`evidence` returns them as ``{source, line, text}`` (first ``limit``), the
answer bound as a query parameter. :func:`answer_value` turns a run's ``answer`` output into
a plain value: an SQL reduce's single cell becomes a scalar, one column a list, two a list of
pairs.
"""

from __future__ import annotations

from typing import Any

import duckdb

EVIDENCE_LIMIT = 20
_QUERIES: dict[str, str] = {
    "lookup": """SELECT c.source, c.first_line, c.text FROM candidates AS c
        JOIN findings_filtered AS f USING (id) WHERE trim(f.findings) = trim(?) ORDER BY c.id""",
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
    if strategy == "lookup":
        return _QUERIES["lookup"], ["answer"]
    if strategy == "extract_all":
        return _QUERIES["extract_all_shape" if slots.shape else "extract_all"], []
    if strategy == "count" and slots.labels:
        return _QUERIES["count_labels"], [slots.target]
    if strategy == "count":
        return _QUERIES["count_judged" if slots.judge else "count_matches"], []
    if strategy == "pairs":
        return _QUERIES["count_labels"], [slots.target]
    return None


def evidence(db: str, strategy: str, slots: Any, answer: Any,
             limit: int = EVIDENCE_LIMIT) -> list[dict[str, Any]]:
    """Up to ``limit`` ``{source, line, text}`` rows the answer stands on."""
    query = evidence_query(strategy, slots)
    if query is None or (strategy == "lookup" and not isinstance(answer, str)):
        return []
    sql, params = query
    params = [answer if p == "answer" else p for p in params]
    con = duckdb.connect(db, read_only=True)
    try:
        rows = con.execute(f"{sql} LIMIT {int(limit)}", params).fetchall()
    except duckdb.CatalogException:  # the step never ran (nothing matched upstream)
        rows = []
    finally:
        con.close()
    return [{"source": s, "line": line, "text": text} for s, line, text in rows]


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
