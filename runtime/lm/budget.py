"""Budgets: hard caps on LM calls, tokens and dollars, checked before every call.

A run's :class:`Budget` is shared by every LM of the run (and by ``rlm`` sub-calls); a step with
budget options (``max_calls``, ``max_total_tokens``, ``max_usd``, ``max_calls_per_depth``) also
gets one of its own, checked next to the run's. The call gate (:mod:`rlm_dsl.runtime.lm.gate`)
calls :meth:`Budget.reserve` *before* sending a request — it atomically claims one call, so
concurrent workers never overshoot ``max_calls`` — and :meth:`Budget.settle` after it with the
real token counts and cost. Answers served from the cache are free. The first refusal is kept in
:attr:`Budget.exhausted` so the executor can stop scheduling work and report what is missing.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rlm_dsl.errors import BudgetExhausted

STEP_OPTIONS = ("max_calls", "max_total_tokens", "max_usd", "max_calls_per_depth")


@dataclass
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    max_calls_per_depth: int | None = None
    step: str | None = None  # how a step budget names its step; None: the run's budget
    calls: int = 0
    tokens: int = 0
    usd: float = 0.0
    depth_calls: Counter[int] = field(default_factory=Counter)
    exhausted: BudgetExhausted | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def for_step(cls, step: str, options: dict[str, Any]) -> Budget | None:
        """The budget of a step named ``step`` (``step 'map-x' (f.rlm:4:1)``) from its options;
        None when it sets none."""
        if not any(options.get(name) is not None for name in STEP_OPTIONS):
            return None
        return cls(options.get("max_calls"), options.get("max_total_tokens"),
                   options.get("max_usd"), options.get("max_calls_per_depth"), step=step)

    def reserve(self, prompt_tokens: int, priced: bool, depth: int = 0) -> None:
        """Claim one call of about ``prompt_tokens`` tokens at recursion ``depth``, or raise
        :class:`BudgetExhausted`."""
        with self._lock:
            reason = self._refusal(prompt_tokens, priced, depth)
            if reason is not None:
                if self.exhausted is None:
                    self.exhausted = BudgetExhausted(reason)
                raise BudgetExhausted(reason)
            self.calls += 1
            self.depth_calls[depth] += 1

    def release(self, depth: int = 0) -> None:
        """Give back a call claimed by :meth:`reserve` that was never sent."""
        with self._lock:
            self.calls -= 1
            self.depth_calls[depth] -= 1

    def settle(self, tokens: int, usd: float | None) -> None:
        """Account a finished call's real token count and cost."""
        with self._lock:
            self.tokens += tokens
            self.usd += usd or 0.0

    def _refusal(self, prompt_tokens: int, priced: bool, depth: int) -> str | None:
        if self.exhausted is not None:
            return str(self.exhausted)
        name = self._name
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"budget exhausted: {name('max_calls', self.max_calls)} reached"
        if self.max_calls_per_depth is not None and (
                self.depth_calls[depth] >= self.max_calls_per_depth):
            return (f"budget exhausted: {name('max_calls_per_depth', self.max_calls_per_depth)} "
                    f"reached at depth {depth}")
        if self.max_tokens is not None and self.tokens + prompt_tokens > self.max_tokens:
            cap = name("max_total_tokens", self.max_tokens, "--max-tokens")
            return f"budget exhausted: {cap} reached ({self.tokens} used)"
        if priced and self.max_usd is not None and self.usd >= self.max_usd:
            return (f"budget exhausted: {name('max_usd', self.max_usd)} reached "
                    f"(${self.usd:.4f} spent)")
        return None

    def _name(self, option: str, value: float, flag: str | None = None) -> str:
        """``--max-calls 10`` for a run cap, ``max_calls=10 of step 'map-x' (…)`` for a step's."""
        if self.step is None:
            return f"{flag or '--' + option.replace('_', '-')} {value}"
        return f"{option}={value} of {self.step}"
