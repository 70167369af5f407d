"""A hung LM server cannot hang a run: every network request has a timeout (120 s by default)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.runtime.lm.resolve import DEFAULT_TIMEOUT_S, resolve_lm
from rlm_dsl.runtime.store.store import Store

SPEC = '''recipe hung "Ask a server that never answers."
input items: lines
map items -> n: int """Count: {{ chunk.text }}"""
output n
'''


def _silent_server() -> tuple[socket.socket, list[socket.socket]]:
    """A TCP server that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_network_models_get_the_default_timeout():
    resolved = resolve_lm("openai/some-model", {"api_key": "x"})
    assert resolved.engine._inner.client_options["timeout"] == DEFAULT_TIMEOUT_S == 120


@pytest.mark.filterwarnings("ignore::UserWarning")  # LiteLLM's pydantic models, on import
def test_rlm_run_timeout_turns_a_hung_request_into_a_failed_row(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "not-a-real-key")  # the server is ours and silent
    server, held = _silent_server()
    port = server.getsockname()[1]
    (tmp_path / "hung.rlm").write_text(SPEC)
    (tmp_path / "items.txt").write_text("one\n")
    started = time.monotonic()
    try:
        code = main(["run", str(tmp_path / "hung.rlm"), "-i", f"items={tmp_path / 'items.txt'}",
                     "--lm", "openai/some-model", "--api-base", f"http://127.0.0.1:{port}/v1",
                     "--timeout", "1", "-q", "--db", str(tmp_path / "run.duckdb")])
    finally:
        server.close()
        for conn in held:
            conn.close()
    assert time.monotonic() - started < 60  # three 1 s attempts, not LiteLLM's 6,000 s
    err = capsys.readouterr().err
    assert code == 4 and "failures: 1" in err, err  # a failed row: the outputs miss it
    assert "run incomplete: 1 row(s) failed after their retries" in err
    with Store.open(str(tmp_path / "run.duckdb")) as store:
        (error,) = store.con.execute("SELECT error FROM failures").fetchone()
    assert "timed out" in error.lower() or "timeout" in error.lower()
