"""Shared inputs of the ``rlm ask`` tests: a fixed profile per input kind (so goldens do not
depend on the machine) and small files with planted facts."""

from __future__ import annotations

from pathlib import Path

from dspy.lm15 import Message, Response, TextPart, Usage

from rlm_dsl.questions.profile import InputProfile

PROFILES = {
    "text": InputProfile(paths=("data/essays.txt",), files=("data/essays.txt",), kind="text",
                         bytes=400_000, lines=4_000, tokens=100_000,
                         sample=("Essay line one.",)),
    "log": InputProfile(paths=("data/app.log",), files=("data/app.log",), kind="log",
                        bytes=100_000, lines=1_000, tokens=25_000, sample=("2026-03-14 …",),
                        log_format="logback",
                        columns=("ts", "level", "host", "process", "pid", "component",
                                 "message"), timed=True),
    "jsonl": InputProfile(paths=("data/items.jsonl",), files=("data/items.jsonl",),
                          kind="jsonl", bytes=10_000, lines=200, tokens=2_500,
                          sample=('{"user": "U1", "text": "Who?"}',), columns=("user", "text")),
}


def write_log(path: Path, lines: int = 60) -> Path:
    """A logback-style log: every third line an ERROR of OrderService, with an address."""
    rows = []
    for i in range(lines):
        level, component = ("ERROR", "com.acme.shop.OrderService") if i % 3 == 0 else \
            ("INFO", "com.acme.auth.TokenFilter")
        rows.append(f"2026-03-14 09:{i // 60:02d}:{i % 60:02d},120 {level:<5} [worker-1] "
                    f"{component} - request {i} from 10.0.{i % 7}.{i}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def write_essay(path: Path, fact: str, lines: int = 300) -> Path:
    """``lines`` lines of filler with ``fact`` planted in the middle."""
    body = [f"Line {i} is about painting, startups and the weather." for i in range(lines)]
    body.insert(lines // 2, fact)
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    return path


def reply(model: str, text: str) -> Response:
    """An engine's answer ``text`` (10 + 10 tokens), for scripted test back ends."""
    return Response(id=None, model=model, message=Message.assistant([TextPart(text)]),
                    finish_reason="stop",
                    usage=Usage(input_tokens=10, output_tokens=10, total_tokens=20))
