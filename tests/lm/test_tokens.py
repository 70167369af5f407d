"""Token counters: model tokenizer first, cached tiktoken second, the estimate last, offline."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from rlm_dsl.runtime.lm import tokens
from rlm_dsl.runtime.lm.tokens import ESTIMATE_NOTE, get_counter


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("token counting tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    tokens._cl100k_encoding.cache_clear()
    yield
    tokens._cl100k_encoding.cache_clear()


def test_the_model_tokenizer_wins(offline: None) -> None:
    as_list = get_counter("local", hf_tokenizer=lambda text: text.split())
    as_int = get_counter("local", hf_tokenizer=lambda text: 42)
    assert (as_list.count("a b c"), as_list.name, as_list.estimated) == (
        3,
        "local tokenizer",
        False,
    )
    assert as_int.count("anything") == 42


def test_cached_tiktoken_file_is_used_without_network(offline: None) -> None:
    if tokens.cached_bpe_file() is None:
        pytest.skip("no local copy of cl100k_base on this machine")
    counter = get_counter(None)
    assert counter.name == "tiktoken cl100k_base" and not counter.estimated
    assert counter.count("hello world") == 2
    assert counter.count("<|endoftext|>") > 1  # special tokens are plain text here
    assert counter.sql("text") is None


def test_without_any_tokenizer_the_estimate_says_so(
    offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tokens, "_cache_folders", lambda: [str(tmp_path)])
    counter = get_counter("gpt-x")
    assert (counter.name, counter.estimated, counter.note) == (
        "estimate (chars/4)",
        True,
        ESTIMATE_NOTE,
    )
    assert [counter.count(t) for t in ("", "abc", "abcd", "abcde")] == [0, 1, 1, 2]
    assert counter.sql("text") == "CAST(ceil(length(text) / 4.0) AS BIGINT)"


def test_a_damaged_cache_file_falls_back(
    offline: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "9b5ad71b2ce5302211f9c61530b329a4922fc6a4").write_text("garbage")
    monkeypatch.setattr(tokens, "_cache_folders", lambda: [str(tmp_path)])
    assert get_counter(None).estimated
