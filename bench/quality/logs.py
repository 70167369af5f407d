"""The log task: a generated Java-style application log with its truth computed as it is written.

Bench task stage. :func:`build_logs` writes ``size`` lines in the logback layout the shipped
``recipes/log_census.rlm`` reads (``2026-03-14 09:00:00,120 ERROR [worker-3] com.acme.X - msg``),
from a fixed set of message templates per component and level, with random ids, durations and
addresses filled in; the question asks how many ERROR lines one component logged.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from bench.quality.instance import Instance, text_tokens, write

TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "com.acme.shop.OrderService": [
        ("INFO", "Order {id} placed by customer {n}"),
        ("WARN", "Order {id} payment retry {n} of 3"),
        ("ERROR", "Order {id} failed: payment gateway timeout after {ms} ms"),
    ],
    "com.acme.shop.InventoryClient": [
        ("INFO", "Reserved {n} units of sku-{id}"),
        ("ERROR", "Inventory lookup for sku-{id} returned HTTP 503"),
    ],
    "com.zaxxer.hikari.pool.HikariPool": [
        ("DEBUG", "HikariPool-1 - Pool stats (total={n}, active={n}, idle=0, waiting={n})"),
        ("WARN", "HikariPool-1 - Connection is not available, request timed out after {ms}ms"),
        ("ERROR", "HikariPool-1 - Exception during pool initialization from {ip}"),
    ],
    "com.acme.auth.TokenFilter": [
        ("INFO", "Token refreshed for session {id}"),
        ("WARN", "Rejected expired token from {ip}"),
        ("ERROR", "Signature check failed for token {id} from {ip}"),
    ],
    "com.acme.mail.Mailer": [
        ("INFO", "Sent receipt mail {id} in {ms} ms"),
        ("ERROR", "SMTP relay {ip} refused message {id}"),
    ],
}
_WEIGHTS = {"DEBUG": 6, "INFO": 10, "WARN": 3, "ERROR": 1}


def _line(when: datetime, rng: random.Random) -> tuple[str, str, str]:
    component = rng.choice(list(TEMPLATES))
    options = TEMPLATES[component]
    level, template = rng.choices(options, weights=[_WEIGHTS[lv] for lv, _ in options])[0]
    message = template.format(
        id=rng.randrange(10_000, 99_999), n=rng.randrange(1, 40), ms=rng.randrange(50, 30_000),
        ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}")
    stamp = when.strftime("%Y-%m-%d %H:%M:%S,") + f"{when.microsecond // 1000:03d}"
    thread = f"worker-{rng.randrange(1, 9)}"
    return f"{stamp} {level:<5} [{thread}] {component} - {message}", level, component


def build_logs(size: int, rng: random.Random, out: Path) -> Instance:
    """``size`` log lines; the question: how many ERROR lines one component wrote."""
    when = datetime(2026, 3, 14, 9, 0, 0)
    lines, errors = [], dict.fromkeys(TEMPLATES, 0)
    for _ in range(size):
        when += timedelta(milliseconds=rng.randrange(5, 4_000))
        line, level, component = _line(when, rng)
        lines.append(line)
        errors[component] += level == "ERROR"
    component = rng.choice(list(TEMPLATES))
    text = "\n".join(lines) + "\n"
    path = write(out / "app.log", text)
    question = f"How many ERROR lines did the component {component} log? Answer with a number."
    return Instance("logs", size, text_tokens(text), question, errors[component], "number", path,
                    "recipes/log_census.rlm", {"logs": path}, extract=f"errors:{component}")
