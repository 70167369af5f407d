"""One LM-backed step as a ``dspy.Module``: render → fit check → predict with retries → value.

Step-module stage. :class:`StepModule` holds the step's predictor (``dspy.Predict`` or
``dspy.ChainOfThought`` over the signature from
:func:`~rlm_dsl.runtime.lm.signatures.make_signature`),
so DSPy optimizers see and tune one named predictor per step. :meth:`StepModule.call` sends one
rendered prompt with the step's retries: transient LM errors and unparseable answers are retried
(each attempt is its own cache key, so a retry is a fresh call), a budget refusal stops the run
(:class:`BudgetStop`), a prompt over the context window raises :class:`TooLarge` so the caller
can split, a missing or rejected API key stops the step at once (every call would fail alike),
and a prompt that still fails raises :class:`ItemFailed` for the ``failures`` table.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Mapping
from contextlib import nullcontext
from typing import Any

import dspy
from dspy.adapters.decision import resolve_adapter
from dspy.dsp.utils.settings import thread_local_overrides
from dspy.lm15 import AuthError
from dspy.utils.exceptions import (
    AdapterParseError,
    ContextWindowExceededError,
    LMAuthError,
    is_retryable_lm_error,
)

from rlm_dsl.compiler.plan import Step
from rlm_dsl.compiler.types import Type
from rlm_dsl.errors import BudgetExhausted, Unrecoverable, caused_by
from rlm_dsl.runtime.lm.gate import call_scope, current_scope
from rlm_dsl.runtime.lm.signatures import make_signature, to_plain
from rlm_dsl.runtime.lm.structured import response_format
from rlm_dsl.runtime.steps.context import BoundLM

MAX_BACKOFF_S = 8.0


class BudgetStop(Exception):
    """The run budget refused a call; carries the :class:`BudgetExhausted` to report."""

    def __init__(self, error: BudgetExhausted) -> None:
        super().__init__(str(error))
        self.error = error


class TooLarge(Exception):
    """The prompt does not fit the LM's context window."""


class ItemFailed(Exception):
    """A prompt still failed after every retry."""

    def __init__(self, error: str, raw: str | None, attempts: int) -> None:
        super().__init__(error)
        self.raw, self.attempts = raw, attempts


class RowError(Exception):
    """An unexpected error while processing one row (a template error, a bug): stops the step."""

    def __init__(self, chunk_id: int | None, error: BaseException) -> None:
        super().__init__(f"{type(error).__name__}: {error}")
        self.chunk_id, self.error = chunk_id, error


class StepModule(dspy.Module):
    """The DSPy module of one map / filter / reduce step (one predictor, typed output)."""

    # plain attribute reads: DSPy's hook (a warning when ``forward`` is called directly) costs
    # ~0.25 µs a read, several times per call; the runtime calls ``call``, never ``forward``
    __getattribute__ = object.__getattribute__

    def __init__(self, step: Step, out: Type, instructions: str = "") -> None:
        super().__init__()
        self.step_id = step.id
        self.value = "keep" if step.kind == "filter" else step.name
        sig = make_signature(step.kind, step.name, out, instructions, field_name=self.value)
        reason = bool(step.options.get("reason"))
        self.predict = dspy.ChainOfThought(sig) if reason else dspy.Predict(sig)
        self.retries = int(step.options.get("retries", 2))
        self.temperature = step.options.get("temperature")
        self.max_tokens = step.options.get("max_tokens")

    def forward(self, prompt: str) -> dspy.Prediction:
        answer = _ask(self.predict, prompt, self._config(structured=False))
        return answer if isinstance(answer, dspy.Prediction) else dspy.Prediction(**answer)

    def _config(self, structured: bool) -> dict[str, Any]:
        config: dict[str, Any] = {k: v for k, v in (("temperature", self.temperature),
                                                   ("max_tokens", self.max_tokens))
                                  if v is not None}
        if structured:  # the LM decodes only answers of the output's type (lm/structured.py)
            config["response_format"] = response_format(self.predict_signature())
        return config

    def prompt_overhead(self, bound: BoundLM, adapter: Any) -> int:
        """Tokens the adapter adds around an empty prompt, plus room for the answer."""
        messages = adapter.format(self.predict_signature(), [], {"prompt": ""})
        fixed = sum(bound.count(str(m.get("content", ""))) for m in messages)
        answer = int(self.max_tokens or min(1024, bound.window // 8))
        return fixed + answer

    def predict_signature(self) -> type[dspy.Signature]:
        predictor = self.predict if isinstance(self.predict, dspy.Predict) else self.predict.predict
        return predictor.signature

    def call(self, bound: BoundLM, adapter: Any, prompt: str, first_attempt: int = 0) -> Any:
        """The typed value for ``prompt``, with retries (see the module docstring)."""
        error, raw = "no attempt made", None
        predict, value, retries = self.predict, self.value, self.retries  # once for all attempts
        config = self._config(bound.resolved.structured)
        for attempt in range(first_attempt, first_attempt + retries + 1):
            try:
                with _attempt(attempt), _using(bound.lm, adapter):
                    # not through __call__: the module layer's callbacks and caller stack cost
                    # ~15 µs a call; the predictor inside runs them only when observed (_ask)
                    return to_plain(_ask(predict, prompt, config)[value])
            except Exception as exc:  # classified below; anything unknown is a failed attempt
                budget = caused_by(exc, BudgetExhausted)
                if budget is not None:
                    raise BudgetStop(budget) from None
                if _context_overflow(exc):
                    raise TooLarge(str(exc)) from None
                stop = caused_by(exc, Unrecoverable) or _no_credentials(exc, bound)
                if stop is not None:  # retrying cannot help (no API key, a replay miss)
                    raise stop from None
                error, raw = _describe(exc), getattr(exc, "lm_response", None)
                if attempt < first_attempt + retries:
                    time.sleep(_backoff(exc, attempt - first_attempt))
        raise ItemFailed(error, raw, retries + 1)


def _ask(predict: Any, prompt: str, config: dict[str, Any]) -> Mapping[str, Any]:
    """``predict``'s answer to ``prompt`` (output field → value), passing ``config`` only when it
    sets something.

    When nothing observes the module layer, ``forward`` is called without ``Module.__call__``
    (:func:`_unobserved`): the layer would only push a caller stack that nothing reads (~8 µs a
    call). When nothing observes the predictor either (:func:`_direct_call`), its adapter is
    called as ``Predict.forward`` would call it, without the rest of ``forward``: argument checks
    the runtime's one ``prompt`` always passes, and a ``Prediction`` built around the answer —
    ~55 µs a call, a quarter of a call to an instant LM (docs/benchmarks.md, issue 19).
    """
    if not _unobserved(predict):
        return predict(**_inputs(prompt, config))
    direct = _direct_call(predict, config)
    if direct is None:
        return type(predict).forward(predict, **_inputs(prompt, config))  # no DSPy warning hook
    lm, adapter = direct
    answers = adapter(lm, lm_kwargs={**predict.config, **config}, signature=predict.signature,
                      demos=predict.demos, inputs={"prompt": prompt})
    return answers[0] if answers else {}


def _inputs(prompt: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": prompt, "config": config} if config else {"prompt": prompt}


def _setting(name: str) -> Any:
    """``dspy.settings`` value ``name``, read from the context overrides first (the fast read)."""
    overrides = thread_local_overrides.get()
    return overrides[name] if name in overrides else dspy.settings.get(name)


def _unobserved(module: Any) -> bool:
    """Whether ``Module.__call__`` of ``module`` would do nothing but call ``forward``: no DSPy
    callbacks (global or the module's), no usage tracking, no call history (a run turns it
    off, every call being in ``lm_calls``; a module called outside a run may have it on), no
    decision-evidence recorder — the readers of the caller stack ``__call__`` pushes."""
    return bool(_setting("disable_history")) and not (
        _setting("callbacks") or module.callbacks or _setting("track_usage")
        or _setting("_decision_evidence") is not None)


def _direct_call(predict: Any, config: dict[str, Any]) -> tuple[Any, Any] | None:
    """The LM and adapter ``Predict.forward`` would call for ``predict``, when the rest of
    ``forward`` would change nothing: a plain ``dspy.Predict`` (not a subclass) with no DSPy
    trace to append to (a run keeps none unless a caller's context asks, as optimizers do), no
    stream, no decision fields or decision-typed outputs, and one generation. None otherwise
    (no LM configured included: ``forward`` then raises DSPy's own error)."""
    if type(predict) is not dspy.Predict or predict.fields or not _plain_outputs(
            predict.signature):
        return None
    if _setting("trace") is not None or _setting("send_stream") is not None:
        return None
    lm = predict.lm or _setting("lm")
    if not isinstance(lm, dspy.BaseLM):
        return None
    defaults = getattr(lm, "kwargs", None) or {}
    if (config.get("n") or defaults.get("n") or defaults.get("num_generations") or 1) != 1:
        return None  # forward raises the temperature of several low-temperature generations
    return lm, _setting("adapter") or dspy.ChatAdapter()


def _plain_outputs(signature: type[dspy.Signature]) -> bool:
    """Whether ``signature`` has no DSPy decision-typed output, for which ``forward`` wraps the
    adapter (``resolve_adapter``); asked once per signature class (a step's, or the one an
    optimizer gave it)."""
    plain = _PLAIN_OUTPUTS.get(signature)
    if plain is None:
        unwrapped = object()
        plain = resolve_adapter(None, unwrapped, signature, {}, signature) is unwrapped
        _PLAIN_OUTPUTS[signature] = plain
    return plain


_PLAIN_OUTPUTS: weakref.WeakKeyDictionary[type, bool] = weakref.WeakKeyDictionary()


def _attempt(attempt: int) -> Any:
    """``call_scope(attempt=…)`` unless the scope already has that attempt (the first one)."""
    return nullcontext() if current_scope().attempt == attempt else call_scope(attempt=attempt)


def _using(lm: dspy.LM, adapter: Any) -> Any:
    """``dspy.context(lm=…, adapter=…)`` unless the current ``dspy.context`` already set them.

    Read from DSPy's context overrides: ``dspy.settings.lm`` costs ~1 µs a read (a failed
    attribute lookup first). LM and adapter set by ``dspy.configure`` instead are set again."""
    overrides = thread_local_overrides.get()
    if overrides.get("lm") is lm and overrides.get("adapter") is adapter:
        return nullcontext()
    return dspy.context(lm=lm, adapter=adapter)


def _no_credentials(exc: BaseException, bound: BoundLM) -> Unrecoverable | None:
    """A missing or rejected API key: every call to this LM fails alike, so the run stops at the
    first instead of trying (and retrying) every row. LiteLLM reports a missing key as a server
    error, so its message is read too."""
    rejected = caused_by(exc, LMAuthError) or caused_by(exc, AuthError)
    if rejected is None and "Missing credentials" not in str(exc):
        return None
    first = (str(rejected or exc).strip().splitlines() or [""])[0]
    return Unrecoverable(f"no usable API key for '{bound.resolved.model_id}' (every call would "
                         f"fail alike; set the provider's key, e.g. OPENAI_API_KEY, or the LM's "
                         f"api_key_env): {first}")


def _context_overflow(exc: BaseException) -> bool:
    return isinstance(exc, ContextWindowExceededError) or isinstance(
        exc.__cause__, ContextWindowExceededError
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AdapterParseError):
        return f"unparseable LM answer: {str(exc).splitlines()[0]}"
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


def _backoff(exc: BaseException, attempt: int) -> float:
    hint = getattr(exc, "retry_after", None)
    if hint is None and exc.__cause__ is not None:
        hint = getattr(exc.__cause__, "retry_after", None)
    if hint is not None:
        return min(float(hint), MAX_BACKOFF_S)
    if is_retryable_lm_error(exc):
        return min(0.5 * 2**attempt, MAX_BACKOFF_S)
    return 0.0
