"""REPL sandbox, host side of the protocol pipes: JSON lines with a deadline on every byte.

The host must never block on a worker, whatever the worker does: stop reading its stdin, flood
its stdout, write a line without end, or die. :class:`WorkerPipes` makes both pipe ends
non-blocking and waits on them with ``poll`` until a deadline, so a send or a receive returns,
times out (:class:`PipeTimeout`) or finds the worker gone (:class:`WorkerGone`) in bounded time;
a message over :data:`MAX_MESSAGE_BYTES` or one that is not a JSON object is a
:class:`ProtocolBroken`. Nothing is read ahead beyond one buffer, so a flooding worker costs the
host at most one message's memory.
"""

from __future__ import annotations

import json
import os
import select
import time
from typing import IO, Any

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
READ_BYTES = 1 << 16


class WorkerGone(Exception):
    """The worker closed its end of a pipe (it exited or was killed)."""


class PipeTimeout(Exception):
    """The deadline passed before the message was sent or received whole."""


class ProtocolBroken(Exception):
    """The worker sent something that is not a protocol message."""


class WorkerPipes:
    """The host's ends of one worker's stdin and stdout."""

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes]) -> None:
        self._in, self._out = stdin.fileno(), stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._buffer = bytearray()

    def send(self, message: dict[str, Any], deadline: float) -> None:
        data = memoryview(json.dumps(message).encode() + b"\n")
        while data:
            _wait(self._in, "w", deadline)
            try:
                written = os.write(self._in, data)
            except BlockingIOError:
                continue
            except (BrokenPipeError, ConnectionResetError) as exc:
                raise WorkerGone from exc
            data = data[written:]

    def receive(self, deadline: float) -> dict[str, Any]:
        while (end := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise ProtocolBroken(f"a message longer than {MAX_MESSAGE_BYTES:,} bytes")
            _wait(self._out, "r", deadline)
            try:
                chunk = os.read(self._out, READ_BYTES)
            except BlockingIOError:
                continue
            if not chunk:
                raise WorkerGone
            self._buffer += chunk
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise ProtocolBroken(str(exc)) from None
        if not isinstance(message, dict):
            raise ProtocolBroken(f"{message!r:.200}")
        return message


def _wait(fd: int, mode: str, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise PipeTimeout
    poll = select.poll()
    poll.register(fd, select.POLLIN if mode == "r" else select.POLLOUT)
    if not poll.poll(left * 1000):  # a closed end reports POLLHUP/POLLERR: the read/write says
        raise PipeTimeout
