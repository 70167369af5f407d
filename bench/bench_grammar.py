"""Benchmark: does the local model's answer grammar change what it labels? Accuracy and labels.

Runs a spec on every example of a trainset-format JSONL with ``--lm local`` under one of three
grammars for enum and bool fields (``runtime/lm/chat_grammar.py``): ``json`` — both as JSON
(``"label"``, ``true``; main before issue 20's third round), ``enum`` — an enum's bare label, bools
still JSON, ``bare`` — bare labels and ``True``/``False`` (this code). Prints each answer, then one
JSON line: accuracy and the distribution of answers (a model that answers one label for every
message shows it there). ``--demos FILE`` puts that trainset's examples on every predictor as
labelled demos (the prompt rendered with ``--template``, ``MSG`` standing for the message).
``--check-set DIR`` writes the yes/no set this bench uses for bools: lines of a 32K niah haystack
that hold a number (essays, read at run time, never committed), needle lines for their key and
for another key, and synthetic needle lines. ``--same-grammar OLD.py SPEC…`` compiles each spec and
says, per step, whether ``OLD.py`` (another version of ``chat_grammar.py``, e.g. ``git show
c5e081a:runtime/lm/chat_grammar.py``, before issue 20's third round) writes the same grammar for
it as this code does.

    python -m bench.bench_grammar bench/optimize/route.rlm bench/optimize/route.dev.jsonl \\
        --grammar json
    python -m bench.bench_grammar --check-set /tmp/check
    python -m bench.bench_grammar bench/recipes/check_line.rlm /tmp/check/check.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from collections import Counter
from pathlib import Path

import dspy

from rlm_dsl.api import load
from rlm_dsl.runtime.lm import chat_grammar
from rlm_dsl.runtime.optimize.optimizer import RunSettings, Spend, Trainee
from rlm_dsl.runtime.optimize.trainset import load_trainset


def use_grammar(kind: str) -> None:
    """Make the local engine decode enum and bool fields as ``kind`` says (see the docstring)."""
    words = chat_grammar._labels
    if kind == "json":
        chat_grammar._labels = lambda prop: None
    elif kind == "enum":
        chat_grammar._labels = lambda prop: None if "boolean" in json.dumps(prop) else words(prop)


def demos_from(path: Path, template: str, field: str) -> list[dspy.Example]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    texts = [next(iter(row["inputs"].values()))["text"].strip() for row in rows]
    return [dspy.Example(prompt=template.replace("MSG", text),
                         **{field: row["expected"]["answer"]}).with_inputs("prompt")
            for row, text in zip(rows, texts, strict=True)]


def label(spec: str, data: Path, grammar: str, demos: list[dspy.Example]) -> dict:
    use_grammar(grammar)
    recipe = load(spec)
    for _, predictor in recipe.named_predictors():
        predictor.demos = demos
    with tempfile.TemporaryDirectory() as scratch:
        examples = load_trainset(data, recipe.plan, Path(scratch))
        trainee = Trainee(recipe, RunSettings(lm="local", concurrency=1), Spend())
        right, answers, started = 0, Counter(), time.perf_counter()
        for example in examples:
            got = trainee(**example.inputs())
            want = {name: example[name] for name in example.labels()}
            ok = all(str(getattr(got, k, None)) == str(v) for k, v in want.items())
            right += ok
            answers.update(str(getattr(got, k, None)) for k in want)
            print(f"{'ok' if ok else '--'} want={want} got={dict(got)}", flush=True)
    return {"spec": spec, "data": str(data), "grammar": grammar, "demos": len(demos),
            "right": right, "n": len(examples), "accuracy": round(right / len(examples), 3),
            "answers": dict(answers), "wall_s": round(time.perf_counter() - started, 1)}


def check_set(out: Path) -> Path:
    """Write ``check.jsonl``: (line, key) → does the line give the magic number for the key?"""
    from bench.quality.tasks import build_niah

    rng, instances = random.Random(7), []
    for seed in (0, 1, 2):
        (out / f"niah-{seed}").mkdir(parents=True, exist_ok=True)
        instances.append(build_niah(32_000, random.Random(seed), out / f"niah-{seed}"))
    keys = [inst.params["key"] for inst in instances]
    cases = []
    for inst, other in zip(instances, keys[1:] + keys[:1], strict=True):
        needle = next(line for line in Path(inst.inputs["doc"]).read_text().splitlines()
                      if "special magic number" in line)
        cases += [(inst.params["key"], needle, True), (other, needle, False)]
    for word in ("amber-willow", "granite-plume", "silver-thistle", "copper-meadow"):
        cases.append((word, f"One of the special magic numbers for {word} is: "
                            f"{rng.randrange(1_000_000, 10_000_000)}.", True))
    haystack = Path(instances[0].inputs["doc"]).read_text().splitlines()
    numbers = sorted({line.strip() for line in haystack
                      if re.search(r"\b\d+\b", line) and "magic" not in line and len(line) > 20})
    cases += [(rng.choice(keys), line, False) for line in rng.sample(numbers, 14)]
    path = out / "check.jsonl"
    rows = ({"inputs": {"line": {"text": line + "\n"}}, "params": {"key": key},
             "expected": {"answer": want}} for key, line, want in cases)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def same_grammar(old_module: Path, specs: list[str]) -> None:
    """Print, per LM step of each spec, whether ``old_module`` builds this code's grammar."""
    import importlib.util

    from rlm_dsl.runtime.lm.structured import response_format

    found = importlib.util.spec_from_file_location("old_chat_grammar", old_module)
    old = importlib.util.module_from_spec(found)
    found.loader.exec_module(old)
    for spec in specs:
        for name, module in load(spec).step_modules.items():
            if hasattr(module, "predict_signature"):
                schema = response_format(module.predict_signature())["json_schema"]["schema"]
                same = _used(old.chat_grammar(schema)) == _used(chat_grammar.chat_grammar(schema))
                print(f"{spec} {name} fields={list(schema['properties'])} same={same}")


def _used(grammar: str) -> str:
    """``grammar`` without its free-text rule when no field's value is free text: the rule is
    written into every grammar, so a change to it matters only where a field uses it."""
    root = next(line for line in grammar.splitlines() if line.startswith("root ::= "))
    if " text " in root:
        return grammar
    return "\n".join(line for line in grammar.splitlines() if not line.startswith("text ::= "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?")
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--grammar", choices=("json", "enum", "bare"), default="bare")
    parser.add_argument("--demos", type=Path)
    parser.add_argument("--template", default="MSG")
    parser.add_argument("--field", default="answer")
    parser.add_argument("--check-set", type=Path, metavar="DIR")
    parser.add_argument("--same-grammar", type=Path, metavar="OLD.py")
    args, more = parser.parse_known_args()
    if args.same_grammar:
        same_grammar(args.same_grammar, [a for a in (args.spec, str(args.data or ""), *more) if a])
        return
    if more:
        parser.error(f"unrecognized arguments: {' '.join(more)}")
    if args.check_set:
        print(check_set(args.check_set))
        return
    demos = demos_from(args.demos, args.template, args.field) if args.demos else []
    print(json.dumps(label(args.spec, args.data, args.grammar, demos)))


if __name__ == "__main__":
    main()
