"""Escape suite, kernel side: with the audit hook switched off, the kernel still holds the worker.

A module-scoped worker runs :data:`TAMPER` first, the way the held-out attacker did: it catches
the hook's ``PermissionError``, replaces ``refuse``'s code through the traceback's frames, and
clears the worker's block lists through ``sys._getframe`` (or a generator's ``gi_frame``). Every
case then attacks the host from that hook-less worker and checks the host-side evidence: a secret
file not read, no file created, no process spawned, no connection accepted, a sibling worker alive.
The cases skip, saying why, where bubblewrap or libseccomp is missing (the weak sandbox is refused
by ``rlm run`` there).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import pytest
from dspy.primitives.code_interpreter import CodeExecutionError

from rlm_dsl.runtime.repl.isolation import isolation
from rlm_dsl.runtime.repl.sandbox import SandboxInterpreter, SandboxLimits

pytestmark = pytest.mark.skipif(not isolation().strong, reason="needs kernel isolation: "
                                f"{'; '.join(isolation().warnings) or 'bwrap and libseccomp'}")
SECRET = "host-secret-7f3a"
TAMPER = """
import sys
def _tamper():
    try:
        open('/usr/bin/env', 'rb')
    except PermissionError as exc:
        tb = exc.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        tb.tb_frame.f_back.f_locals['refuse'].__code__ = (lambda what: None).__code__
    def walk():
        frame = gen.gi_frame.f_back
        while frame.f_back is not None:
            frame = frame.f_back
        frame.f_globals['BLOCKED_EVENTS'] = frozenset()
        frame.f_globals['BLOCKED_PREFIXES'] = ('no-such-event',)
        frame.f_globals['DENIED_MODULES'] = frozenset()
        yield
    gen = walk()
    next(gen)
_tamper()
print(open('/usr/bin/env', 'rb').read(4))
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    """A host directory with a root-only secret file, outside any sandbox."""
    root = tmp_path_factory.mktemp("host")
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    return root


@pytest.fixture(scope="module")
def tampered():
    with SandboxInterpreter(limits=SandboxLimits(timeout_s=20, cpu_s=5)) as repl:
        assert repl.execute(TAMPER) == "b'\\x7fELF'\n"  # the hook no longer refuses reads
        yield repl


def attempt(repl: SandboxInterpreter, code: str) -> str:
    """Run ``code``; return what the model sees (output or error); the REPL must go on."""
    try:
        seen = str(repl.execute(code))
    except CodeExecutionError as exc:
        seen = str(exc)
    assert repl.execute("print(6 * 7)") == "42\n"
    return seen


def test_the_tamper_really_switches_the_hook_off(tampered):
    assert tampered.execute("import os\nprint(os.listdir('/usr')[:1] != [])") == "True\n"


CLOSURE_CELL = """
try:
    open('/usr/bin/env')
except PermissionError as exc:
    tb = exc.__traceback__
    while tb.tb_next:
        tb = tb.tb_next
    inside = tb.tb_frame.f_back.f_locals['inside']
    cells = dict(zip(inside.__code__.co_freevars, inside.__closure__))
    cells['realpath'].cell_contents = lambda path: '/scratch'
"""
FUNC_GLOBALS = """
import sys
frame = sys._getframe()
while frame.f_back:
    frame = frame.f_back
frame.f_globals['BLOCKED_EVENTS'] = frozenset()
frame.f_globals['BLOCKED_PREFIXES'] = ('no-such-event',)
frame.f_globals['DENIED_MODULES'] = frozenset()
"""


@pytest.mark.parametrize(("tamper", "attack"), [
    (TAMPER, "print(open({secret!r}).read())"),
    (CLOSURE_CELL, "print(open({secret!r}).read())"),
    (CLOSURE_CELL, "open({planted!r}, 'w').write('x')"),
    (FUNC_GLOBALS, "import os\nos.execv('/usr/bin/touch', ['touch', {planted!r}])"),
    (FUNC_GLOBALS, "import socket\nsocket.socket(socket.AF_UNIX).connect('/tmp/x')"),
], ids=["code-swap-read", "closure-cell-read", "closure-cell-write", "globals-exec",
        "globals-socket"])
def test_each_tampering_route_meets_the_kernel(tamper, attack, host):
    secret, planted = str(host / "secret.txt"), str(host / "planted-by-tamper")
    with SandboxInterpreter() as repl:
        repl.execute(tamper)
        seen = attempt(repl, attack.format(secret=secret, planted=planted))
    assert SECRET not in seen and "Errno" in seen
    assert not os.path.exists(planted)


@pytest.mark.parametrize("path", ["/etc/passwd", "/etc/shadow", "/root/.bash_history",
                                  "/proc/1/environ", "/work", "/home", "/var/log"])
def test_host_files_are_absent_not_just_refused(tampered, path):
    seen = attempt(tampered, f"import os\nprint(os.path.exists({path!r}))\n"
                             f"print(open({path!r}).read()[:200] if os.path.isfile({path!r}) "
                             "else '')")
    if path == "/proc/1/environ":  # pid 1 is bwrap's init in the worker's pid namespace
        assert SECRET not in seen and "RLM_" not in seen
    else:
        assert seen.startswith("False")


def test_the_host_secret_file_is_unreachable(tampered, host):
    seen = attempt(tampered, f"print(open({str(host / 'secret.txt')!r}).read())")
    assert SECRET not in seen and "FileNotFoundError" in seen


def test_the_root_holds_only_the_runtime_and_scratch(tampered):
    listing = attempt(tampered, "import os\nprint(sorted(os.listdir('/')))")
    assert set(eval(listing)) <= {"bin", "dev", "lib", "lib64", "proc", "root", "sbin",
                                  "scratch", "tmp", "usr"}


def test_site_packages_are_hidden(tampered):
    seen = attempt(tampered, "import os, sys, sysconfig\n"
                             "print(os.listdir(sysconfig.get_paths()['purelib']))")
    assert seen == "[]\n"


@pytest.mark.parametrize("target", ["/etc/rlm-escape", "/usr/rlm-escape", "/rlm-escape",
                                    "/root/rlm-escape", "/usr/lib/rlm-escape"])
def test_writes_outside_scratch_fail_in_the_kernel(tampered, target):
    seen = attempt(tampered, f"open({target!r}, 'w').write('x')")
    assert "Errno" in seen
    assert not os.path.exists(target)


def test_writes_to_a_host_temp_dir_never_reach_the_host(tampered, host):
    target = host / "planted.txt"
    attempt(tampered, f"import os\nos.makedirs({str(host)!r}, exist_ok=True)\n"
                      f"open({str(target)!r}, 'w').write('x')")
    assert not target.exists()


DEEP_CWD = ("import os\nos.makedirs('a/b/c/d/e/f/g/h', exist_ok=True)\n"
            "os.chdir('a/b/c/d/e/f/g/h')\n"
            "fd = os.open(os.path.dirname(os.__file__), os.O_RDONLY)\n")


@pytest.mark.parametrize(("code", "error"), [
    (DEEP_CWD + "print(os.read(os.open('../../../../../etc/passwd', os.O_RDONLY, dir_fd=fd), 99))",
     "No such file or directory"),
    (DEEP_CWD + "os.open('rlm-dirfd', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
     "Read-only file system"),
    (DEEP_CWD + "os.open('../../../../../tmp/rlm-dirfd', os.O_WRONLY | os.O_CREAT, dir_fd=fd)",
     ""),
    (DEEP_CWD + "os.unlink('os.py', dir_fd=fd)", "Read-only file system"),
    (DEEP_CWD + "os.mkdir('rlm-dirfd', dir_fd=fd)", "Read-only file system"),
    (DEEP_CWD + "os.rename('os.py', 'moved.py', src_dir_fd=fd, dst_dir_fd=fd)",
     "Read-only file system"),
], ids=["read-etc", "create-in-stdlib", "create-in-tmp", "unlink-stdlib", "mkdir-stdlib",
        "rename-stdlib"])
def test_dir_fd_paths_the_hook_misjudges_meet_the_kernel(code, error):
    """With the hook on: it resolves against the cwd, the kernel against ``dir_fd``."""
    stdlib = os.path.dirname(os.__file__)
    with SandboxInterpreter() as repl:
        seen = attempt(repl, code)
    assert error in seen and "root:" not in seen
    assert not os.path.exists(os.path.join(stdlib, "rlm-dirfd"))
    assert not os.path.exists("/tmp/rlm-dirfd") and not os.path.exists("/etc/rlm-dirfd")
    assert os.path.exists(os.path.join(stdlib, "os.py"))


@pytest.mark.parametrize("code", [
    "import os\nos.execv('/usr/bin/touch', ['touch', '{marker}'])",
    "import os\nos.execve('/usr/bin/touch', ['touch', '{marker}'], {{}})",
    "import os\nos.posix_spawn('/usr/bin/touch', ['touch', '{marker}'], {{}})",
    "import os\nos.system('touch {marker}')",
    "import subprocess\nsubprocess.run(['/usr/bin/touch', '{marker}'])",
    "import os\nif os.fork() == 0:\n    os.execv('/usr/bin/touch', ['touch', '{marker}'])",
    "import pty\npty.fork()",
    "import os\nos.spawnv(os.P_WAIT, '/usr/bin/touch', ['touch', '{marker}'])",
    "import _posixsubprocess, os\n_posixsubprocess.fork_exec(['/usr/bin/touch'], "
    "[b'/usr/bin/touch'], True, (), None, None, -1, -1, -1, -1, -1, -1, *os.pipe(), False, "
    "False, None, None, None, -1, None, False)",
])
def test_no_process_can_be_started_after_tampering(tampered, host, code):
    marker = host / "spawned"
    attempt(tampered, code.format(marker=marker))  # os.system says 32512: no shell started
    assert not marker.exists()
    assert attempt(tampered, "import os\nprint(sorted(p for p in os.listdir('/proc') "
                             "if p.isdigit()))") == "['1', '2']\n"


def test_a_unix_socket_on_the_host_gets_no_connection(tampered, tmp_path):
    path = str(tmp_path / "host.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(1)
    accepted: list[object] = []
    waiter = threading.Thread(target=lambda: _accept(listener, accepted))
    waiter.start()
    seen = attempt(tampered, "import socket\ns = socket.socket(socket.AF_UNIX)\n"
                             f"s.connect({path!r})")
    waiter.join()
    listener.close()
    assert accepted == [] and "Operation not permitted" in seen


def _accept(listener: socket.socket, accepted: list[object]) -> None:
    with contextlib.suppress(TimeoutError):
        accepted.append(listener.accept())


@pytest.mark.parametrize("family", ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET",
                                    "AF_UNIX"])
def test_no_socket_family_can_be_opened(tampered, family):
    seen = attempt(tampered, f"import socket\nsocket.socket(socket.{family})")
    assert "Operation not permitted" in seen


def test_socketpair_is_refused(tampered):
    assert "Operation not permitted" in attempt(tampered, "import socket\nsocket.socketpair()")


@pytest.mark.parametrize("code", [
    "import os\nos.kill(-1, 9)",
    "import os\nos.kill(1, 9)",
    "import os\nos.killpg(0, 9)",
    "import os, signal\nfor pid in range(1, 5000):\n    try:\n        os.kill(pid, 9)\n"
    "    except OSError:\n        pass",
])
def test_sibling_workers_and_the_host_survive_signals(tampered, code):
    with SandboxInterpreter() as sibling:
        sibling.execute("alive = 'yes'")
        attempt(tampered, code)
        assert sibling.execute("print(alive)") == "yes\n"
    assert os.getpid()  # the host process is the one running this assertion


def test_workers_have_uids_of_their_own():
    if os.getuid() != 0:
        pytest.skip("distinct worker uids need a root host (else a user namespace each)")
    with SandboxInterpreter() as one, SandboxInterpreter() as two:
        uid_one, uid_two = (int(r.execute("import os\nprint(os.getuid())")) for r in (one, two))
    assert uid_one != uid_two and 0 not in (uid_one, uid_two)


def test_pids_of_other_processes_are_invisible(tampered):
    seen = attempt(tampered, "import os\nprint(sorted(int(p) for p in os.listdir('/proc') "
                             "if p.isdigit()))")
    assert eval(seen) == [1, 2]  # bwrap's init and the worker itself


@pytest.mark.parametrize(("call", "args"), [
    ("ptrace", "16, 1, 0, 0"),  # PTRACE_ATTACH to pid 1
    ("mount", "b'none', b'/usr', b'tmpfs', 0, None"),
    ("unshare", "0x10000000"),  # CLONE_NEWUSER
    ("setns", "0, 0"),
    ("chroot", "b'/scratch'"),
    ("syscall", "321, 0, 0, 0"),  # bpf
])
def test_privileged_calls_fail_even_through_ctypes(tampered, call, args):
    seen = attempt(tampered, f"import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                             f"print(libc.{call}({args}), ctypes.get_errno())")
    result, err = seen.split()
    assert result == "-1" and int(err) in (1, 22, 38)  # EPERM (ENOSYS/EINVAL for odd calls)


def test_uid_cannot_be_regained(tampered):
    if os.getuid() != 0:
        pytest.skip("the worker changes uid only on a root host")
    assert "Operation not permitted" in attempt(tampered, "import os\nos.setuid(0)")


def test_rlimits_cannot_be_raised(tampered):
    seen = attempt(tampered, "import resource\n"
                             "resource.setrlimit(resource.RLIMIT_AS, (-1, -1))")
    assert "not allowed" in seen or "Errno" in seen or "ValueError" in seen
