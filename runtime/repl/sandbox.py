"""REPL sandbox, host side: a DSPy ``CodeInterpreter`` whose code runs in a separate worker process.

:class:`SandboxInterpreter` starts ``worker.py`` (standard library only) as a long-lived child, so
the model's namespace persists across iterations. The worker gets its own network namespace
(``unshare -n``, else ``unshare -U -r -n``) where the machine allows it, a scrubbed environment, a
private scratch directory as its only writable place, kernel limits (address space, file size, no
new processes, CPU) and, when the host is root, the ``nobody`` uid; an audit hook refuses sockets,
subprocesses, native code, and writes or deletes outside scratch. Tool calls (``sql``,
``llm_query``, ``context`` access, ...) come back to the host as JSON-line RPCs and run here, where
the LM objects and the DuckDB store live. A wall-clock overrun or a crashed worker kills and
restarts it and raises ``CodeExecutionError`` (the model sees it and goes on); a broken protocol
or too many restarts raises ``CodeInterpreterError`` (the step ends). Whatever isolation could not
be had is listed in :attr:`SandboxInterpreter.warnings` — never silently.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreterError,
    FinalOutput,
)

from rlm_dsl.errors import RlmError

WORKER = Path(__file__).with_name("worker.py")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
NOBODY = 65534
NO_NETNS = ("REPL sandbox: no network namespace ({why}); network access is refused only by the "
            "audit hook, and the scratch dir has no size limit")
NO_QUOTA = ("REPL sandbox: no mount namespace, so the scratch dir has no size limit (files are "
            "capped at fsize_mb each)")


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-execution and per-session limits of one REPL worker."""

    timeout_s: float = 30.0  # wall clock per execution, not counting host tool calls
    cpu_s: float = 30.0  # CPU time per execution (SIGPROF in the worker)
    memory_mb: int = 1024  # RLIMIT_AS
    fsize_mb: int = 64  # RLIMIT_FSIZE: largest file the code may write
    scratch_mb: int = 256  # size of the scratch tmpfs, where a mount namespace is available
    session_cpu_s: int = 3600  # RLIMIT_CPU backstop for the worker's whole life
    max_output_chars: int = 10_000


@dataclass(frozen=True, slots=True)
class Isolation:
    """How workers are wrapped on this machine, and what could not be had (said, never hidden)."""

    flags: tuple[str, ...]  # unshare flags; () when no namespace could be made
    quota: bool  # the scratch dir is a size-limited tmpfs in the worker's own mount namespace
    warnings: tuple[str, ...]

    def command(self, scratch: str, scratch_mb: int, argv: list[str]) -> list[str]:
        if not self.flags:
            return argv
        prefix = [shutil.which("unshare") or "unshare", *self.flags, "--"]
        if not self.quota:
            return [*prefix, *argv]
        owner = ",uid=65534,gid=65534" if os.getuid() == 0 and "-U" not in self.flags else ""
        size = f"size={max(1, scratch_mb)}m,mode=0700{owner}"
        script = f'mount -t tmpfs -o {size} rlm-scratch "$0" && exec "$@"'
        return [*prefix, "/bin/sh", "-c", script, scratch, *argv]


@functools.cache
def isolation() -> Isolation:
    """Probe, once per process, the strongest wrapping the machine allows."""
    if shutil.which("unshare") is None:
        return Isolation((), False, (NO_NETNS.format(why="no `unshare` on PATH"),))
    errors = []
    for flags, quota in ((("-n", "-m"), True), (("-U", "-r", "-n", "-m"), True),
                         (("-n",), False), (("-U", "-r", "-n"), False)):
        candidate = Isolation(flags, quota, () if quota else (NO_QUOTA,))
        error = _probe(candidate)
        if error is None:
            return candidate
        errors.append(f"unshare {' '.join(flags)}: {error}")
    return Isolation((), False, (NO_NETNS.format(why="; ".join(errors[-2:])),))


def _probe(candidate: Isolation) -> str | None:
    scratch = tempfile.mkdtemp(prefix="rlm-probe-")
    try:
        argv = [sys.executable, "-I", "-S", "-c", "pass"]
        probe = subprocess.run(candidate.command(scratch, 1, argv), capture_output=True,
                               text=True, timeout=10, check=False)
        return None if probe.returncode == 0 else (probe.stderr.strip() or str(probe.returncode))
    finally:
        os.rmdir(scratch)


class SandboxInterpreter:
    """A sandboxed, persistent Python REPL implementing DSPy's ``CodeInterpreter`` protocol."""

    execution_instructions = (
        "Code runs in a sandboxed Python process: no network, no subprocesses, no native code; "
        "only the scratch directory (the current directory) is writable. Variables persist "
        "between steps; the standard library modules re, json, math, collections, itertools, "
        "statistics, datetime, textwrap, difflib, csv, random, hashlib are available."
    )

    def __init__(
        self,
        tools: dict[str, Callable[..., Any]] | None = None,
        output_fields: list[dict[str, Any]] | None = None,
        *,
        limits: SandboxLimits | None = None,
        max_restarts: int = 3,
    ) -> None:
        self.tools: dict[str, Callable[..., Any]] = dict(tools or {})
        self.output_fields = output_fields
        self.limits = limits or SandboxLimits()
        self.max_restarts = max_restarts
        self.warnings: list[str] = []
        self.scratch: str | None = None
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._fatal: BaseException | None = None
        self._ended = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (idempotent)."""
        if self._ended:
            raise CodeInterpreterError("the REPL session has been shut down")
        if self._process is not None:
            return
        if self.scratch is None:
            self.scratch = tempfile.mkdtemp(prefix="rlm-scratch-")
            if os.getuid() == 0:
                os.chown(self.scratch, NOBODY, NOBODY)
        wrap = isolation()
        for warning in wrap.warnings:
            self._warn(warning)
        config = {**asdict(self.limits), "scratch": self.scratch, "read_roots": _read_roots()}
        argv = [sys.executable, "-I", "-S", str(WORKER), json.dumps(config)]
        command = wrap.command(self.scratch, self.limits.scratch_mb, argv)
        try:
            self._process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, cwd=self.scratch, start_new_session=True,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except OSError as exc:
            raise CodeInterpreterError(f"cannot start the REPL worker: {exc}") from exc
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, args=(self._process,), daemon=True).start()
        ready = self._await_ready()
        if not ready.get("uid_dropped"):
            self._warn("REPL sandbox: not running as root, so the worker keeps the host user's "
                       "file permissions; writes are refused only by the audit hook")

    def _await_ready(self) -> dict[str, Any]:
        """The worker's ``ready`` message; anything else is a terminal start-up failure."""
        try:
            line = self._lines.get(timeout=30)
        except queue.Empty:
            line = b'{"error": "no answer within 30 s"}'
        message = json.loads(line) if line else {}
        if message.get("type") == "ready":
            return message
        process = self._process
        assert process is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        why = message.get("error") or _stderr_tail(process)
        self._kill()
        raise CodeInterpreterError(f"the REPL worker could not start: {why}")

    def shutdown(self) -> None:
        """Stop the worker and delete the scratch directory."""
        self._ended = True
        self._kill()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> SandboxInterpreter:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def __call__(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        return self.execute(code, variables)

    # -- execution -----------------------------------------------------------------------------

    def execute(self, code: str, variables: dict[str, Any] | None = None) -> Any:
        """Run ``code`` in the persistent namespace; see ``CodeInterpreter.execute``."""
        self.start()
        fields = [f["name"] for f in self.output_fields or []]
        request = {"type": "execute", "code": code, "variables": variables or {},
                   "tools": list(self.tools), "fields": fields}
        self._send(request)
        deadline = time.monotonic() + self.limits.timeout_s
        while True:
            message = self._receive(deadline)
            if message is None:
                self._recover("the REPL exceeded its wall-clock limit of "
                              f"{self.limits.timeout_s:g} s")
            if message.get("type") == "call":
                started = time.monotonic()
                self._send(self._run_tool(message))
                deadline += time.monotonic() - started  # host work does not count against code
                continue
            if message.get("type") != "done":
                self._kill()
                raise CodeInterpreterError(f"the REPL worker sent an unknown message: {message!r}")
            return self._finish(message)

    def _finish(self, message: dict[str, Any]) -> Any:
        if self._fatal is not None:
            fatal, self._fatal = self._fatal, None
            raise fatal
        output, error = message.get("output") or "", message.get("error")
        if message.get("final") is not None:
            return FinalOutput(message["final"])
        if error and message.get("syntax"):
            raise SyntaxError(error)
        if error:
            raise CodeExecutionError(f"{output}\n{error}" if output else error)
        return output or None

    def _run_tool(self, message: dict[str, Any]) -> dict[str, Any]:
        name, call_id = message.get("name"), message.get("id")
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return {"type": "raise", "id": call_id, "error": f"unknown tool {name!r}"}
        try:
            value = tool(*message.get("args", []), **message.get("kwargs", {}))
            return {"type": "return", "id": call_id, "value": _jsonable(value)}
        except RlmError as exc:  # budget exhausted, LM back end down: the step must stop
            self._fatal = exc
            return {"type": "raise", "id": call_id, "error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:
            return {"type": "raise", "id": call_id, "error": f"{type(exc).__name__}: {exc}"}

    def _recover(self, what: str) -> None:
        """Kill and restart the worker, then raise the error the model will see."""
        self._kill()
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise CodeInterpreterError(f"{what}; the REPL was restarted {self.max_restarts} "
                                       "times already, giving up")
        self.start()
        raise CodeExecutionError(f"{what}. The REPL process was restarted: every variable you "
                                 "defined is gone; `context` and the tools are still there.")

    # -- process plumbing ----------------------------------------------------------------------

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        stream, lines = process.stdout, self._lines
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):  # the pipe is closed under us on a kill
            while line := stream.readline(MAX_MESSAGE_BYTES):
                lines.put(line)
        lines.put(None)

    def _receive(self, deadline: float) -> dict[str, Any] | None:
        """The next message; None on timeout. A dead worker becomes a recoverable error."""
        try:
            line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return None
        if line is None:
            code = self._process.wait() if self._process else None
            self._recover(f"the REPL process died ({_exit_reason(code)})")
        try:
            message = json.loads(line)
        except ValueError as exc:
            self._kill()
            raise CodeInterpreterError(f"the REPL worker broke the protocol: {exc}") from exc
        if not isinstance(message, dict):
            self._kill()
            raise CodeInterpreterError(f"the REPL worker broke the protocol: {message!r}")
        return message

    def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        assert process is not None and process.stdin is not None
        try:
            process.stdin.write(json.dumps(message).encode() + b"\n")
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            code = process.wait()
            self._recover(f"the REPL process died ({_exit_reason(code)})")

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def _stderr_tail(process: subprocess.Popen[bytes]) -> str:
    """The last line the wrapper (unshare, mount) or Python wrote before the worker died."""
    if process.stderr is None:
        return f"exit status {process.returncode}"
    with contextlib.suppress(OSError, ValueError):
        lines = process.stderr.read().decode(errors="replace").strip().splitlines()
        if lines:
            return lines[-1]
    return f"exit status {process.returncode}"


def _read_roots() -> list[str]:
    """Directories the worker may read besides scratch: the standard library only."""
    paths = sysconfig.get_paths()
    roots = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")}
    return sorted(roots)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = {"SIGKILL": "killed: memory or CPU limit", "SIGXCPU": "CPU limit",
                "SIGSEGV": "crashed"}.get(name, "signal")
        return f"{name}, {hint}"
    return f"exit status {code}"


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (dates and decimals become text/numbers)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, (set, tuple, frozenset)):
        return list(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)
