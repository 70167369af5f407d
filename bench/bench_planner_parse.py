"""Benchmark: how often the ``rlm ask`` planner's answer parses, with and without a JSON schema.

Asks the planner (:class:`rlm_dsl.questions.planner.Planner`, the one LM call ``rlm ask
--plan-only`` spends) five questions that no cue word decides, over a small planted text and log,
once as plain chat (``structured=False``, how the planner called the LM before) and once with its
output fields sent as a JSON schema (``structured=True``: the local engine decodes under a
grammar). A question counts as parsed when the planner used the LM's answer or found it parsed but
unfitting; "unusable" means the adapter could not read it and the heuristics planned.

    python bench/bench_planner_parse.py --lm local --out /tmp/planner_parse.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dspy

from rlm_dsl.questions.ask import PLANNER_TOKENS
from rlm_dsl.questions.planner import Planner
from rlm_dsl.questions.profile import profile_inputs
from rlm_dsl.questions.strategies import layout_for
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.resolve import resolve_lm

QUESTIONS = [
    ("text", "What is the vault code for project kestrel-onyx?"),
    ("text", "Who painted the gate?"),
    ("text", "What do the essays say about gardens?"),
    ("log", "Which component failed first after the deploy?"),
    ("log", "Why did the checkout service slow down?"),
]


def write_inputs(folder: Path) -> dict[str, Path]:
    text = [f"Line {i} is about painting, startups and the weather." for i in range(300)]
    text.insert(150, "The vault code for project kestrel-onyx is 4417.")
    log = [f"2024-05-01 10:{i // 60:02d}:{i % 60:02d} {'ERROR' if i % 3 == 0 else 'INFO'} "
           f"com.acme.shop.{'Checkout' if i % 2 else 'Mailer'} request {i} done" for i in range(60)]
    paths = {"text": folder / "essay.txt", "log": folder / "app.log"}
    paths["text"].write_text("\n".join(text) + "\n", encoding="utf-8")
    paths["log"].write_text("\n".join(log) + "\n", encoding="utf-8")
    return paths


def ask_planner(model: str, kind_path: Path, question: str, structured: bool) -> dict:
    resolved = resolve_lm(model)
    profile = profile_inputs([str(kind_path)])
    lm = resolved.make_lm(num_retries=0, temperature=0, max_tokens=PLANNER_TOKENS)
    started = time.perf_counter()
    with dspy.context(lm=lm, adapter=RobustAdapter()):
        chosen = Planner(max_repairs=0)(question=question, profile=profile,
                                        layout=layout_for(profile, resolved.context_window),
                                        structured=structured)
    unusable = any("unusable" in note for note in chosen.notes)
    return {"question": question, "structured": structured, "parsed": not unusable,
            "source": chosen.source, "strategy": chosen.strategy, "notes": list(chosen.notes),
            "calls": len(lm.history), "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", default="local")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        paths = write_inputs(Path(folder))
        for structured in (False, True):
            for kind, question in QUESTIONS:
                rows.append(ask_planner(args.lm, paths[kind], question, structured))
                print(json.dumps(rows[-1]), flush=True)
    for structured in (False, True):
        mine = [r for r in rows if r["structured"] is structured]
        print(f"structured={structured}: parsed {sum(r['parsed'] for r in mine)}/{len(mine)}, "
              f"{sum(r['seconds'] for r in mine):.0f} s")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
