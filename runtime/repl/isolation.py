"""REPL sandbox, kernel side: how a worker process is wrapped so the kernel, not Python, holds it.

The strong wrapping is bubblewrap (``bwrap``): new mount, pid, net, ipc and uts namespaces, a root
holding only ``/usr`` and the Python runtime read-only plus a size-limited scratch tmpfs, a new
session, ``--die-with-parent``, ``no_new_privs`` and a seccomp filter built with libseccomp
(``pyseccomp``) that refuses ptrace, namespace and mount calls, kernel keyrings, BPF and every
socket (the host protocol runs over pipes). A second filter, loaded by the worker itself once
Python is up, refuses execve, fork/clone and signals to other processes. When the host is root,
each worker gets a uid of its own (:func:`worker_uid`); otherwise it runs in a user namespace.
Without bwrap or libseccomp the old ``unshare`` wrapping is used and :attr:`Isolation.warnings`
says what is missing; ``rlm run`` refuses ``rlm`` steps then unless ``--allow-weak-sandbox``.
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rlm_dsl.errors import RlmError

# fmt: off
DENIED_AT_START = (  # refused from the first instruction of the wrapped process
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "mount", "umount2", "pivot_root",
    "setns", "unshare", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "kexec_load", "init_module",
    "finit_module", "delete_module", "personality", "io_uring_setup", "socket", "socketpair",
    "chroot", "acct", "swapon", "swapoff", "reboot", "syslog",
)
DENIED_AFTER_START = (  # refused once the worker has started Python (it loads this one itself)
    "execve", "execveat", "fork", "vfork", "clone", "clone3", "kill", "tkill", "tgkill",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open", "pidfd_send_signal", "pidfd_getfd",
)
# fmt: on
SCRATCH = "/scratch"  # where the scratch tmpfs is mounted inside the bwrap root
FIRST_WORKER_UID = 1 << 20  # per-worker uids live above every uid a distribution hands out
WEAK = "REPL sandbox is weak: {why}; model code is held only by an in-process audit hook"
NO_NETNS = ("REPL sandbox: no network namespace ({why}); network access is refused only by the "
            "audit hook, and the scratch dir has no size limit")
NO_QUOTA = ("REPL sandbox: no mount namespace, so the scratch dir has no size limit (files are "
            "capped at fsize_mb each)")
_uids = itertools.count()


@dataclass(frozen=True, slots=True)
class Isolation:
    """How workers are wrapped on this machine, and what could not be had (said, never hidden)."""

    kind: str  # "bwrap", "unshare" or "none"
    flags: tuple[str, ...] = ()  # unshare flags (kind "unshare")
    quota: bool = False  # the scratch dir is a size-limited tmpfs
    warnings: tuple[str, ...] = ()
    seccomp: bytes = field(default=b"", repr=False)  # BPF loaded by bwrap before Python starts
    after_start: bytes = field(default=b"", repr=False)  # BPF the worker loads itself

    @property
    def strong(self) -> bool:
        """Kernel isolation: namespaces, a minimal root and seccomp filters in force."""
        return self.kind == "bwrap" and bool(self.seccomp)

    def scratch_path(self, host_dir: str) -> str:
        """Where the worker sees its scratch directory."""
        return SCRATCH if self.kind == "bwrap" else host_dir

    def spawn(self, scratch: str, scratch_mb: int, argv: list[str], **popen) -> subprocess.Popen:
        """Start ``argv`` wrapped; ``popen`` goes to :class:`subprocess.Popen`."""
        if self.kind != "bwrap":
            return subprocess.Popen(self._unshare(scratch, scratch_mb, argv), **popen)
        keep: list[int] = []
        try:
            command = _bwrap_command(scratch_mb, argv, self.seccomp, keep)
            return subprocess.Popen(command, pass_fds=keep, **popen)
        finally:
            for fd in keep:
                os.close(fd)

    def _unshare(self, scratch: str, scratch_mb: int, argv: list[str]) -> list[str]:
        if not self.flags:
            return argv
        prefix = [shutil.which("unshare") or "unshare", *self.flags, "--"]
        if not self.quota:
            return [*prefix, *argv]
        owner = ",uid=65534,gid=65534" if os.getuid() == 0 and "-U" not in self.flags else ""
        size = f"size={max(1, scratch_mb)}m,mode=0700{owner}"
        script = f'mount -t tmpfs -o {size} rlm-scratch "$0" && exec "$@"'
        return [*prefix, "/bin/sh", "-c", script, scratch, *argv]


class WeakSandbox(RlmError):
    """`rlm` steps would run without kernel isolation, and the user did not accept that."""

    exit_code = 1


def require_strong(has_rlm_steps: bool, allow_weak: bool) -> None:
    """Refuse `rlm` steps on a weak sandbox unless ``allow_weak`` (--allow-weak-sandbox, or
    ``$RLM_ALLOW_WEAK_SANDBOX=1`` for a whole machine, e.g. a CI box without bubblewrap)."""
    if not has_rlm_steps or allow_weak or os.environ.get("RLM_ALLOW_WEAK_SANDBOX") == "1":
        return
    wrap = isolation()
    if not wrap.strong:
        raise WeakSandbox(f"{wrap.warnings[0]}. `rlm` steps run model-written code, so this run "
                          "is refused: install bubblewrap (`apt-get install bubblewrap`) and "
                          "libseccomp, or pass --allow-weak-sandbox to accept the weaker "
                          "isolation")


def python_executable() -> str:
    """The real interpreter binary (not a venv's symlink): the one bound into the sandbox."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def worker_uid() -> int:
    """A uid no other worker on this machine has now: signals between workers need the same uid."""
    return FIRST_WORKER_UID + (os.getpid() % (1 << 16)) * 256 + next(_uids) % 256


def _bwrap_command(scratch_mb: int, argv: list[str], seccomp: bytes, keep: list[int]) -> list[str]:
    """The bwrap argv; the fds it names (seccomp program, bind sources) are appended to ``keep``."""
    def fd_of(path: str) -> str:
        keep.append(os.open(path, os.O_PATH | os.O_DIRECTORY))
        return str(keep[-1])

    command = [shutil.which("bwrap") or "bwrap", "--unshare-pid", "--unshare-net",
               "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent",
               "--new-session", "--ro-bind-fd", fd_of("/usr"), "/usr"]
    for name in ("lib", "lib64", "bin", "sbin"):
        if os.path.islink(f"/{name}"):
            command += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
    prefix = os.path.realpath(sys.base_prefix)
    if not prefix.startswith("/usr/"):
        for parent in reversed(Path(prefix).parents[:-1]):  # /root is 0700 on the host
            command += ["--perms", "0755", "--dir", str(parent)]
        command += ["--ro-bind-fd", fd_of(prefix), prefix]
    paths = sysconfig.get_paths(vars={"base": prefix, "platbase": prefix})
    for hidden in {paths["purelib"], paths["platlib"]}:
        if os.path.isdir(hidden):  # the worker imports the standard library only
            command += ["--tmpfs", os.path.realpath(hidden)]
    if os.getuid() == 0:  # the worker switches to its own uid itself, then has no capability
        command += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user", "--disable-userns"]
    program, writer = os.pipe()  # a program is a few hundred bytes: the pipe buffer holds it
    os.write(writer, seccomp)
    os.close(writer)
    keep.append(program)
    return [*command, "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
            "--perms", "0777", "--size", str(max(1, scratch_mb) << 20), "--tmpfs", SCRATCH,
            "--chdir", SCRATCH, "--clearenv", "--setenv", "LANG", "C.UTF-8",
            "--seccomp", str(keep[-1]), "--", *argv]


def _filters() -> tuple[bytes, bytes] | str:
    """(at-start, after-start) BPF programs, or why they cannot be built here."""
    try:
        import pyseccomp  # loads libseccomp: only when a sandbox is first needed
    except (ImportError, OSError) as exc:  # OSError: the package is there, libseccomp is not
        return f"no libseccomp ({exc})"
    programs = []
    for denied in (DENIED_AT_START, DENIED_AFTER_START):
        program = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in denied:
            action = errno.ENOSYS if name == "clone3" else errno.EPERM  # ENOSYS: libc falls back
            program.add_rule(pyseccomp.ERRNO(action), name)
        with tempfile.TemporaryFile() as out:
            program.export_bpf(out)
            out.seek(0)
            programs.append(out.read())
    return programs[0], programs[1]


@functools.cache
def isolation() -> Isolation:
    """Probe, once per process, the strongest wrapping the machine allows."""
    filters = _filters()
    seccomp, after = filters if isinstance(filters, tuple) else (b"", b"")
    if shutil.which("bwrap") is None:
        why = "bubblewrap (`bwrap`) is not installed"
    elif not seccomp:
        why = str(filters)
    else:
        candidate = Isolation("bwrap", quota=True, seccomp=seccomp, after_start=after)
        error = _probe(candidate)
        if error is None:
            return candidate
        why = f"bwrap cannot make namespaces here ({error})"
    fallback = _unshare_isolation()
    return Isolation(fallback.kind, fallback.flags, fallback.quota,
                     (WEAK.format(why=why), *fallback.warnings), after_start=after)


def _unshare_isolation() -> Isolation:
    if shutil.which("unshare") is None:
        return Isolation("none", warnings=(NO_NETNS.format(why="no `unshare` on PATH"),))
    errors = []
    for flags, quota in ((("-n", "-m"), True), (("-U", "-r", "-n", "-m"), True),
                         (("-n",), False), (("-U", "-r", "-n"), False)):
        candidate = Isolation("unshare", flags, quota, () if quota else (NO_QUOTA,))
        error = _probe(candidate)
        if error is None:
            return candidate
        errors.append(f"unshare {' '.join(flags)}: {error}")
    return Isolation("none", warnings=(NO_NETNS.format(why="; ".join(errors[-2:])),))


def _probe(candidate: Isolation) -> str | None:
    scratch = tempfile.mkdtemp(prefix="rlm-probe-")
    try:
        argv = [python_executable(), "-I", "-S", "-c", "pass"]
        probe = candidate.spawn(scratch, 1, argv, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        try:
            _, err = probe.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            probe.kill()
            _, err = probe.communicate()
        return None if probe.returncode == 0 else (
            err.decode(errors="replace").strip() or str(probe.returncode))
    finally:
        os.rmdir(scratch)
