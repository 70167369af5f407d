"""Fixtures for the LM back-end tests: a fake engine (the loopback server: tests/conftest.py)."""

from __future__ import annotations

import pytest
from dspy.lm15 import Message, Response, TextPart, Usage


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
