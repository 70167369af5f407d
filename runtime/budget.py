"""Run budgets: hard caps on LM calls, tokens and dollars, checked before every call.

A :class:`Budget` is shared by every LM of a run (and by ``rlm`` sub-calls). The call gate
(:mod:`rlm_dsl.runtime.calls`) calls :meth:`Budget.reserve` *before* sending a request — it
atomically claims one call, so concurrent workers never overshoot ``max_calls`` — and
:meth:`Budget.settle` after it with the real token counts and cost. Answers served from the cache
are free. The first refusal is kept in :attr:`Budget.exhausted` so the executor can stop
scheduling work and report what is missing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rlm_dsl.errors import BudgetExhausted


@dataclass
class Budget:
    max_calls: int | None = None
    max_tokens: int | None = None
    max_usd: float | None = None
    calls: int = 0
    tokens: int = 0
    usd: float = 0.0
    exhausted: BudgetExhausted | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reserve(self, prompt_tokens: int, priced: bool) -> None:
        """Claim one call of about ``prompt_tokens`` tokens, or raise :class:`BudgetExhausted`."""
        with self._lock:
            reason = self._refusal(prompt_tokens, priced)
            if reason is not None:
                if self.exhausted is None:
                    self.exhausted = BudgetExhausted(reason)
                raise BudgetExhausted(reason)
            self.calls += 1

    def settle(self, tokens: int, usd: float | None) -> None:
        """Account a finished call's real token count and cost."""
        with self._lock:
            self.tokens += tokens
            self.usd += usd or 0.0

    def _refusal(self, prompt_tokens: int, priced: bool) -> str | None:
        if self.exhausted is not None:
            return str(self.exhausted)
        if self.max_calls is not None and self.calls >= self.max_calls:
            return f"budget exhausted: --max-calls {self.max_calls} reached"
        if self.max_tokens is not None and self.tokens + prompt_tokens > self.max_tokens:
            return f"budget exhausted: --max-tokens {self.max_tokens} reached ({self.tokens} used)"
        if priced and self.max_usd is not None and self.usd >= self.max_usd:
            return f"budget exhausted: --max-usd {self.max_usd} reached (${self.usd:.4f} spent)"
        return None
