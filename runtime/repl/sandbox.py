"""REPL sandbox, host side: a DSPy ``CodeInterpreter`` whose code runs in a separate worker process.

:class:`SandboxInterpreter` starts ``worker.py`` (standard library only) as a long-lived child,
so the model's namespace persists across iterations. The worker is wrapped by
:mod:`~rlm_dsl.runtime.repl.isolation` (bubblewrap namespaces, a minimal read-only root, a scratch
tmpfs, seccomp filters, a uid of its own) and hardened from inside (rlimits, a scrubbed
environment, an audit hook that explains refusals). Tool calls (``sql``, ``llm_query``,
``context`` access, ...) come back to the host as JSON-line RPCs over
:class:`~rlm_dsl.runtime.repl.pipes.WorkerPipes`, where every byte has a deadline: one wall clock
per execution that includes the host's tool time, and a total per session (step). An overrun, a
dead worker or a protocol violation kills and restarts the worker and raises
``CodeExecutionError`` (the model sees it and goes on); too many restarts or a spent total raise
``CodeInterpreterError`` (the step ends). Whatever isolation could not be had is listed in
:attr:`SandboxInterpreter.warnings` — never silently.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sysconfig
import tempfile
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
from rlm_dsl.runtime.repl.isolation import isolation, python_executable, worker_uid
from rlm_dsl.runtime.repl.pipes import PipeTimeout, ProtocolBroken, WorkerGone, WorkerPipes

__all__ = ["SandboxInterpreter", "SandboxLimits", "isolation"]
WORKER = Path(__file__).with_name("worker.py")
NOBODY = 65534


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """Per-execution and per-session limits of one REPL worker."""

    timeout_s: float = 30.0  # wall clock per execution, host tool calls included
    total_s: float = 600.0  # wall clock of all executions of one session (one step) together
    cpu_s: float = 30.0  # CPU time per execution (SIGPROF in the worker)
    memory_mb: int = 1024  # RLIMIT_AS
    fsize_mb: int = 64  # RLIMIT_FSIZE: largest file the code may write
    scratch_mb: int = 256  # size of the scratch tmpfs, where a mount namespace is available
    session_cpu_s: int = 3600  # RLIMIT_CPU backstop for the worker's whole life
    max_output_chars: int = 10_000


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
        self.spent_s = 0.0  # wall clock of every execution so far, against ``limits.total_s``
        self._process: subprocess.Popen[bytes] | None = None
        self._pipes: WorkerPipes | None = None
        self._fatal: BaseException | None = None
        self._ended = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker (idempotent)."""
        if self._ended:
            raise CodeInterpreterError("the REPL session has been shut down")
        if self._process is not None:
            return
        wrap = isolation()
        for warning in wrap.warnings:
            self._warn(warning)
        if self.scratch is None:
            self.scratch = tempfile.mkdtemp(prefix="rlm-scratch-")
            if os.getuid() == 0:
                os.chown(self.scratch, NOBODY, NOBODY)
        config = {**asdict(self.limits), "scratch": wrap.scratch_path(self.scratch),
                  "read_roots": _read_roots(), "after_start": wrap.after_start.hex(),
                  "uid": worker_uid() if wrap.kind == "bwrap" else NOBODY}
        try:
            argv = [python_executable(), "-I", "-S", "-c", WORKER.read_text(), json.dumps(config)]
            self._process = wrap.spawn(
                self.scratch, self.limits.scratch_mb, argv, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.scratch,
                start_new_session=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except OSError as exc:
            raise CodeInterpreterError(f"the REPL worker could not start: {exc}") from exc
        assert self._process.stdin is not None and self._process.stdout is not None
        self._pipes = WorkerPipes(self._process.stdin, self._process.stdout)
        ready = self._await_ready()
        if not ready.get("uid_dropped") and wrap.kind != "bwrap":
            self._warn("REPL sandbox: not running as root, so the worker keeps the host user's "
                       "file permissions; writes are refused only by the audit hook")

    def _await_ready(self) -> dict[str, Any]:
        """The worker's ``ready`` message; anything else is a terminal start-up failure."""
        assert self._pipes is not None and self._process is not None
        try:
            message = self._pipes.receive(time.monotonic() + 30)
        except PipeTimeout:
            message = {"error": "no answer within 30 s"}
        except (WorkerGone, ProtocolBroken):
            message = {}
        if message.get("type") == "ready":
            return message
        process = self._process
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
        """Run ``code`` in the persistent namespace; see ``CodeInterpreter.execute``.

        One wall clock covers the whole execution, the host's tool calls included; the session's
        total (``limits.total_s``) ends the step when it is used up.
        """
        left = self.limits.total_s - self.spent_s
        if left <= 0:
            raise CodeInterpreterError(f"the REPL used its {self.limits.total_s:g} s of wall "
                                       "clock for this step")
        self.start()
        fields = [f["name"] for f in self.output_fields or []]
        request = {"type": "execute", "code": code, "variables": variables or {},
                   "tools": list(self.tools), "fields": fields}
        started = time.monotonic()
        deadline = started + min(self.limits.timeout_s, left)
        try:
            self._send(request, deadline)
            while True:
                message = self._receive(deadline)
                if message.get("type") == "call":
                    self._send(self._run_tool(message), deadline)
                    continue
                if message.get("type") != "done":
                    self._recover(f"the REPL worker broke the protocol ({message!r:.200})")
                return self._finish(message)
        finally:
            self.spent_s += time.monotonic() - started

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
        if self._fatal is not None:  # a budget or back-end error ends the step, whatever else
            fatal, self._fatal = self._fatal, None
            raise fatal
        self.restarts += 1
        if self.restarts > self.max_restarts:
            raise CodeInterpreterError(f"{what}; the REPL was restarted {self.max_restarts} "
                                       "times already, giving up")
        self.start()
        raise CodeExecutionError(f"{what}. The REPL process was restarted: every variable you "
                                 "defined is gone; `context` and the tools are still there.")

    # -- process plumbing ----------------------------------------------------------------------

    def _receive(self, deadline: float) -> dict[str, Any]:
        """The next message; an overrun, a dead worker or garbage become recoverable errors."""
        assert self._pipes is not None
        try:
            return self._pipes.receive(deadline)
        except PipeTimeout:
            self._recover(self._overrun())
        except WorkerGone:
            self._recover(f"the REPL process died ({self._reap()})")
        except ProtocolBroken as exc:
            self._recover(f"the REPL worker broke the protocol ({exc})")
        raise AssertionError("unreachable: _recover always raises")

    def _send(self, message: dict[str, Any], deadline: float) -> None:
        assert self._pipes is not None
        try:
            self._pipes.send(message, deadline)
        except PipeTimeout:
            self._recover(self._overrun())
        except WorkerGone:
            self._recover(f"the REPL process died ({self._reap()})")

    def _overrun(self) -> str:
        if self.limits.total_s - self.spent_s <= self.limits.timeout_s:
            return (f"the REPL exceeded its wall-clock limit of {self.limits.total_s:g} s for "
                    "this step")
        return (f"the REPL exceeded its wall-clock limit of {self.limits.timeout_s:g} s "
                "(host tool calls included)")

    def _reap(self) -> str:
        """Why the worker is gone: its exit status (it is killed if it only closed its pipes)."""
        process = self._process
        assert process is not None
        try:
            code = process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._kill()
            return "it closed the protocol pipe and was killed"
        return _exit_reason(code)

    def _kill(self) -> None:
        process, self._process, self._pipes = self._process, None, None
        if process is None:
            return
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def _warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def _stderr_tail(process: subprocess.Popen[bytes]) -> str:
    """The last line the wrapper (bwrap, unshare) or Python wrote before the worker died."""
    if process.stderr is not None:
        os.set_blocking(process.stderr.fileno(), False)  # a surviving grandchild may hold it
        with contextlib.suppress(OSError, ValueError, TypeError):
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
    if code is not None and 128 < code < 128 + signal.NSIG:  # bwrap reports a signal as 128+n
        code = 128 - code
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
