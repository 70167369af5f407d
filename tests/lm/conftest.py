"""Fixtures for the LM back-end tests: a loopback OpenAI-compatible server and a fake engine."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dspy.lm15 import Message, Response, TextPart, Usage


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
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
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


class RecordedEngine:
    """An engine that answers every request with the next recorded text (DSPy 3.4 interface)."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.requests: list = []

    def complete(self, request):
        self.requests.append(request)
        text = self.texts.pop(0)
        return Response(id=None, model=request.model, message=Message.assistant([TextPart(text)]),
                        finish_reason="stop", usage=Usage(input_tokens=5, output_tokens=3,
                                                          total_tokens=8))


@pytest.fixture
def recorded() -> type[RecordedEngine]:
    return RecordedEngine
