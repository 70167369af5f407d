"""The embedded local model (runtime stage: LM back ends): llama.cpp in-process as a DSPy engine.

``local`` is the pinned GGUF from the model store, ``local:/path/model.gguf`` any other file.
:class:`LlamaEngine` implements DSPy 3.4's engine interface (``complete(Request) -> Response``) over
``llama_cpp.Llama.create_chat_completion``, so the chat template is the one in the GGUF and token
usage comes back in the response. A llama.cpp context is not thread-safe: each loaded model has one
lock and calls are serialised (``max_concurrency`` is 1 so the gate does not queue threads for
nothing). A step's output schema (``response_format``) constrains decoding through a grammar
(:func:`constrained`). Models are loaded once per process per (path, n_ctx, n_threads). Prefix
reuse: llama-cpp-python evaluates only the tokens after the longest prefix a prompt shares with the
previous call, so consecutive calls of one step skip their common system message and instructions;
:class:`PrefixStates` keeps that working when steps take turns on one model (branches that overlap,
an ``rlm`` step's sub-calls) by swapping in each step's own KV cache."""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dspy.clients.engines.base import validate_request
from dspy.lm15 import ContextLengthError, Message, Request, Response, TextPart, Usage

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm.chat_grammar import grammar_for
from rlm_dsl.runtime.lm.gate import current_scope
from rlm_dsl.runtime.lm.models import ensure_local_model
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend

DEFAULT_N_CTX = 8192
DEFAULT_MAX_TOKENS = 1024
LOCAL_OPTIONS = frozenset(
    {"n_ctx", "context_window", "n_threads", "temperature", "max_tokens", "seed", "pull"}
)
_FINISH = {"stop": "stop", "length": "length"}
_LOADED: dict[tuple[str, int, int | None], tuple[Any, threading.Lock]] = {}
_PREFIXES: dict[int, PrefixStates] = {}  # id(llama) → its saved states
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free every loaded model before interpreter teardown (llama.cpp's own ``__del__`` runs too
    late then and prints a traceback)."""
    with _LOAD_LOCK:
        for llama, _lock in _LOADED.values():
            llama.close()
        _LOADED.clear()
        _PREFIXES.clear()


def load_llama(path: Path, n_ctx: int, n_threads: int | None = None) -> tuple[Any, threading.Lock]:
    """The process-wide ``Llama`` for ``path`` and its call lock, loading it on first use."""
    key = (str(path), n_ctx, n_threads)
    with _LOAD_LOCK:
        if key not in _LOADED:
            _LOADED[key] = (_load(path, n_ctx, n_threads), threading.Lock())
        return _LOADED[key]


def _load(path: Path, n_ctx: int, n_threads: int | None) -> Any:
    try:
        from llama_cpp import Llama  # here: an optional extra, slow to import
    except ImportError as exc:
        raise LMError(
            "the local model needs llama-cpp-python: pip install 'rlm-dsl[local]'"
        ) from exc
    try:
        return Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, verbose=False)
    except (ValueError, RuntimeError) as exc:
        reason = str(exc).replace(f": {path}", "")
        raise LMError(
            f"cannot load GGUF model {path}: {reason} (is it a complete, uncorrupted .gguf file?)"
        ) from exc


class LlamaEngine:
    """``complete(Request) -> Response`` over one llama.cpp model, one call at a time."""

    supports_function_calling = False
    supports_reasoning = False
    supports_response_schema = False

    def __init__(self, llama: Any, lock: threading.Lock, *, temperature: float = 0.0,
                 max_tokens: int = DEFAULT_MAX_TOKENS, seed: int | None = None,
                 prefixes: PrefixStates | None = None) -> None:
        self.llama = llama
        self.lock = lock
        self.defaults = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}
        self.prefixes = prefixes

    def complete(self, request: Request) -> Response:
        validate_request(request)
        arguments = self._arguments(request)
        with self.lock:
            if self.prefixes is not None:
                self.prefixes.switch_to(prefix_key())
            try:
                raw = self.llama.create_chat_completion(**arguments)
            except ValueError as exc:  # llama-cpp-python's "Requested tokens … exceed context"
                if "context window" not in str(exc):
                    raise
                raise ContextLengthError(str(exc)) from exc
        return _response(raw, request.model)

    def _arguments(self, request: Request) -> dict[str, Any]:
        config = request.config
        arguments: dict[str, Any] = {"messages": chat_messages(request), "stop": list(config.stop)}
        for name in ("temperature", "max_tokens", "seed"):
            value = getattr(config, name)
            arguments[name] = self.defaults[name] if value is None else value
        for name in ("top_p", "top_k", "presence_penalty", "frequency_penalty"):
            if getattr(config, name) is not None:
                arguments[name] = getattr(config, name)
        if config.response_format:
            arguments.update(constrained(config.response_format))
        return arguments

    def close(self) -> None:
        """Models are shared per process (see :func:`load_llama`); nothing to release here."""


def constrained(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """llama.cpp arguments for a ``response_format``: a step's JSON schema becomes a grammar of
    the chat answer format (:mod:`rlm_dsl.runtime.lm.chat_grammar`); others pass as they are."""
    if response_format.get("type") == "json_schema":  # lm15's shape, or OpenAI's
        schema = response_format.get("schema") or response_format["json_schema"]["schema"]
        return {"grammar": grammar_for(json.dumps(schema))}  # field order matters
    return {"response_format": dict(response_format)}


class PrefixStates:
    """Each step's KV cache, so steps that take turns on one model keep their own prompt prefix.

    llama-cpp-python already skips the prefix a prompt shares with the tokens in the KV cache (its
    ``generate`` trims the cache at the first difference), but there is one cache: when two steps
    alternate, each call finds the other step's prompt there and evaluates its whole system
    message and instructions again. Before a call, :meth:`switch_to` saves the cache of the step
    that used the model last (sequence 0 only — llama.cpp's ``llama_state_seq_*``, a few MB per
    thousand tokens, not ``Llama.save_state``, which also copies up to 300 MB of logits) and loads
    the calling step's own, if kept. At most ``max_states`` caches of ``max_bytes`` in all are
    kept, least recently used dropped first. Call under the model's lock.
    """

    def __init__(self, llama: Any, max_states: int = 8, max_bytes: int = 256 << 20) -> None:
        self.llama = llama
        self.max_states = max_states
        self.max_bytes = max_bytes
        self.current: Any = None
        self.saved: OrderedDict[Any, tuple[Any, Any]] = OrderedDict()  # key → (tokens, KV bytes)
        self.swaps = 0

    def switch_to(self, key: Any) -> None:
        if key == self.current:
            return
        if self.current is not None and self.llama.n_tokens > 0:
            self._save(self.current)
        state = self.saved.get(key)
        if state is not None:
            self._load(*state)
            self.saved.move_to_end(key)
            self.swaps += 1
        self.current = key

    def _save(self, key: Any) -> None:
        import llama_cpp  # the optional `local` extra; loaded already when a model is

        llama = self.llama
        size = llama_cpp.llama_state_seq_get_size(llama._ctx.ctx, 0)
        data = (ctypes.c_uint8 * size)()
        written = llama_cpp.llama_state_seq_get_data(llama._ctx.ctx, data, size, 0)
        if written != size:  # a model that cannot save its sequence: keep nothing for it
            return
        self.saved[key] = (llama.input_ids[: llama.n_tokens].copy(), data)
        self.saved.move_to_end(key)
        while len(self.saved) > self.max_states or (
                sum(len(d) for _, d in self.saved.values()) > self.max_bytes):
            self.saved.popitem(last=False)

    def _load(self, tokens: Any, data: Any) -> None:
        import llama_cpp  # the optional `local` extra; loaded already when a model is

        llama = self.llama
        llama._ctx.kv_cache_seq_rm(0, -1, -1)
        if llama_cpp.llama_state_seq_set_data(llama._ctx.ctx, data, len(data), 0) != len(data):
            llama.reset()  # nothing usable restored: the next call evaluates its whole prompt
            return
        llama.input_ids[: len(tokens)] = tokens
        llama.n_tokens = len(tokens)
        llama._requires_eval = True  # the logits are not restored; generate re-evaluates one token


def prefix_key() -> tuple[str | None, int]:
    """Calls of one step at one depth share their prompt's prefix (system message, instructions)."""
    scope = current_scope()
    return scope.step, scope.depth


def prefix_states(llama: Any) -> PrefixStates:
    """The process-wide :class:`PrefixStates` of a loaded model (engines over it share them)."""
    with _LOAD_LOCK:
        return _PREFIXES.setdefault(id(llama), PrefixStates(llama))


def chat_messages(request: Request) -> list[dict[str, str]]:
    """OpenAI-style messages (what llama.cpp's chat template takes) from a DSPy request."""
    messages = []
    if request.system is not None:
        system = request.system
        text = system if isinstance(system, str) else "".join(p.text for p in system)
        messages.append({"role": "system", "content": text})
    messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
    return messages


def _response(raw: Mapping[str, Any], model: str) -> Response:
    choice = raw["choices"][0]
    usage = raw.get("usage") or {}
    return Response(
        id=raw.get("id"),
        model=model,
        message=Message.assistant([TextPart(choice["message"].get("content") or "")]),
        finish_reason=_FINISH.get(choice.get("finish_reason") or "stop", "stop"),
        usage=Usage(input_tokens=usage.get("prompt_tokens"),
                    output_tokens=usage.get("completion_tokens"),
                    total_tokens=usage.get("total_tokens")),
    )


def resolve_local(model_id: str, options: dict[str, Any]) -> ResolvedLM:
    """The ``local`` / ``local:<path.gguf>`` back end for :func:`resolve_lm`."""
    unknown = sorted(set(options) - LOCAL_OPTIONS)
    if unknown:
        raise LMError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for model '{model_id}'; "
            f"known: {', '.join(sorted(LOCAL_OPTIONS))}"
        )
    path = _model_file(model_id, bool(options.get("pull")))
    n_ctx = int(options.get("n_ctx") or options.get("context_window") or default_n_ctx())
    llama, lock = load_llama(path, n_ctx, options.get("n_threads"))
    engine = LlamaEngine(
        llama, lock,
        temperature=float(options.get("temperature", 0.0)),
        max_tokens=int(options.get("max_tokens", DEFAULT_MAX_TOKENS)),
        seed=options.get("seed"),
        prefixes=prefix_states(llama),
    )
    return ResolvedLM(
        model_id=model_id,
        engine=engine,
        context_window=llama.n_ctx(),
        price=(0.0, 0.0),
        max_concurrency=1,
        tokenizer=lambda text: llama.tokenize(text.encode(), add_bos=False, special=False),
        lm_kwargs={"num_retries": 0},
        structured=True,
    )


def default_n_ctx() -> int:
    """The local window: ``$RLM_N_CTX`` when set, else 8,192 tokens (DESIGN §5)."""
    value = os.environ.get("RLM_N_CTX", "").strip()
    if not value:
        return DEFAULT_N_CTX
    if not value.isdigit() or int(value) < 256:
        raise LMError(f"RLM_N_CTX must be a whole number of tokens ≥ 256, got {value!r}")
    return int(value)


def _model_file(model_id: str, pull: bool) -> Path:
    if model_id == "local":
        return ensure_local_model(pull=pull)
    path = Path(model_id.removeprefix("local:")).expanduser()
    if not path.is_file():
        raise LMError(f"model file not found: {path} (from model id '{model_id}')")
    return path


register_backend("local", resolve_local)
