"""Seeded task instances for the quality bench, built from the public data in :mod:`.data`.

Bench task stage. Each builder takes a size, a ``random.Random`` and an output folder, writes the
instance's input files there and returns an :class:`Instance`: the question, the computed gold
answer, the metric (:mod:`.scoring`), a plain-text rendering of the input (what ``vanilla`` and
the free-form ``rlm`` step read) and the recipe with its inputs and params. Tasks: ``niah``
(RULER single needle in Paul Graham essays), ``oolong`` (label aggregation over HotpotQA
questions from several users), ``pairs`` (OOLONG-Pairs over the same kind of items), ``docqa``
(HotpotQA question over its paragraphs plus distractors) and ``logs`` (generated app log).
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.quality import data
from bench.quality.instance import Instance, text_tokens, write
from bench.quality.logs import build_logs

LABELS = ("yes_no", "number", "name")
LABEL_RULES = ("yes_no: the answer is yes or no; number: the answer contains a number, year, "
               "date or quantity; name: any other answer (a person, place, work, thing).")
_WORDS = ("amber", "basalt", "cobalt", "delta", "ember", "fjord", "garnet", "harbor", "indigo",
          "juniper", "kestrel", "lumen", "marble", "nectar", "onyx", "pylon", "quartz", "raven")


def build_niah(size: int, rng: random.Random, out: Path) -> Instance:
    """``size`` tokens of essays (repeated past 750K) with one magic-number needle inside."""
    essays = data.essays()
    start = rng.randrange(len(essays))
    hay = (essays[start:] + "\n" + essays) * (1 + size * 4 // len(essays))
    lines = hay[: size * 4].splitlines()
    key = f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}"
    value = str(rng.randrange(1_000_000, 10_000_000))
    lines.insert(rng.randrange(len(lines) + 1),
                 f"One of the special magic numbers for {key} is: {value}.")
    text = "\n".join(lines) + "\n"
    question = f"What is the special magic number for {key} mentioned in the text?"
    path = write(out / "niah.txt", text)
    return Instance("niah", size, text_tokens(text), question, value, "contains", path,
                    "bench/recipes/niah.rlm", {"doc": path}, {"key": key})


def answer_label(answer: str) -> str:
    """The gold label of a HotpotQA question, from its gold answer."""
    if answer.strip().lower() in {"yes", "no"}:
        return "yes_no"
    return "number" if re.search(r"\d", answer) else "name"


def _items(n: int, rng: random.Random, out: Path) -> tuple[list[dict[str, str]], str, str]:
    pool = data.hotpotqa()
    users = [f"U{i}" for i in range(1, max(4, n // 5) + 1)]
    items = [{"user": rng.choice(users), "text": q["question"], "label": answer_label(q["answer"])}
             for q in rng.sample(pool, n)]
    text = "".join(f"user={it['user']} | {it['text']}\n" for it in items)
    jsonl = "".join(json.dumps({"user": it["user"], "text": it["text"]}) + "\n" for it in items)
    return items, write(out / "items.txt", text), write(out / "items.jsonl", jsonl)


def oolong_question(items: list[dict[str, str]], rng: random.Random) -> tuple[str, Any, str, str]:
    """(question, gold, metric, extract) for one OOLONG-style aggregation over ``items``."""
    counts = Counter(it["label"] for it in items)
    ranked = sorted(LABELS, key=lambda lab: counts[lab])
    kind = rng.choice(["count", "most", "least", "user"])
    if kind in ("most", "least") and len({counts[lab] for lab in LABELS}) < len(LABELS):
        kind = "count"
    label = rng.choice(LABELS)
    if kind == "count":
        question = f"How many questions are labelled {label}?"
        return question, counts[label], "number", f"count:{label}"
    if kind == "user":
        user = rng.choice(sorted({it["user"] for it in items}))
        gold = sum(1 for it in items if it["user"] == user and it["label"] == label)
        return (f"How many questions asked by user {user} are labelled {label}?", gold, "number",
                f"user:{user}:{label}")
    gold = ranked[-1] if kind == "most" else ranked[0]
    return (f"Which label is the {'most' if kind == 'most' else 'least'} frequent? "
            f"Answer with the label.", gold, "label", kind)


def _agg_prompt(question: str) -> str:
    return ("Each line is a trivia question asked by a user (user=<id> | question). Label "
            f"every question by the type of its answer - {LABEL_RULES} {question}")


def build_oolong(size: int, rng: random.Random, out: Path) -> Instance:
    items, text_path, jsonl = _items(size, rng, out)
    question, gold, metric, extract = oolong_question(items, rng)
    return Instance("oolong", size, text_tokens(Path(text_path).read_text()), _agg_prompt(question),
                    gold, metric, text_path, "bench/recipes/label_agg.rlm", {"items": jsonl},
                    extract=extract, labels=LABELS)


def gold_pairs(items: list[dict[str, str]], label: str) -> list[tuple[str, str]]:
    """Sorted pairs of distinct users who both asked at least one ``label`` question."""
    users = sorted({it["user"] for it in items if it["label"] == label},
                   key=lambda u: int(u[1:]))
    return [(a, b) for i, a in enumerate(users) for b in users[i + 1:]]


def build_pairs(size: int, rng: random.Random, out: Path) -> Instance:
    items, text_path, jsonl = _items(size, rng, out)
    label = rng.choice([lab for lab in LABELS if gold_pairs(items, lab)] or ["name"])
    question = (f"List every pair of users who both asked at least one question labelled "
                f"{label}. Write each pair as (U1, U2).")
    return Instance("pairs", size, text_tokens(Path(text_path).read_text()), _agg_prompt(question),
                    gold_pairs(items, label), "pairs", text_path, "bench/recipes/label_agg.rlm",
                    {"items": jsonl}, extract=f"pairs:{label}")


def build_docqa(size: int, rng: random.Random, out: Path) -> Instance:
    """One HotpotQA question, its 10 paragraphs and distractors up to ``size`` documents."""
    pool = data.hotpotqa()
    target = rng.choice([q for q in pool if q["answer"].lower() not in {"yes", "no"}])
    docs = [(t, "".join(s)) for t, s in target["context"]]
    while len(docs) < size:
        other = rng.choice(pool)
        if other is not target:
            docs.extend((t, "".join(s)) for t, s in other["context"])
    docs = docs[:size]
    rng.shuffle(docs)
    rows = [f"{title}: {body.strip()}" for title, body in docs]
    text_path = write(out / "docs.txt", "".join(r + "\n" for r in rows))
    jsonl = write(out / "docs.jsonl", "".join(json.dumps({"text": r}) + "\n" for r in rows))
    return Instance("docqa", size, text_tokens(Path(text_path).read_text()), target["question"],
                    target["answer"], "contains", text_path, "bench/recipes/doc_qa.rlm",
                    {"docs": jsonl}, {"question": target["question"]})


BUILDERS: dict[str, Callable[[int, random.Random, Path], Instance]] = {
    "niah": build_niah, "oolong": build_oolong, "pairs": build_pairs, "docqa": build_docqa,
    "logs": build_logs,
}
