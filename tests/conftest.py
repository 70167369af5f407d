"""Shared pytest configuration: ``--update-golden``, the ``golden`` fixture, local-model skips.

The ``loopback`` fixture starts OpenAI-compatible chat servers on 127.0.0.1 for LM tests;
``serve`` starts one whose replies (status, body, headers, delay) a script decides per request.
``find_spec`` and ``vote_spec`` are small spec texts whose answers carry evidence rows.
Tests marked ``local_model`` need llama-cpp-python and the pulled model; without them they are
skipped here, in one place, with the reason and the command that fixes it.

Golden files (plan dumps, rendered diagnostics) live under ``tests/golden/``. A test compares its
output with the file; a missing golden fails with a message, and ``pytest --update-golden``
rewrites the files from the current output instead of comparing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rlm_dsl.runtime.repl.isolation import isolation
from rlm_dsl.runtime.store.store import Store

GOLDEN_DIR = Path(__file__).parent / "golden"

FIND = '''
recipe find "Find one item."
input doc: text
chunk doc -> parts by lines(10)
map parts -> hit: str? with grounded=[hit] """
  FIND "item 17 "
  {{ chunk.text }}
"""
reduce hit -> answer: str by concat """
  {{ items | tojson }}
"""
output answer
'''

VOTE = '''
recipe v "Vote."
input doc: text
chunk doc -> parts by lines(4)
map parts -> label: bad | ok """
  {{ chunk.text }}
"""
reduce label -> winner by vote
output winner
'''


def pytest_configure(config: pytest.Config) -> None:
    """Where bubblewrap or libseccomp is missing, `rlm` steps still run in the functional tests
    (the weak sandbox is allowed machine-wide, and said so); the escape suite skips itself."""
    if not isolation().strong:
        os.environ["RLM_ALLOW_WEAK_SANDBOX"] = "1"


@pytest.fixture(scope="session", autouse=True)
def empty_user_config(tmp_path_factory: pytest.TempPathFactory) -> None:
    """An empty user config folder for the session: a planner tuned on this machine
    (``rlm optimize --planner``) never changes what the ``rlm ask`` tests plan."""
    os.environ["XDG_CONFIG_HOME"] = str(tmp_path_factory.mktemp("config"))


def pytest_report_header(config: pytest.Config) -> str:
    wrap = isolation()
    return f"REPL sandbox: {'bwrap + seccomp' if wrap.strong else wrap.warnings[0]}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite tests/golden/ files from the current output instead of comparing",
    )


def _local_model_missing() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'rlm-dsl[local]')"
    from rlm_dsl.runtime.lm.models import model_status

    if model_status() not in ("verified", "unverified"):
        return "the local model is not downloaded (rlm models pull)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = [item for item in items if item.get_closest_marker("local_model")]
    reason = _local_model_missing() if marked else None
    for item in marked if reason else ():
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[Path, str], None]:
    """``golden(path, actual)``: compare ``actual`` with the golden file (or rewrite it)."""
    update = request.config.getoption("--update-golden")

    def check(path: Path, actual: str) -> None:
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"missing golden file {path}; run pytest --update-golden to create it")
        assert actual == path.read_text(encoding="utf-8")

    return check


@dataclass
class LoopbackServer:
    """An OpenAI-compatible chat server on 127.0.0.1 whose reply is ``reply(messages)``."""

    reply: Callable[[list[dict]], str]
    requests: list[dict] = field(default_factory=list)
    headers: list = field(default_factory=list)
    url: str = ""


def _handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.requests.append(body)
            server.headers.append(self.headers)  # case-insensitive lookups
            text = server.reply(body["messages"])
            payload = json.dumps({
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

    return Handler


@pytest.fixture
def loopback() -> Iterator[Callable[[Callable[[list[dict]], str]], LoopbackServer]]:
    """Start loopback servers for a test; each is shut down (bounded) when the test ends."""
    started: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(reply: Callable[[list[dict]], str]) -> LoopbackServer:
        state = LoopbackServer(reply)
        httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        started.append((httpd, thread))
        state.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        return state

    yield start
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def store() -> Iterator[Store]:
    """An empty in-memory store (folders with their own ``store`` fixture override it)."""
    with Store.open(None) as opened:
        yield opened


class _QuietServer(ThreadingHTTPServer):
    """A loopback server that does not print a client's hang-up: a timed-out request's handler
    writes after the client has left, and the traceback would land in a later test's stderr."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


# One scripted reply: (status, JSON body, extra headers, seconds to wait first).
Reply = tuple[int, dict, dict, float]


class ScriptedServer:
    """A loopback Chat Completions server: ``script(body, n)`` decides reply ``n`` (from 0)."""

    def __init__(self, script: Callable[[dict, int], Reply]) -> None:
        self.script = script
        self.bodies: list[dict] = []
        self.headers: list = []
        self.active = self.peak = 0
        self.lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    number = len(server.bodies)
                    server.bodies.append(body)
                    server.headers.append(self.headers)
                    server.active += 1
                    server.peak = max(server.peak, server.active)
                status, payload, headers, wait = server.script(body, number)
                time.sleep(wait)
                with server.lock:
                    server.active -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def ok(text: str, wait: float = 0.0) -> Reply:
    return 200, {
        "id": "chatcmpl-7", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }, {}, wait


def failure(status: int, code: str | None = None, headers: dict | None = None) -> Reply:
    return status, {"error": {"message": f"scripted {status}", "type": "error", "code": code}}, (
        headers or {}), 0.0


def answering(body: dict, number: int) -> Reply:
    """The deterministic test LM's answer to the prompt, as a remote model would give it."""
    from rlm_dsl.runtime.lm.testing import answer

    messages = body["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    return ok(answer(system, messages[-1]["content"]))


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[dict, int], Reply]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Callable[[dict, int], Reply]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def find_spec() -> str:
    """Spec text: a grounded map over 10-line chunks of ``doc``, concat-reduced; over 40 lines
    ``item <n> …`` its answer is ``["item 17 ok"]``, citing line 18 (chunk 1, lines 11-20)."""
    return FIND


@pytest.fixture
def vote_spec() -> str:
    """Spec text: a bad|ok label per 4-line chunk of ``doc``, reduced by vote."""
    return VOTE
