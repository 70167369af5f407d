"""Fixtures for the runtime tests: write a spec, run it in-process or through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest

from rlm_dsl.cli.main import main
from rlm_dsl.compile import compile_file
from rlm_dsl.runtime.executor import RunOptions, RunResult, execute


@pytest.fixture
def spec(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write spec text (dedented) to ``tmp_path/<name>`` and return its path."""

    def write(text: str, name: str = "recipe.rlm") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    return write


@pytest.fixture
def run_spec() -> Callable[..., RunResult]:
    """Compile and execute a spec in-process with the test LM (``lm=`` overrides)."""

    def run(path: Path, lm: str = "test", **options: Any) -> RunResult:
        return execute(compile_file(path), RunOptions(lm=lm, **options))

    return run


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``rlm <args>`` in-process; returns (exit code, stdout, stderr)."""

    def invoke(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


@pytest.fixture
def rlm_process() -> Callable[..., subprocess.Popen[str]]:
    return rlm_subprocess


def rlm_subprocess(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``rlm <args>`` as a separate process (stdout/stderr piped)."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen(
        [sys.executable, "-c", "from rlm_dsl.cli.main import main; main()", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kwargs,
    )


@pytest.fixture
def query() -> Callable[[Path, str], list[tuple[Any, ...]]]:
    """``query(db, sql)``: the rows of ``sql`` over a finished run's database file."""

    def run(db: Path, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute(sql).fetchall()

    return run


class Loopback(ThreadingHTTPServer):
    """An OpenAI-compatible chat server on 127.0.0.1 (the pattern of tests/lm/conftest.py): it
    answers ``reply(messages)`` and keeps every request body and Authorization header."""

    reply: Callable[[list[dict]], str]
    requests: list[dict]
    keys: list[str | None]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Chat(BaseHTTPRequestHandler):
    server: Loopback

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        self.server.keys.append(self.headers.get("Authorization"))
        payload = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": self.server.reply(body["messages"])}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def loopback() -> Iterator[Callable[[Callable[[list[dict]], str]], Loopback]]:
    """``loopback(reply)`` starts a :class:`Loopback`; all are shut down when the test ends."""
    started: list[tuple[Loopback, threading.Thread]] = []

    def start(reply: Callable[[list[dict]], str]) -> Loopback:
        server = Loopback(("127.0.0.1", 0), _Chat)
        server.reply, server.requests, server.keys = reply, [], []
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread))
        return server

    yield start
    for server, thread in started:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
