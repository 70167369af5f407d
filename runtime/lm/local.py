"""The embedded local model (runtime stage: LM back ends): llama.cpp in-process as a DSPy engine.

``local`` is the pinned GGUF from the model store, ``local:/path/model.gguf`` any other file.
:class:`LlamaEngine` implements DSPy 3.4's engine interface (``complete(Request) -> Response``)
over ``llama_cpp.Llama.create_chat_completion``, so the chat template is the one in the GGUF and
token usage comes back in the response. A llama.cpp context is not thread-safe: each loaded model
has one lock and calls are serialised (``max_concurrency`` is 1 so the gate does not queue threads
for nothing). Models are loaded once per process per (path, n_ctx, n_threads).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dspy.clients.engines.base import validate_request
from dspy.lm15 import ContextLengthError, Message, Request, Response, TextPart, Usage

from rlm_dsl.errors import LMError
from rlm_dsl.runtime.lm.models import ensure_local_model
from rlm_dsl.runtime.lm.resolve import ResolvedLM, register_backend

DEFAULT_N_CTX = 8192
DEFAULT_MAX_TOKENS = 1024
LOCAL_OPTIONS = frozenset(
    {"n_ctx", "context_window", "n_threads", "temperature", "max_tokens", "seed", "pull"}
)
_FINISH = {"stop": "stop", "length": "length"}
_LOADED: dict[tuple[str, int, int | None], tuple[Any, threading.Lock]] = {}
_LOAD_LOCK = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free every loaded model before interpreter teardown (llama.cpp's own ``__del__`` runs too
    late then and prints a traceback)."""
    with _LOAD_LOCK:
        for llama, _lock in _LOADED.values():
            llama.close()
        _LOADED.clear()


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
                 max_tokens: int = DEFAULT_MAX_TOKENS, seed: int | None = None) -> None:
        self.llama = llama
        self.lock = lock
        self.defaults = {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}

    def complete(self, request: Request) -> Response:
        validate_request(request)
        arguments = self._arguments(request)
        with self.lock:
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
            arguments["response_format"] = dict(config.response_format)
        return arguments

    def close(self) -> None:
        """Models are shared per process (see :func:`load_llama`); nothing to release here."""


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
    )
    return ResolvedLM(
        model_id=model_id,
        engine=engine,
        context_window=llama.n_ctx(),
        price=(0.0, 0.0),
        max_concurrency=1,
        tokenizer=lambda text: llama.tokenize(text.encode(), add_bos=False, special=False),
        lm_kwargs={"num_retries": 0},
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
