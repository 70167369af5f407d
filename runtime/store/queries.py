"""Every query on the store's system tables, by name: ``runs``, ``step_status``, ``lm_calls``,
``failures``, ``rlm_iterations`` and ``step_fingerprints``.

Store stage. The tables are created by :class:`~rlm_dsl.runtime.store.store.Store` (their columns
are :data:`~rlm_dsl.runtime.store.store.SYSTEM_TABLES`); rows are appended through the buffered
:class:`~rlm_dsl.runtime.store.writer.Writer`. Reads and updates live here and nowhere else, so a
change to a system table's shape touches this module: the executor asks which steps finished and
which failed, a map which rows are being retried, the call gate for its cache, the summary for the
open failures and ``rlm trace`` for one run's rows.
"""

from __future__ import annotations

import json
from typing import Any

from rlm_dsl.runtime.store.store import Store


def done_steps(store: Store) -> set[str]:
    """Step keys whose table holds a finished result for their current fingerprint."""
    rows = store.con.execute("SELECT step FROM step_fingerprints WHERE status = 'done'")
    return {r[0] for r in rows.fetchall()}


def mark_interrupted(store: Store) -> int:
    """Mark runs still ``running`` as ``interrupted`` and return how many. Only one process can
    write a DuckDB file at a time, so a ``running`` row seen by a new writer is a dead run."""
    with store.write() as con:
        rows = con.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running' "
                           "RETURNING run_id").fetchall()
    return len(rows)


def stored_fingerprints(store: Store) -> list[tuple[str, str, dict[str, str], str]]:
    """``(step key, fingerprint, parts, status)`` of every step with a stored result."""
    rows = store.con.execute("SELECT step, fingerprint, parts, status FROM step_fingerprints")
    return [(step, digest, json.loads(parts), status) for step, digest, parts, status
            in rows.fetchall()]


def record_fingerprint(store: Store, step: str, digest: str, parts: dict[str, str],
                       status: str, run_id: str, at: str) -> None:
    """Replace ``step``'s fingerprint row (written at once: a kill must not lose it)."""
    with store.transaction() as con:
        con.execute("DELETE FROM step_fingerprints WHERE step = ?", [step])
        con.execute("INSERT INTO step_fingerprints VALUES (?, ?, ?, ?, ?, ?)",
                    [step, digest, json.dumps(parts), status, run_id, at])


def forget_steps(store: Store, steps: list[str]) -> None:
    """``steps``' stored results are gone: drop their fingerprints and supersede (resolve) their
    open failures, those of their sub-recipe rows (``<step>__…``) included."""
    with store.write() as con:
        for step in steps:
            con.execute("UPDATE failures SET resolved = true WHERE NOT resolved AND "
                        "(step = ? OR starts_with(step, ?))", [step, f"{step}__"])
            con.execute("DELETE FROM step_fingerprints WHERE step = ? OR starts_with(step, ?)",
                        [step, f"{step}__"])


def forget_fingerprints_under(store: Store, prefix: str) -> None:
    """Drop the stored fingerprints of every step key starting with ``prefix`` (the steps of one
    sub-recipe row, once its tables are folded into its map's)."""
    with store.write() as con:
        con.execute("DELETE FROM step_fingerprints WHERE starts_with(step, ?)", [prefix])


def supersede_failure(store: Store, step: str, chunk_id: int | None) -> int:
    """Resolve the open failures of ``step``'s row ``chunk_id`` (None: the step itself), which a
    new failure row replaces; returns the attempts they had made."""
    with store.write() as con:
        rows = con.execute(
            "UPDATE failures SET resolved = true WHERE step = ? AND chunk_id IS NOT DISTINCT "
            "FROM ? AND NOT resolved RETURNING attempts", [step, chunk_id]).fetchall()
    return sum(a or 0 for (a,) in rows)


def open_failure_rows(store: Store) -> list[tuple[str, int | None, str]]:
    """``(step, chunk id, an error)`` of every unresolved failure, one per row, in order."""
    return store.con.execute(
        "SELECT step, chunk_id, any_value(error) FROM failures WHERE NOT resolved "
        "GROUP BY ALL ORDER BY step, chunk_id NULLS FIRST").fetchall()


def steps_with_step_failures(store: Store) -> set[str]:
    """Steps whose step-level failure (``chunk_id`` NULL) is not resolved yet."""
    rows = store.con.execute(
        "SELECT DISTINCT step FROM failures WHERE chunk_id IS NULL AND NOT resolved")
    return {r[0] for r in rows.fetchall()}


def has_open_failures(store: Store, step: str) -> bool:
    """Whether ``step`` has any unresolved failure (of the step, of a row, or of a step of a
    ``use``d recipe it ran, ``<step>__…``)."""
    return bool(store.scalar("SELECT count(*) FROM failures WHERE (step = ? OR "
                             "starts_with(step, ?)) AND NOT resolved", [step, f"{step}__"]))


def has_open_failures_under(store: Store, prefix: str) -> bool:
    """Whether a step keyed ``<prefix>…`` (one row of a ``use``d recipe) has an unresolved
    failure."""
    return bool(store.scalar("SELECT count(*) FROM failures WHERE starts_with(step, ?) AND "
                             "NOT resolved", [prefix]))


def open_failure_count(store: Store) -> int:
    """Unresolved failures of every step (the run summary's ``failures``)."""
    return int(store.scalar("SELECT count(*) FROM failures WHERE NOT resolved") or 0)


def failed_rows(store: Store, step: str) -> dict[int, int]:
    """Rows of ``step`` with unresolved failures: chunk id → attempts so far."""
    return dict(store.con.execute(
        "SELECT chunk_id, sum(attempts) FROM failures WHERE step = ? AND NOT resolved "
        "AND chunk_id IS NOT NULL GROUP BY 1", [step],
    ).fetchall())


def resolve_step_failures(store: Store, step: str) -> None:
    """Mark ``step``'s own step-level failures resolved (its row failures stay)."""
    with store.write() as con:
        con.execute("UPDATE failures SET resolved = true WHERE step = ? AND chunk_id IS NULL "
                    "AND NOT resolved", [step])


def resolve_row_failures(store: Store, step: str, chunk_ids: list[int]) -> None:
    """Mark the failures of ``step``'s rows ``chunk_ids`` resolved (they were answered now)."""
    with store.write() as con:
        con.execute("UPDATE failures SET resolved = true WHERE step = ? AND chunk_id IN "
                    f"({', '.join(str(int(i)) for i in chunk_ids)})", [step])


def finish_run(store: Store, run_id: str, status: str, finished_at: str, summary: str) -> None:
    """Close the ``runs`` row of ``run_id`` with its status and JSON ``summary``."""
    with store.write() as con:
        con.execute("UPDATE runs SET status = ?, finished_at = ?, summary = ? WHERE run_id = ?",
                    [status, finished_at, summary, run_id])


def cached_responses(store: Store) -> dict[str, str]:
    """Cache key → response of every finished, error-free LM call in the store."""
    return dict(store.con.execute(
        "SELECT cache_key, response FROM lm_calls WHERE error IS NULL AND response IS NOT NULL"
    ).fetchall())


def move_calls(store: Store, from_run: str, to_run: str) -> None:
    """File the ``lm_calls`` rows recorded under ``from_run`` under ``to_run`` (the calls
    ``rlm ask``'s planner made before the run it planned)."""
    with store.write() as con:
        con.execute("UPDATE lm_calls SET run_id = ? WHERE run_id = ?", [to_run, from_run])


def has_lm_calls(store: Store) -> bool:
    return bool(store.scalar("SELECT count(*) FROM lm_calls"))


def run_row(store: Store, run_id: str | None) -> dict[str, Any] | None:
    """The ``runs`` row of ``run_id`` (or a prefix of it; default: the latest run), its JSON
    columns parsed; None when there is none."""
    sql = "SELECT * FROM runs"
    params: list[Any] = []
    if run_id is not None:
        sql += " WHERE run_id = ? OR starts_with(run_id, ?)"
        params = [run_id, run_id]
    cursor = store.con.execute(sql + " ORDER BY started_at DESC NULLS LAST LIMIT 1", params)
    names = [d[0] for d in cursor.description]
    row = cursor.fetchone()
    if row is None:
        return None
    out = dict(zip(names, row, strict=True))
    for key in ("params", "inputs", "summary"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out


TRACE_ORDER = {"lm_calls": "started_at, call_id", "failures": '"at"',
               "rlm_iterations": '"at", iteration', "step_status": "started_at"}


def run_rows(store: Store, table: str, run_id: str | None) -> list[dict[str, Any]]:
    """The rows of system table ``table`` written by ``run_id`` (every run's when None), in the
    order they were written."""
    where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
    cursor = store.con.execute(f"SELECT * FROM {table} {where} ORDER BY {TRACE_ORDER[table]}",
                               params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def uncached_call_totals(store: Store) -> tuple[int, int, float]:
    """Prompt tokens, completion tokens and seconds of the LM calls that were answered by the
    model (not cached, no error): what ``rlm ask`` measures a local model's speed by."""
    row = store.con.execute("""SELECT sum(prompt_tokens), sum(completion_tokens), sum(latency_s)
        FROM lm_calls WHERE NOT cached AND error IS NULL""").fetchone()
    return int(row[0] or 0), int(row[1] or 0), float(row[2] or 0.0)
