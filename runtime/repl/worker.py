"""REPL worker: the separate, long-lived process that runs an `rlm` step's model-written code.

Started by :class:`rlm_dsl.runtime.repl.sandbox.SandboxInterpreter` as
``python -I -S -c <this file> CONFIG_JSON`` inside bubblewrap (see ``isolation.py``; the old
``unshare`` wrapping where bwrap is missing). It imports only the standard library, so it starts
fast and never loads DSPy, DuckDB or the LM objects. Start-up order matters: protocol pipes are
moved off fds 0/1/2, the allowed standard-library modules are preloaded, the environment is
scrubbed, kernel limits are set (address space, file size, no new processes, a session CPU
backstop), a root worker switches to its own uid, the second seccomp filter (no exec, fork or
signals) is loaded, and only then the audit hook is installed. The hook is a tripwire that turns
forbidden actions into errors the model can read; the kernel (namespaces, a root of read-only
runtime files, seccomp, rlimits, uid) is the boundary that still holds when model code switches
the hook off. The host speaks JSON lines: ``execute`` → (``call`` ↔ ``return``/``raise``)* →
``done``. This module is the worker's ``__main__``; the host never imports it.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import io
import json
import os
import resource
import signal
import sys
import traceback

# fmt: off
PRELOAD = (
    "base64", "bisect", "calendar", "collections", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "enum", "fnmatch", "fractions", "functools", "glob", "hashlib", "heapq",
    "html", "itertools", "json", "math", "operator", "pathlib", "pprint", "random", "re", "shutil",
    "statistics", "string", "tempfile", "textwrap", "time", "typing", "unicodedata",
    "urllib.parse", "_strptime",
)
DENIED_MODULES = frozenset((
    "ctypes", "_ctypes", "subprocess", "_posixsubprocess", "socket", "_socket", "ssl", "_ssl",
    "multiprocessing", "_multiprocessing", "concurrent", "asyncio", "select", "selectors", "pty",
    "fcntl", "mmap", "gc", "resource", "signal", "_thread", "threading", "http", "urllib.request",
    "ftplib", "smtplib", "telnetlib", "xmlrpc", "_imp", "marshal", "pickle", "_pickle",
))
BLOCKED_EVENTS = frozenset((
    "os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.setuid", "subprocess.Popen",
    "pty.spawn", "gc.get_objects", "gc.get_referrers", "gc.get_referents", "code.__new__",
    "resource.setrlimit", "resource.prlimit", "sys.setprofile",
    "sys.settrace", "_posixsubprocess.fork_exec",
))
HIDDEN_BUILTINS = ("breakpoint", "input", "help", "exit", "quit", "copyright", "credits", "license")
BLOCKED_PREFIXES = ("socket.", "ctypes.", "os.exec", "os.spawn", "os.posix_spawn", "mmap.")
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
PATH_EVENTS = {  # event -> indexes of the path arguments that must lie inside the scratch dir
    "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.link": (0, 1), "os.symlink": (1,), "os.truncate": (0,), "os.utime": (0,),
    "os.chdir": (0,), "os.chflags": (0,), "os.lchown": (0,), "os.setxattr": (0,),
    "os.removexattr": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
    "shutil.copymode": (1,), "shutil.copystat": (1,), "shutil.move": (0, 1),
    "shutil.chown": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
}
# fmt: on
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class Submission(BaseException):
    """Raised by SUBMIT; a BaseException, so ``except Exception`` in model code cannot eat it."""

    def __init__(self, value: dict) -> None:
        self.value = value


class ToolError(RuntimeError):
    """A host tool (sql, llm_query, ...) refused or failed; the message comes from the host."""


class Channel:
    """JSON lines to and from the host over private duplicates of the original stdin/stdout."""

    def __init__(self) -> None:
        self._in = os.fdopen(os.dup(0), "rb")
        self._out = os.fdopen(os.dup(1), "wb")
        self._dumps, self._loads = json.dumps, json.loads  # immune to model edits of `json`
        self._ids = 0
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):  # C-level writes by model code must not reach the protocol pipe
            os.dup2(null, fd)
        os.close(null)

    def send(self, message: dict) -> None:
        self._out.write(self._dumps(message, default=repr).encode() + b"\n")
        self._out.flush()

    def receive(self) -> dict:
        line = self._in.readline()
        if not line:
            raise SystemExit(0)
        return self._loads(line)

    def call(self, name: str, args: tuple, kwargs: dict) -> object:
        self._ids += 1
        try:
            self._dumps([args, kwargs])
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name}(): arguments must be JSON values (str, number, list, dict)"
            ) from exc
        self.send({"type": "call", "id": self._ids, "name": name, "args": args, "kwargs": kwargs})
        reply = self.receive()
        if reply.get("type") == "raise":
            raise ToolError(reply.get("error", "tool failed"))
        return reply.get("value")


class CappedText(io.TextIOBase):
    """stdout/stderr for model code: keeps the first ``limit`` characters, counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.parts, self.kept, self.total = limit, [], 0, 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        text = str(text)
        self.total += len(text)
        room = self.limit - self.kept
        if room > 0:
            self.parts.append(text[:room])
            self.kept += min(room, len(text))
        return len(text)

    def value(self) -> str:
        out = "".join(self.parts)
        if self.total > self.kept:
            out += (
                f"\n[output truncated: {self.total:,} characters printed, first "
                f"{self.kept:,} shown; print less or summarise in code]"
            )
        return out


def make_hook(scratch: str, read_roots: tuple[str, ...]):
    """Build the audit hook; all its state lives in this closure, none in module globals."""
    realpath, fsdecode, sep = os.path.realpath, os.fsdecode, os.sep
    writable, readable = (scratch,), (scratch, *read_roots)

    def inside(path: object, roots: tuple[str, ...]) -> bool:
        if isinstance(path, int):
            return True  # an already-open descriptor was checked when it was opened
        real = realpath(fsdecode(path))
        return any(real == root or real.startswith(root + sep) for root in roots)

    def refuse(what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event in BLOCKED_EVENTS or event.startswith(BLOCKED_PREFIXES):
            refuse(event)
        if event == "import" and (
            args[0] in DENIED_MODULES or args[0].partition(".")[0] in DENIED_MODULES
        ):
            raise ImportError(f"sandbox: import of {args[0]!r} is not allowed")
        if event == "open":
            path, mode, flags = args
            write = bool(flags & WRITE_FLAGS) or (mode is not None and set(mode) & set("wax+"))
            if write and not inside(path, writable):
                refuse(f"writing {path!r} (only the scratch dir {scratch} is writable)")
            if not write and not inside(path, readable):
                refuse(f"reading {path!r}")
        elif (
            event in ("os.listdir", "os.scandir")
            and args[0] is not None
            and not inside(args[0], readable)
        ):
            refuse(f"listing {args[0]!r}")
        elif event in PATH_EVENTS:
            for index in PATH_EVENTS[event]:
                if (
                    index < len(args)
                    and args[index] is not None
                    and not inside(args[index], writable)
                ):
                    refuse(f"{event} on {args[index]!r} (outside the scratch dir)")

    return hook


def harden(config: dict) -> dict:
    """Preload, scrub, limit, drop privileges, hook. Returns what was achieved, for the host."""

    for name in PRELOAD:
        importlib.import_module(name)
    scratch = config["scratch"]
    os.chdir(scratch)
    os.environ.clear()
    os.environ.update({"HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"})
    mem = config["memory_mb"] * 1024 * 1024
    limits = [
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_FSIZE, config["fsize_mb"] * 1024 * 1024),
        (resource.RLIMIT_NPROC, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, config["session_cpu_s"]),
    ]
    for which, value in limits:
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversize write raises OSError instead
    dropped = False
    if os.getuid() == 0:
        try:
            os.setgroups([])
            os.setgid(config["uid"])
            os.setuid(config["uid"])
            dropped = True
        except OSError:  # "root" of a user namespace that maps no other uid
            pass
    filtered = bool(config["after_start"]) and load_seccomp(bytes.fromhex(config["after_start"]))
    sys.modules["__main__"] = type(sys)("__main__")  # hide this module's globals from `import`
    sys.addaudithook(make_hook(os.path.realpath(scratch), tuple(config["read_roots"])))
    return {"uid_dropped": dropped, "seccomp": filtered}


def load_seccomp(program: bytes) -> bool:
    """Load a BPF seccomp filter (no exec, fork or signals from here on) into this process.

    ``ctypes`` is needed for ``prctl`` and is dropped from ``sys.modules`` afterwards, so model
    code importing it meets the audit hook; the filter itself cannot be removed by anyone.
    """
    import ctypes  # only for prctl, then dropped from sys.modules (see the docstring)

    class Program(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_char_p))

    libc = ctypes.CDLL(None, use_errno=True)
    prog = Program(len(program) // 8, program)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(
        PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0
    ):
        raise OSError(ctypes.get_errno(), "cannot load the seccomp filter")
    for name in [m for m in sys.modules if m == "ctypes" or m.startswith(("ctypes.", "_ctypes"))]:
        del sys.modules[name]
    return True


class Session:
    """The persistent namespace and one ``execute`` request at a time."""

    def __init__(self, channel: Channel, config: dict) -> None:
        self.channel, self.config = channel, config
        safe = {k: v for k, v in vars(builtins).items() if k not in HIDDEN_BUILTINS}
        self.builtins = safe  # pristine: every execution starts from a fresh copy of it
        self.namespace: dict = {"__name__": "__rlm__"}
        self.fields: list[str] = []
        signal.signal(signal.SIGPROF, self._cpu_exceeded)

    def _cpu_exceeded(self, *_: object) -> None:
        raise TimeoutError(f"execution used more than {self.config['cpu_s']} s of CPU time")

    def _submit(self, *args: object, **kwargs: object) -> None:
        names = self.fields or ["output"]
        if args and kwargs:
            raise TypeError("SUBMIT takes positional or keyword values, not both")
        if len(args) > len(names):
            raise TypeError(f"SUBMIT takes {len(names)} value(s): {', '.join(names)}")
        values = dict(zip(names, args, strict=False)) if args else dict(kwargs)
        missing = [n for n in names if n not in values]
        extra = [n for n in values if n not in names]
        if missing or extra:
            raise TypeError(
                f"SUBMIT needs exactly: {', '.join(names)} (missing {missing}, unexpected {extra})"
            )
        raise Submission(values)

    def _bind(self, tools: list[str], fields: list[str]) -> None:
        self.fields = fields
        call = self.channel.call
        for name in tools:
            if not name.startswith("_"):
                self.namespace[name] = _proxy(call, name)
        if "sql" in tools:
            self.namespace["sql"] = _sql_proxy(call)
        self.namespace["SUBMIT"] = self._submit
        self.namespace["__builtins__"] = dict(self.builtins)
        if "_context" in tools and "context" not in self.namespace:
            self.namespace["context"] = Context(_proxy(call, "_context"))

    def execute(self, request: dict) -> dict:
        self._bind(request.get("tools", []), request.get("fields") or [])
        self.namespace.update(request.get("variables") or {})
        out = CappedText(self.config["max_output_chars"])
        result: dict = {"type": "done", "error": None, "final": None, "syntax": False}
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = out
        signal.setitimer(signal.ITIMER_PROF, self.config["cpu_s"])
        try:
            self._run(request["code"], out)
        except Submission as submission:
            result["final"] = submission.value
        except SyntaxError as exc:
            result.update(error=f"SyntaxError: {exc}", syntax=True)
        except BaseException as exc:
            result["error"] = _describe(exc)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            sys.stdout, sys.stderr = saved
        result["output"] = out.value()
        return result

    def _run(self, code: str, out: CappedText) -> None:
        tree = ast.parse(code, mode="exec")
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<repl>", "exec"), self.namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<repl>", "eval"), self.namespace)
            if value is not None:
                out.write(repr(value) + "\n")


class Context:
    """The step's input as a lazy handle: every access is one host call, nothing is copied whole.

    Rows are the records of the source table in ``id`` order (lines of a text input, chunks of a
    chunk table, results of a map step); each row has an ``id`` and a ``text``.
    """

    def __init__(self, host) -> None:
        self._host, self._meta = host, None

    def _info(self) -> dict:
        if self._meta is None:
            self._meta = self._host("info")
        return self._meta

    table = property(lambda self: self._info()["table"])
    columns = property(lambda self: self._info()["columns"])
    n_rows = property(lambda self: self._info()["n_rows"])
    n_chars = property(lambda self: self._info()["n_chars"])

    def __len__(self) -> int:
        return self.n_rows

    def __repr__(self) -> str:
        info = self._info()
        return (
            f"<context {info['table']}: {info['n_rows']:,} rows, {info['n_chars']:,} chars, "
            f"columns {', '.join(info['columns'])}>"
        )

    def __getitem__(self, key):
        if isinstance(key, slice):
            start, stop, step = key.indices(self.n_rows)
            if step != 1:
                raise ValueError("context slices take no step")
            return self.rows(start, stop)
        index = key + self.n_rows if key < 0 else key
        if not 0 <= index < self.n_rows:
            raise IndexError(f"context row {key} out of range (0..{self.n_rows - 1})")
        return self.rows(index, index + 1)[0]

    def rows(self, start: int = 0, stop: int | None = None) -> list:
        """Rows ``start``..``stop - 1`` as dicts (all columns)."""
        return self._host("rows", start, stop)

    def lines(self, start: int = 0, stop: int | None = None) -> str:
        """The ``text`` of rows ``start``..``stop - 1`` joined with newlines."""
        return self._host("lines", start, stop)

    def chunks(self, size: int = 200):
        """Yield the text of ``size`` rows at a time, fetched one chunk per step."""
        for start in range(0, self.n_rows, size):
            yield self.lines(start, start + size)

    def __iter__(self):
        for start in range(0, self.n_rows, 1000):
            yield from (row["text"] for row in self.rows(start, start + 1000))

    def search(self, pattern: str, limit: int = 100) -> list:
        """Rows whose text matches the regular expression ``pattern``: [{'id', 'text'}]."""
        return self._host("search", pattern, limit)

    def preview(self, n: int = 5) -> str:
        return self.lines(0, n)


def _proxy(call, name: str):
    def tool(*args: object, **kwargs: object) -> object:
        return call(name, args, kwargs)

    tool.__name__ = tool.__qualname__ = name
    return tool


def _sql_proxy(call):
    def sql(*args: object, **kwargs: object) -> list:
        result = call("sql", args, kwargs)
        if result["truncated"]:
            print(f"[sql: only the first {len(result['rows']):,} rows came back; aggregate, "
                  "filter or LIMIT in SQL]")
        return result["rows"]

    return sql


def _describe(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<repl>"]
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}{where}: {exc}"


def main() -> None:
    config = json.loads(sys.argv[1])
    channel = Channel()
    sys.stdin = io.StringIO("")
    try:
        achieved = harden(config)
        session = Session(channel, config)
    except Exception as exc:  # tell the host why, instead of dying silently
        channel.send({"type": "fatal", "error": f"{type(exc).__name__}: {exc}"})
        raise SystemExit(1) from None
    channel.send({"type": "ready", **achieved})
    while True:
        request = channel.receive()
        if request.get("type") != "execute":
            return
        with contextlib.suppress(BrokenPipeError):
            channel.send(session.execute(request))


if __name__ == "__main__":
    main()
