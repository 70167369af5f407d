"""LM resolution (runtime stage: LM back ends): a model id plus options → a :class:`ResolvedLM`.

A model id is either claimed by a registered back end (``local``, ``local:<file.gguf>``, the
executor's ``test``) or handed to LiteLLM (``openai/gpt-4o-mini``, ``anthropic/…``,
``ollama/…``, ``openai/<name>`` with ``api_base`` for any OpenAI-compatible server; those
and LiteLLM's other plain Chat Completions providers get the pooled async engine of
:mod:`~rlm_dsl.runtime.lm.openai_async` unless ``engine="litellm"``). Everything is checked
here, before any call: the provider must be one LiteLLM knows, options must be known,
``api_key_env`` must be set, and an ``api_base`` must accept a TCP connection. The result carries
what the runtime needs to plan calls (context window, token counter, price, concurrency) and
builds the ``dspy.LM`` that the executor's gated engine wraps.
"""

from __future__ import annotations

import importlib
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import dspy

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm.openai_async import ENGINES, OpenAICompatEngine, compatible_base
from rlm_dsl.runtime.lm.tokens import TokenCounter, get_counter

# LiteLLM fetches its price table from GitHub when imported unless told not to; the run must
# never touch the network by itself (DESIGN §3), and the bundled table is what we price with.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEFAULT_CONTEXT_WINDOW = 8192
"""Window assumed for a LiteLLM model whose window neither LiteLLM nor the options know."""

LITELLM_OPTIONS = frozenset(
    {"api_base", "api_key", "api_key_env", "temperature", "max_tokens", "n_ctx",
     "context_window", "timeout", "num_retries", "max_concurrency", "engine"}
)
_LM_SETTINGS = ("temperature", "max_tokens", "num_retries")
_PROBE_TIMEOUT_S = 3.0

DEFAULT_TIMEOUT_S = 120.0  # per LM request; LiteLLM's own default waits 6,000 s

@dataclass(frozen=True)
class ResolvedLM:
    """A model ready to call: its engine plus what the runtime needs to plan and gate calls."""

    model_id: str
    engine: Any
    context_window: int
    price: tuple[float, float] | None = None
    max_concurrency: int | None = None
    tokenizer: Callable[[str], Any] | None = None
    lm_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # the engine can constrain an answer to a JSON schema (runtime/lm/structured.py)
    structured: bool = False

    @cached_property
    def token_counter(self) -> TokenCounter:
        """The model's own tokenizer when it has one, else the runtime's offline counter."""
        return get_counter(self.model_id, hf_tokenizer=self.tokenizer)

    def count_tokens(self, text: str) -> int:
        return self.token_counter.count(text)

    def make_lm(self, engine: Any = None, **kwargs: Any) -> dspy.LM:
        """A ``dspy.LM`` over ``engine`` (default: the inner engine) with DSPy's cache off."""
        settings = {**self.lm_kwargs, **kwargs}
        return dspy.LM(self.model_id, engine=engine or self.engine, cache=False, **settings)


BackendFactory = Callable[[str, dict[str, Any]], ResolvedLM]
_BACKENDS: dict[str, BackendFactory] = {}
_LOCK = threading.Lock()


def register_backend(prefix: str, factory: BackendFactory) -> None:
    """Claim model ids ``prefix`` and ``prefix:<anything>`` for ``factory(model_id, options)``."""
    with _LOCK:
        _BACKENDS[prefix] = factory


# Built-in back ends whose module registers itself on import, loaded on first use: the
# deterministic test LM and the replay of a recorded run are not imported by runs that never
# name them.
_ON_DEMAND = {"test": "rlm_dsl.runtime.lm.testing", "replay": "rlm_dsl.runtime.lm.replay"}


def takes_timeout(model_id: str) -> bool:
    """Whether ``model_id`` is served over the network (LiteLLM), where ``timeout`` applies."""
    return _backend_for(model_id.strip()) is None


def _backend_for(model_id: str) -> BackendFactory | None:
    prefix = model_id.split(":", 1)[0]
    if prefix in _ON_DEMAND and prefix not in _BACKENDS:
        importlib.import_module(_ON_DEMAND[prefix])  # outside _LOCK: it calls register_backend
    with _LOCK:
        return _BACKENDS.get(prefix)


def default_model_id(environ: Mapping[str, str] | None = None) -> str:
    """The model used when nothing else is configured: ``$RLM_LM``, else ``local``."""
    env = os.environ if environ is None else environ
    return env.get("RLM_LM", "").strip() or "local"


def resolve_lm(model_id: str, options: Mapping[str, Any] | None = None) -> ResolvedLM:
    """Resolve ``model_id`` and its options to a :class:`ResolvedLM`; bad ones raise LMError."""
    model_id = model_id.strip()
    if not model_id:
        raise LMError("empty model id: use a LiteLLM id such as 'openai/gpt-4o-mini', or 'local'")
    opts = dict(options or {})
    factory = _backend_for(model_id)
    if factory is not None:
        return factory(model_id, opts)
    return _resolve_litellm(model_id, opts)


def _resolve_litellm(model_id: str, options: dict[str, Any]) -> ResolvedLM:
    unknown = sorted(set(options) - LITELLM_OPTIONS)
    if unknown:
        raise LMError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model '{model_id}'; "
            f"known: {', '.join(sorted(LITELLM_OPTIONS))}"
        )
    from dspy.clients._litellm import get_litellm  # here: LiteLLM takes seconds to import

    litellm = get_litellm(feature="rlm-dsl model resolution")
    api_base = options.get("api_base")
    route = _check_provider(litellm, model_id, api_base)
    if api_base:
        probe_api_base(str(api_base), model_id)
    info = _model_info(litellm, model_id)
    client = {"api_base": api_base, "api_key": _api_key(model_id, options),
              "timeout": float(options.get("timeout", DEFAULT_TIMEOUT_S))}
    engine = _engine(model_id, options, route, client)
    lm_kwargs = {k: options[k] for k in _LM_SETTINGS if k in options}
    return ResolvedLM(
        model_id=model_id,
        engine=engine,
        context_window=_context_window(options, info),
        price=_price(info),
        max_concurrency=options.get("max_concurrency"),
        lm_kwargs=lm_kwargs,
        structured=_json_schema_output(litellm, model_id),
    )


def _json_schema_output(litellm: Any, model_id: str) -> bool:
    """Whether LiteLLM knows the model to honour ``response_format`` with a JSON schema."""
    try:
        return bool(litellm.supports_response_schema(model=model_id))
    except Exception:  # an id LiteLLM's table does not know: send no schema
        return False


def _check_provider(litellm: Any, model_id: str, api_base: Any) -> tuple[Any, ...]:
    """LiteLLM's route for the model: (wire model, provider, key from the env, base URL)."""
    try:
        return tuple(litellm.get_llm_provider(model_id, api_base=api_base))
    except Exception as exc:  # LiteLLM raises its BadRequestError with a banner; say it plainly
        raise LMError(
            f"unknown model '{model_id}': LiteLLM knows no provider for it. "
            "Use a provider-prefixed LiteLLM id "
            "(openai/gpt-4o-mini, anthropic/<model>, ollama/<model>; "
            "openai/<name> with api_base for an OpenAI-compatible server), "
            "'local', or 'local:/path/model.gguf'"
        ) from exc


def _engine(model_id: str, options: Mapping[str, Any], route: tuple[Any, ...],
            client: dict[str, Any]) -> Any:
    """The async engine for an OpenAI-compatible server, else LiteLLM's (``engine`` option)."""
    choice = options.get("engine", "async")
    if choice not in ENGINES:
        raise LMError(f"model '{model_id}': engine must be one of {', '.join(ENGINES)}, "
                      f"got {choice!r}")
    wire_model, provider, env_key, base = route
    base = compatible_base(provider, client["api_base"], base)
    if choice == "async" and base:
        return OpenAICompatEngine(base_url=base, wire_model=wire_model,
                                  api_key=client["api_key"] or env_key,
                                  timeout=client["timeout"])
    return LiteLLMChatEngine(**{k: v for k, v in client.items() if v is not None})


def probe_api_base(url: str, model_id: str) -> None:
    """Raise :class:`LMError` naming ``url`` unless its host accepts a TCP connection."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise LMError(f"api_base '{url}' for model '{model_id}' is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=_PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise LMError(f"cannot reach api_base {url} for model '{model_id}': {reason}") from exc


def _api_key(model_id: str, options: Mapping[str, Any]) -> str | None:
    env_name = options.get("api_key_env")
    if not env_name:
        return options.get("api_key")
    value = os.environ.get(str(env_name))
    if not value:
        raise LMError(
            f"model '{model_id}': environment variable {env_name} (api_key_env) is not set"
        )
    return value


def _model_info(litellm: Any, model_id: str) -> Mapping[str, Any]:
    try:
        return litellm.get_model_info(model_id)
    except Exception:  # not in LiteLLM's table: a custom or self-hosted model
        return {}


def _context_window(options: Mapping[str, Any], info: Mapping[str, Any]) -> int:
    configured = options.get("n_ctx") or options.get("context_window")
    if configured:
        return int(configured)
    return int(info.get("max_input_tokens") or info.get("max_tokens") or DEFAULT_CONTEXT_WINDOW)


def _price(info: Mapping[str, Any]) -> tuple[float, float] | None:
    cost_in, cost_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
    if cost_in is None or cost_out is None:
        return None
    return float(cost_in), float(cost_out)


class LiteLLMChatEngine:
    """DSPy's LiteLLM engine behind ``complete(Request)``, naming the server when it is down.

    Composition rather than a subclass: DSPy routes engines that have ``complete_legacy`` around
    ``complete``, and every call here must take the one canonical path the gate sees.
    """

    def __init__(self, **client_options: Any) -> None:
        # here, not at the top: LiteLLM takes seconds to import and local/test LMs never need it
        from dspy.clients.engines.litellm_engine import LiteLLMEngine

        self._inner = LiteLLMEngine(model_type="chat", **client_options)
        self.api_base = client_options.get("api_base")

    def complete(self, request: dspy.lm15.Request) -> dspy.lm15.Response:
        try:
            return self._inner.complete(request)
        except dspy.lm15.TransportError as exc:
            if not self.api_base:
                raise
            raise dspy.lm15.TransportError(f"cannot reach {self.api_base}: {exc.message}") from exc

    def stream(self, request: dspy.lm15.Request) -> Any:
        return self._inner.stream(request)

    def close(self) -> None:
        self._inner.close()
