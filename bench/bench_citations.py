"""Benchmark check: does every answer either cite a source line that contains it or say "not found"?

Issue 20's "done when" for the local model. Reads results JSON files written by ``python -m
bench`` (their rows carry ``cites``: each output's ``source:line`` evidence) and, for the ``rlm
run --json`` envelopes given with ``--runs``, their ``evidence``; for each answer it opens every
cited file line and says whether the answer's text occurs in it (case- and whitespace-insensitive,
as grounding compares). An answer passes when it is "not found" / null, or when at least one
cited line contains it; a prose answer (a report) passes when each of its cited lines is quoted
in part, which this script does not judge: it prints those as ``prose``.

    python bench/bench_citations.py bench/results/niah_local.json --runs /tmp/needle.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rlm_dsl.runtime.steps.grounding import normalise, occurs

NOT_FOUND = {"not found", ""}


def cited_line(cite: str) -> str | None:
    """The text of ``path:line`` (None when the file or line is missing or the cite has a range)."""
    path, _, line = cite.rpartition(":")
    if not line.isdigit() or not Path(path).is_file():
        return None
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    number = int(line)
    return lines[number - 1] if 0 < number <= len(lines) else None


def verdict(answer: Any, cites: list[str], empty: bool = False) -> str:
    """``not found`` (null, an empty list, "not found" or the recipe's declared empty default),
    ``cited`` (a cited line contains the answer), ``prose`` or ``UNCITED``."""
    if empty or answer in (None, []) or normalise(str(answer)) in NOT_FOUND:
        return "not found"
    texts = [t for t in (cited_line(c) for c in cites) if t is not None]
    if any(occurs(str(answer), normalise(t)) for t in texts):
        return "cited"
    return "prose" if len(str(answer)) > 80 and texts else "UNCITED"


def answers(path: Path) -> list[tuple[str, Any, list[str], bool]]:
    """(label, answer, cites, declared empty) of every row of a bench results file or of every
    reduced output of a ``--json`` envelope (outputs without evidence, e.g. SQL ones, skipped)."""
    data = json.loads(path.read_text())
    if "rows" in data:
        return [(f"{r['task']} {r['size']} #{r.get('instance', 0)} {r['method']}", r["answer"],
                 [c for cs in (r.get("cites") or {}).values() for c in cs], False)
                for r in data["rows"]]
    empty = data["summary"].get("empty") or {}
    return [(f"{path.name} {name}", value, [e["cite"] for e in data["evidence"][name]],
             name in empty) for name, value in data["outputs"].items() if name in data["evidence"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="*", type=Path, help="python -m bench results JSON")
    parser.add_argument("--runs", nargs="*", type=Path, default=[], help="rlm run --json output")
    args = parser.parse_args()
    bad = 0
    for path in [*args.results, *args.runs]:
        for label, answer, cites, empty in answers(path):
            said = verdict(answer, cites, empty)
            bad += said == "UNCITED"
            print(f"{said:9} {label}: {str(answer)[:60]!r} {' '.join(cites[:3])}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
