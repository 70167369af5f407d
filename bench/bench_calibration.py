"""Benchmark: does scoring the labels and calibrating them let the local model label items?

Issue 17's labelling tasks (oolong, pairs) score what one enum label per item scores, and the
0.5B model, asked for a label under the enum grammar, gives nearly every item the same one. This
bench asks whether *contextual calibration* (Zhao et al. 2021, "Calibrate Before Use") fixes
that: instead of decoding, take the log-probability of each label's tokens after the prompt
(the prompt evaluated once, its KV cache reused for every label), estimate the label prior from
content-free inputs (the same prompt with the item's text replaced by ``N/A``, ``""`` and
``[MASK]``) and pick ``argmax log p(label | item) - log p(label | content-free)`` — with each
content-free input alone and with their mean.

The items are ``--n`` HotpotQA questions (seed ``--seed``; 30 and 5 are the 30 of
docs/benchmarks.md "Why oolong and pairs stay at the floor"), gold label by the bench's own rule
(``bench/quality/tasks.py`` ``answer_label``). The prompt is the one ``rlm ask`` writes: the count
strategy's spec for the oolong question (``--target`` names its label), its map step rendered and
formatted as the runtime does (``RobustAdapter``, the GGUF's chat template), then
``[[ ## label ## ]]`` — the header the grammar forces anyway. ``--reason`` is the same step with
``reason=true``: the model writes its reasoning first (greedy, free text), the labels are scored
after it, and the content-free prompts get the reasoning ``N/A``. The baseline is the runtime's
own decoding: the enum grammar of ``runtime/lm/chat_grammar.py``, greedy. Prints one line per
method (accuracy, recall per gold label, labels given) and the rows as JSON with ``--json``
(``wall_s`` of the scoring row leaves out the prompt, which the greedy call evaluated just before).

    python -m bench.bench_calibration [--n 30] [--seed 5] [--reason] [--model PATH.gguf]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dspy
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from bench.quality import data
from bench.quality.tasks import LABELS, _agg_prompt, answer_label
from rlm_dsl.compiler.templates import environment
from rlm_dsl.questions.ask import plan_question
from rlm_dsl.runtime.lm.adapter import RobustAdapter
from rlm_dsl.runtime.lm.local import constrained, default_n_ctx, load_llama
from rlm_dsl.runtime.lm.models import ensure_local_model
from rlm_dsl.runtime.lm.structured import response_format
from rlm_dsl.runtime.steps.run import step_module

CONTENT_FREE = ("N/A", "", "[MASK]")
HEADER = "[[ ## label ## ]]\n"


class LabelScorer:
    """Log-probabilities of whole label token sequences after a chat prompt (llama.cpp)."""

    def __init__(self, model: Path) -> None:
        self.llama, _lock = load_llama(model, default_n_ctx())  # the model `rlm ask` loaded
        eos, bos = (self.llama.detokenize([t]).decode() for t in
                    (self.llama.token_eos(), self.llama.token_bos()))
        self.chat = Jinja2ChatFormatter(self.llama.metadata["tokenizer.chat_template"], eos, bos)

    def prompt(self, messages: list[dict[str, str]], answer_prefix: str) -> str:
        return self.chat(messages=messages).prompt + answer_prefix

    def scores(self, prompt: str, labels: tuple[str, ...] = LABELS) -> dict[str, float]:
        """``log p(label + "\\n" | prompt)`` per label: the newline ends a label, so no label's
        score counts another's continuation; the prompt's common prefix with the last one is
        kept in the KV cache."""
        llama = self.llama
        tokens = llama.tokenize(prompt.encode(), add_bos=False, special=True)
        kept = 0
        for had, new in zip(llama.input_ids[: llama.n_tokens], tokens[:-1], strict=False):
            if had != new:
                break
            kept += 1
        llama.n_tokens = kept
        llama.eval(tokens[kept:])
        first, base, out = self._last_logprobs(), llama.n_tokens, {}
        for label in labels:
            ids = llama.tokenize(f"{label}\n".encode(), add_bos=False, special=False)
            total, llama.n_tokens = first[ids[0]], base
            for previous, token in itertools.pairwise(ids):
                llama.eval([previous])
                total += self._last_logprobs()[token]
            out[label] = float(total)
        return out

    def greedy(self, messages: list[dict[str, str]], fmt: dict[str, Any], **kw: Any) -> str:
        done = self.llama.create_chat_completion(messages=messages, temperature=0, **kw,
                                                 **(constrained(fmt) if fmt else {}))
        return done["choices"][0]["message"]["content"] or ""

    def _last_logprobs(self) -> np.ndarray:
        logits = np.ctypeslib.as_array(self.llama._ctx.get_logits(),
                                       shape=(self.llama.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - top - np.log(np.exp(logits - top).sum())


def questions(n: int, seed: int) -> list[dict[str, str]]:
    """The ``n`` HotpotQA questions the previous rounds labelled (same sampling), gold labels."""
    pool = data.hotpotqa()
    return [{"text": q["question"], "label": answer_label(q["answer"])}
            for q in random.Random(seed).sample(pool, n)]


def ask_step(items: list[dict[str, str]], target: str, reason: bool, scratch: Path) -> tuple:
    """``rlm ask``'s label map for the oolong question: (its prompt template, the question,
    the step's DSPy signature) — the spec planned as ``rlm ask --strategy count`` plans it."""
    path = scratch / "items.jsonl"
    path.write_text("".join(json.dumps({"user": "U1", "text": it["text"]}) + "\n"
                            for it in items))
    question = _agg_prompt(f"How many questions are labelled {target}?")
    planned = plan_question(question, [str(path)], lm="local", strategy="count", use_lm=False)
    step = next(s for s in planned.chosen.plan.steps() if s.kind == "map")
    if reason:
        step.options["reason"] = True
    module = step_module(step, planned.chosen.plan.description)
    return step.prompt, question, module.predict_signature(), module


def messages_for(template: str, question: str, text: str, signature: Any) -> list[dict]:
    prompt = environment().from_string(template).render(chunk={"text": text},
                                                        question=question).strip()
    return RobustAdapter().format(signature, [], {"prompt": prompt})


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    items = questions(args.n, args.seed)
    gold = [it["label"] for it in items]
    scorer = LabelScorer(Path(args.model) if args.model else ensure_local_model())
    with tempfile.TemporaryDirectory() as scratch:
        template, question, signature, _module = ask_step(items, args.target, args.reason,
                                                          Path(scratch))
    fmt = response_format(signature)
    rows, started = [], time.perf_counter()
    greedy, scores, spent = [], [], {}
    for it in items:
        messages = messages_for(template, question, it["text"], signature)
        t0 = time.perf_counter()
        answer = scorer.greedy(messages, fmt, max_tokens=160 if args.reason else 24)
        spent["greedy"] = spent.get("greedy", 0.0) + time.perf_counter() - t0
        greedy.append(next((lab for lab in LABELS if re.search(
            rf"\[\[ ## label ## \]\]\n{lab}\n", answer)), None))
        prefix = answer.split("[[ ## label ## ]]")[0] if args.reason else ""
        t0 = time.perf_counter()  # with --reason: scored after the greedy run's own reasoning
        scores.append(scorer.scores(scorer.prompt(messages, prefix + HEADER)))
        spent["scoring"] = spent.get("scoring", 0.0) + time.perf_counter() - t0
    reasoning = "[[ ## reasoning ## ]]\nN/A\n\n" if args.reason else ""
    priors = [scorer.scores(scorer.prompt(messages_for(template, question, cf, signature),
                                          reasoning + HEADER)) for cf in CONTENT_FREE]
    mean_prior = {lab: float(np.mean([p[lab] for p in priors])) for lab in LABELS}
    rows.append(summary("enum grammar, greedy (the runtime today)", greedy, gold,
                        spent["greedy"]))
    rows.append(summary("label scoring", [_best(s) for s in scores], gold, spent["scoring"]))
    rows.append(summary("calibrated, mean of the content-free priors",
                        [_best(s, mean_prior) for s in scores], gold))
    for cf, prior in zip(CONTENT_FREE, priors, strict=True):
        rows.append(summary(f"calibrated, content-free {cf!r} only",
                            [_best(s, prior) for s in scores], gold))
    for row in rows:
        row.update(n=args.n, seed=args.seed, reason=args.reason, target=args.target)
    print(f"priors: {[{k: round(v, 2) for k, v in p.items()} for p in priors]}; "
          f"wall {time.perf_counter() - started:.0f} s")
    return rows


def _best(scores: dict[str, float], prior: dict[str, float] | None = None) -> str:
    return max(scores, key=lambda lab: scores[lab] - (prior[lab] if prior else 0.0))


def summary(method: str, got: list[str | None], gold: list[str], wall: float | None = None
            ) -> dict[str, Any]:
    recall = {lab: round(sum(g == p == lab for g, p in zip(gold, got, strict=True))
                         / max(1, gold.count(lab)), 2) for lab in LABELS}
    row = {"method": method,
           "accuracy": round(sum(g == p for g, p in zip(gold, got, strict=True)) / len(gold), 2),
           "recall": recall, "given": dict(Counter(map(str, got))),
           "wall_s": None if wall is None else round(wall, 1)}
    print(f"{method:48s} acc {row['accuracy']:.2f}  recall {recall}  given {row['given']}")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--target", default="number", choices=LABELS,
                        help="the label the oolong question counts (it is in the prompt)")
    parser.add_argument("--reason", action="store_true", help="the map with reason=true")
    parser.add_argument("--model", help="a GGUF file (default: the pinned local model)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    dspy.configure(adapter=RobustAdapter())
    rows = measure(args)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
