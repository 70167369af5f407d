"""Token counting for chunking and context-window checks (runtime stage, no network ever).

:func:`get_counter` picks, in order: the bound model's own tokenizer (a callable the LM layer
passes, returning a count or a token sequence); tiktoken's ``cl100k_base`` encoding, but only
when its BPE file is already on disk (tiktoken's cache folders, or the copy LiteLLM ships), since
tiktoken would otherwise download it; else a documented estimate of ``ceil(chars / 4)``, flagged
``estimated`` with a ``note`` the CLI prints. The estimate also has an exact SQL form
(:meth:`TokenCounter.sql`) so chunkers can count tokens for millions of rows inside DuckDB.

API::

    counter = get_counter("local", hf_tokenizer=None)
    counter.count("some text") -> int; counter.name; counter.estimated; counter.note
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import tempfile
import threading
from collections.abc import Callable, Sized
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CHARS_PER_TOKEN = 4
ESTIMATE_NOTE = (
    "token counts are estimated as ceil(characters / 4): the model has no tokenizer here and "
    "tiktoken's cl100k_base file is not cached on this machine"
)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class TokenCounter:
    """Counts tokens of one text; ``estimated`` when it is the chars/4 estimate."""

    name: str
    count_fn: Callable[[str], int]
    estimated: bool = False
    note: str | None = None

    def count(self, text: str) -> int:
        return int(self.count_fn(text))

    def sql(self, column: str) -> str | None:
        """A DuckDB expression computing exactly :meth:`count` of ``column``, if one exists."""
        return self.sql_of_length(f"length({column})")

    def sql_of_length(self, chars: str) -> str | None:
        """:meth:`sql` for a text of ``chars`` characters (a SQL column or call), when the count
        needs no more."""
        if self.estimated:
            return f"CAST(ceil({chars} / {CHARS_PER_TOKEN}.0) AS BIGINT)"
        return None


def estimate_tokens(text: str) -> int:
    """The documented fallback: one token per four characters, rounded up."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def get_counter(
    model_id: str | None, hf_tokenizer: Callable[[str], Any] | None = None
) -> TokenCounter:
    """The best offline token counter for ``model_id`` (see the module docstring)."""
    if hf_tokenizer is not None:
        return TokenCounter(f"{model_id or 'model'} tokenizer", _from_tokenizer(hf_tokenizer))
    encoding = cl100k_encoding()
    if encoding is not None:
        return TokenCounter(
            "tiktoken cl100k_base", lambda text: len(encoding.encode_ordinary(text))
        )
    return TokenCounter("estimate (chars/4)", estimate_tokens, estimated=True, note=ESTIMATE_NOTE)


def _from_tokenizer(tokenizer: Callable[[str], Any]) -> Callable[[str], int]:
    def count(text: str) -> int:
        result = tokenizer(text)
        return len(result) if isinstance(result, Sized) else int(result)

    return count


def cl100k_encoding() -> Any | None:
    """tiktoken's cl100k_base built from a local copy of its BPE file, or None (no download)."""
    with _LOCK:
        return _cl100k_encoding()


@lru_cache(maxsize=1)
def _cl100k_encoding() -> Any | None:
    path = cached_bpe_file()
    if path is None:
        return None
    try:
        import tiktoken  # here, not at the top: only tiktoken-counted models pay its start-up
        from tiktoken.load import load_tiktoken_bpe
        from tiktoken_ext.openai_public import cl100k_base

        ranks = load_tiktoken_bpe(str(path), expected_hash=CL100K_SHA256)
    except Exception:  # a damaged or foreign file: fall back to the estimate, never crash
        return None
    spec = _cl100k_spec_without_ranks(cl100k_base)
    return tiktoken.Encoding(
        name="cl100k_base",
        pat_str=spec["pat_str"],
        mergeable_ranks=ranks,
        special_tokens=spec["special_tokens"],
    )


def _cl100k_spec_without_ranks(factory: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """cl100k's regex and special tokens without letting tiktoken fetch its ranks."""
    import tiktoken_ext.openai_public as public  # here: saves start-up for other counters

    original = public.load_tiktoken_bpe
    public.load_tiktoken_bpe = lambda *args, **kwargs: {}
    try:
        return factory()
    finally:
        public.load_tiktoken_bpe = original


def cached_bpe_file() -> Path | None:
    """Where cl100k_base's BPE file already is on disk, if anywhere."""
    key = hashlib.sha1(CL100K_URL.encode()).hexdigest()
    for folder in _cache_folders():
        candidate = Path(folder) / key
        if candidate.is_file():
            return candidate
    return None


def _cache_folders() -> list[str]:
    folders = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("DATA_GYM_CACHE_DIR")]
    folders.append(os.path.join(tempfile.gettempdir(), "data-gym-cache"))
    spec = importlib.util.find_spec("litellm")  # LiteLLM ships the file; do not import it
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            folders.append(os.path.join(root, "litellm_core_utils", "tokenizers"))
    return [folder for folder in folders if folder]
