"""Fuzz the front end: thousands of mutated specs, and only our error type may come out.

Seeded-random mutations of every recipe and malformed spec (token deletion, swap, duplication,
keyword injection, truncation, random bytes and unicode) plus hand-made extremes (200K-char
lines, 500-deep nesting). Each text either compiles or raises :class:`CompileError` whose every
diagnostic points at a line and column that exist in the text it names.
"""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from rlm_dsl.compile import compile_text
from rlm_dsl.compiler.diagnostics import CompileError

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(ROOT.glob("recipes/*.rlm")) + sorted(ROOT.glob("tests/golden/errors/*.rlm"))
TOKEN = re.compile(r'"""[\s\S]*?"""|"[^"\n]*"|\w+|\s+|.', re.S)
KEYWORDS = ("recipe", "param", "lm", "type", "input", "chunk", "filter", "map", "reduce", "rlm",
            "use", "output", "->", "by", "with", "using", "sub", "where", "{{", "}}", "{%", '"""',
            "list[", "?", "|", ",", "=", "(", ")", "[", "]", "{", "}", ":", ".", "#")
ODD_TEXT = ("\x00", "\r", "\r\n", "\t", "\u2028", "\u200b", "\ufeff", "é", "日本", "🙂", "\u0301",
            "\u202e", "\\", '"', "'", "\udcff")
CASES = 2000


def _mutate(rng: random.Random, text: str) -> str:
    tokens = TOKEN.findall(text)
    for _ in range(rng.randint(1, 4)):
        if not tokens:
            break
        i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
        match rng.randrange(7):
            case 0:
                del tokens[i]
            case 1:
                tokens[i], tokens[j] = tokens[j], tokens[i]
            case 2:
                tokens.insert(i, tokens[j])
            case 3:
                tokens.insert(i, rng.choice(KEYWORDS))
            case 4:
                tokens.insert(i, "".join(rng.choices(ODD_TEXT, k=rng.randint(1, 3))))
            case 5:
                tokens.insert(i, bytes(rng.randrange(256) for _ in range(8)).decode("latin-1"))
            case _:
                tokens = list("".join(tokens)[: rng.randrange(len("".join(tokens)) + 1)])
    return "".join(tokens).replace("\udcff", "\ufffd")


def _extremes() -> list[str]:
    head = 'recipe big "x"\ninput doc: text\n'
    long = "a" * 200_000
    return [
        head + f'map doc -> n: str """{long}"""\noutput n\n',
        head + f"map doc -> {long}: str \"\"\"{{{{ chunk.text }}}}\"\"\"\noutput {long}\n",
        head + f"# {long}\noutput doc\n",
        head + f'filter doc where regex "{long}"\noutput doc\n',
        head + long,
        head + "param p: " + "list[" * 500 + "str" + "]" * 500 + "\noutput doc\n",
        head + "param p: str = " + "[" * 500 + "]" * 500 + "\noutput doc\n",
        head + "param p: " + "(" * 500 + "str" + ")" * 500 + "\noutput doc\n",
        head + 'map doc -> n: str """{{ ' + "(" * 500 + "chunk" + ")" * 500 + ' }}"""\noutput n\n',
        head + 'map doc -> n: str """' + "{% if 1 %}" * 500 + '"""\noutput n\n',
        head + "type T { " + ", ".join(f"f{i}: str" for i in range(5000)) + " }\noutput doc\n",
        "\n" * 100_000,
        "recipe",
        '"""',
    ]


def _assert_inside(error: CompileError, texts: dict[str, str]) -> None:
    assert error.diagnostics
    for diag in error.diagnostics:
        span = diag.span
        text = texts.get(span.file, error.sources.get(span.file))
        assert text is not None, f"diagnostic for unknown file {span.file}"
        lines = text.split("\n")
        assert 1 <= span.line <= len(lines), (span, diag.message)
        assert 1 <= span.col <= len(lines[span.line - 1]) + 1, (span, diag.message)
        diag.render(text)


def _run(text: str, path: str = "recipes/fuzz.rlm") -> None:
    try:
        compile_text(text, path)
    except CompileError as error:
        _assert_inside(error, {path: text})


def test_mutated_specs_raise_only_compile_errors() -> None:
    rng = random.Random(20260124)
    texts = [p.read_text(encoding="utf-8") for p in CORPUS]
    for _ in range(CASES):
        _run(_mutate(rng, rng.choice(texts)))


@pytest.mark.parametrize("index", range(len(_extremes())))
def test_extreme_specs(index: int) -> None:
    _run(_extremes()[index])


def test_random_bytes_as_text() -> None:
    rng = random.Random(7)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        _run(data.decode("utf-8", errors="replace"))


def _random_program(rng: random.Random) -> str:
    """Mostly valid dataflow; shuffled or mis-sourced sometimes (forward refs, cycles)."""
    rows, values, lines = ["doc"], [], ['recipe dag "Random dataflow."', "input doc: text"]
    for i in range(rng.randint(1, 8)):
        name = f"v{i}"
        match rng.randrange(5):
            case 0:
                lines.append(f"chunk {rng.choice(rows)} -> {name} by lines(5)")
                rows.append(name)
            case 1 if values:
                lines.append(f'reduce {rng.choice(values)} -> {name}: str """{{{{ items }}}}"""')
                values.append(name)
            case 2:
                lines.append(f'filter {rng.choice(rows + values)} where sql "id > 0"')
            case _:
                source = rng.choice(rows + values)
                lines.append(f'map {source} -> {name}: str """{{{{ chunk.id }}}}"""')
                values.append(name)
    if values and rng.random() < 0.2:  # feed the last value back into the first statement
        lines[2] = lines[2].replace(" doc ", " w ", 1)
        lines.insert(2, f'map {values[-1]} -> w: str """{{{{ chunk.id }}}}"""')
    if rng.random() < 0.3:
        body = lines[2:]
        rng.shuffle(body)
        lines[2:] = body
    if rng.random() < 0.2:
        lines.append(f'map v{rng.randrange(8)} -> v0: str """x"""')
    lines.append(f"output {rng.choice(rows[1:] + values or ['doc'])}")
    return "\n".join(lines) + "\n"


def test_random_dataflow_compiles_to_a_dag_or_fails_cleanly() -> None:
    rng = random.Random(99)
    compiled = 0
    for _ in range(600):
        text = _random_program(rng)
        try:
            plan = compile_text(text, "dag.rlm")
        except CompileError as error:
            _assert_inside(error, {"dag.rlm": text})
            continue
        compiled += 1
        tables = {s.table for s in plan.steps()}
        for step in plan.steps():
            assert step.source is None or step.source in tables
            parents = [p.table for p in plan.parents(step.id)]
            assert parents == ([step.source] if step.source else [])
    assert 100 < compiled < 590  # both valid and invalid programs are generated
