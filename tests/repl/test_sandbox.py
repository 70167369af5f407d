"""Sandbox suite: hostile code must leave the host unharmed, and the REPL must go on.

One worker serves the whole module (its namespace persists); each case runs an attack, checks the
exact refusal the model sees and the host-side evidence (no file, canary intact, no connection),
then proves the REPL still answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading

import pytest
from dspy.primitives.code_interpreter import (
    CodeExecutionError,
    CodeInterpreterError,
    FinalOutput,
)

from rlm_dsl.runtime.repl.sandbox import SandboxInterpreter, SandboxLimits, isolation
from rlm_dsl.runtime.repl.snapshot import SqlSnapshot
from rlm_dsl.runtime.repl.tools import TableSource, readonly_sql
from rlm_dsl.runtime.store.store import Store

SECRET = "s3cr3t-host-token"


@pytest.fixture(scope="module")
def repl():
    os.environ["RLM_TEST_FAKE_SECRET"] = SECRET
    store = Store.open(None)
    store.con.execute("CREATE TABLE logs AS SELECT range AS id, 'line ' || range AS text "
                      "FROM range(100)")
    snapshot = SqlSnapshot(store)
    limits = SandboxLimits(timeout_s=20, cpu_s=1, memory_mb=512, scratch_mb=32,
                           max_output_chars=2000)
    interpreter = SandboxInterpreter(
        tools={"_context": TableSource(store, "logs"),
               "sql": lambda query: readonly_sql(snapshot, query)},
        limits=limits)
    try:
        interpreter.start()
        yield interpreter
    finally:
        interpreter.shutdown()
        snapshot.close()
        store.close()
        del os.environ["RLM_TEST_FAKE_SECRET"]


def refused(repl: SandboxInterpreter, code: str) -> str:
    """Run hostile ``code``; return the error text the model sees; check the REPL goes on."""
    with pytest.raises(CodeExecutionError) as caught:
        repl.execute(code)
    assert repl.execute("1 + 1") == "2\n"
    return str(caught.value)


def test_isolation_is_complete_on_this_machine(repl):
    wrap = isolation()
    if not wrap.strong:
        pytest.skip(f"needs bubblewrap and libseccomp: {wrap.warnings[0]}")
    assert wrap.kind == "bwrap" and wrap.quota
    assert repl.warnings == []


def test_scratch_space_is_capped(repl, tmp_path):
    if not isolation().quota:
        pytest.skip("no mount namespace here: the scratch dir has no size limit")
    error = refused(repl, "for i in range(100):\n"
                          "    open(f'fill{i}', 'wb').write(bytes(1024 * 1024))")
    assert "OSError (line 2): [Errno 28] No space left on device" in error
    repl.execute("import glob, os\nfor f in glob.glob('fill*'): os.remove(f)")


def test_write_to_etc_is_refused(repl):
    error = refused(repl, "open('/etc/rlm-sandbox-test', 'w').write('x')")
    assert "PermissionError (line 1): sandbox: writing '/etc/rlm-sandbox-test'" in error
    assert not os.path.exists("/etc/rlm-sandbox-test")


def test_write_outside_scratch_is_refused(repl, tmp_path):
    target = tmp_path / "escaped.txt"
    error = refused(repl, f"open({str(target)!r}, 'a').write('x')")
    assert f"sandbox: writing {str(target)!r} (only the scratch dir" in error
    assert not target.exists()


def test_scratch_dir_is_writable_and_persists(repl):
    repl.execute("open('notes.txt', 'w').write('kept')")
    assert repl.execute("print(open('notes.txt').read())") == "kept\n"


def test_symlink_out_of_scratch_cannot_be_written_through(repl):
    error = refused(repl, "import os\nos.symlink('/etc/hostname', 'link')\nopen('link', 'w')")
    assert "sandbox: writing 'link'" in error


def test_os_system_is_refused(repl, tmp_path):
    marker = tmp_path / "system-ran"
    error = refused(repl, f"import os\nos.system('touch {marker}')")
    assert "PermissionError (line 2): sandbox: os.system is not allowed" in error
    assert not marker.exists()


def test_subprocess_import_is_refused(repl):
    assert "ImportError (line 1): sandbox: import of 'subprocess' is not allowed" in refused(
        repl, "import subprocess")


def test_exec_and_spawn_are_refused(repl):
    assert "sandbox: os.exec is not allowed" in refused(
        repl, "import os\nos.execv('/bin/sh', ['sh'])")
    assert "sandbox: os.posix_spawn is not allowed" in refused(
        repl, "import os\nos.posix_spawn('/bin/true', ['true'], {})")


def test_connect_to_a_host_listener_never_arrives(repl):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    accepted: list[object] = []
    waiter = threading.Thread(target=lambda: _accept(listener, accepted))
    waiter.start()
    error = refused(repl, f"import socket\nsocket.create_connection(('127.0.0.1', {port}))")
    assert "sandbox: import of 'socket' is not allowed" in error
    error = refused(repl, "import sys\ns = sys.modules.get('_socket')\n"
                          f"s.socket().connect(('127.0.0.1', {port}))")
    assert "'NoneType' object has no attribute 'socket'" in error
    waiter.join()
    listener.close()
    assert accepted == []


def _accept(listener: socket.socket, accepted: list[object]) -> None:
    with contextlib.suppress(TimeoutError):
        accepted.append(listener.accept())


def test_ctypes_is_refused(repl):
    assert "import of 'ctypes' is not allowed" in refused(repl, "import ctypes")
    assert "import of '_ctypes' is not allowed" in refused(repl, "import _ctypes")


def test_host_environment_secrets_are_not_visible(repl):
    assert os.environ["RLM_TEST_FAKE_SECRET"] == SECRET
    shown = repl.execute("import os\nprint(sorted(os.environ))")
    assert shown == "['HOME', 'LANG', 'TMPDIR']\n"
    error = refused(repl, "import os\nprint(open(f'/proc/{os.getppid()}/environ').read())")
    assert "sandbox: reading '/proc/" in error and SECRET not in error


def test_host_files_cannot_be_read(repl):
    assert "sandbox: reading '/etc/passwd' is not allowed" in refused(
        repl, "open('/etc/passwd').read()")


def test_fork_bomb_is_refused(repl):
    error = refused(repl, "import os\nwhile True:\n    os.fork()")
    assert "PermissionError (line 3): sandbox: os.fork is not allowed" in error


def test_memory_bomb_is_a_memory_error(repl):
    assert "MemoryError (line 1)" in refused(repl, "hog = bytearray(4 * 1024 ** 3)")
    # bytes(n) is calloc'd: it takes address space without spending CPU on zeroing, so the
    # memory limit is reached long before the 1 s CPU limit even on a busy machine.
    assert "MemoryError" in refused(repl, "hog = []\nwhile True:\n    hog.append(bytes(10**7))")


def test_infinite_loop_hits_the_cpu_limit_and_keeps_the_namespace(repl):
    repl.execute("survivor = 7")
    error = refused(repl, "while True:\n    pass")
    assert "TimeoutError (line 1): execution used more than 1 s of CPU time" in error
    assert repl.execute("survivor") == "7\n"


def test_sleeping_past_the_wall_clock_restarts_the_worker():
    with SandboxInterpreter(limits=SandboxLimits(timeout_s=1.5)) as repl:
        repl.execute("doomed = 1")
        error = refused(repl, "import time\ntime.sleep(60)")
        assert error.startswith("the REPL exceeded its wall-clock limit of 1.5 s (host tool "
                                "calls included). The REPL process was restarted: every variable "
                                "you defined is gone")
        assert "NameError" in refused(repl, "doomed")
        assert repl.restarts == 1


def test_too_many_restarts_end_the_session():
    message = (r"the REPL process died \(exit status 3\); the REPL was restarted 0 times "
               "already, giving up")
    with SandboxInterpreter(max_restarts=0) as repl, pytest.raises(CodeInterpreterError,
                                                                    match=message):
        repl.execute("import os\nos._exit(3)")


def test_a_worker_that_exits_is_restarted(repl):
    repl.execute("lost = 1")
    error = refused(repl, "import os\nos._exit(3)")
    assert error.startswith("the REPL process died (exit status 3). The REPL process was "
                            "restarted")
    repl.restarts = 0


def test_rmtree_outside_scratch_is_refused(repl, tmp_path):
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("alive")
    error = refused(repl, f"import shutil\nshutil.rmtree({str(canary)!r})")
    assert f"sandbox: shutil.rmtree on {str(canary)!r} (outside the scratch dir)" in error
    assert (canary / "keep.txt").read_text() == "alive"


def test_remove_and_rename_outside_scratch_are_refused(repl, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    assert "sandbox: os.remove on" in refused(repl, f"import os\nos.remove({str(victim)!r})")
    assert "sandbox: os.rename on" in refused(
        repl, f"import os\nos.rename({str(victim)!r}, 'stolen.txt')")
    assert victim.read_text() == "mine"


def test_duckdb_copy_to_is_refused(repl, tmp_path):
    target = tmp_path / "dump.csv"
    error = refused(repl, f"sql(\"COPY logs TO '{target}'\")")
    assert "sql() is read-only: COPY statements are refused" in error
    assert not target.exists()


def test_duckdb_attach_and_install_are_refused(repl, tmp_path):
    assert "ATTACH statements are refused" in refused(
        repl, f"sql(\"ATTACH '{tmp_path / 'x.db'}' AS x\")")
    assert "LOAD statements are refused" in refused(repl, "sql('INSTALL httpfs')")
    assert not (tmp_path / "x.db").exists()


def test_duckdb_file_readers_are_refused(repl):
    assert "table function read_csv() is refused" in refused(
        repl, "sql(\"SELECT * FROM read_csv('/etc/passwd')\")")
    assert "unknown table '/etc/passwd'" in refused(repl, "sql(\"SELECT * FROM '/etc/passwd'\")")
    assert "function getenv() is refused" in refused(repl, "sql(\"SELECT getenv('HOME')\")")


def test_builtins_tampering_lasts_one_execution_and_spares_the_worker(repl):
    assert "'NoneType' object is not callable" in refused(
        repl, "import builtins\nbuiltins.__import__ = None\nbuiltins.open = None\n"
              "__builtins__['__import__'] = None\nimport json")
    assert repl.execute("import json\nprint(json.dumps(sql('SELECT count(*) AS n FROM logs')))"
                        ) == '[{"n": 100}]\n'


def test_sys_modules_tricks_do_not_unlock_anything(repl):
    code = ("import sys\nsys.modules['json'] = None\nsys.modules.pop('socket', None)\n"
            "import socket")
    assert "import of 'socket' is not allowed" in refused(repl, code)
    assert "sandbox: os.system is not allowed" in refused(
        repl, "import sys\nsys.modules['os'].system('true')")


def test_limits_and_hooks_cannot_be_changed(repl):
    assert "sandbox: resource.setrlimit is not allowed" in refused(
        repl, "import sys\nr = sys.modules['resource']\nr.setrlimit(r.RLIMIT_AS, (-1, -1))")
    assert "sandbox: sys.settrace is not allowed" in refused(
        repl, "import sys\nsys.settrace(lambda *a: None)")
    assert "import of 'gc' is not allowed" in refused(repl, "import gc")


def test_killing_the_host_is_refused(repl):
    assert "sandbox: os.kill is not allowed" in refused(
        repl, "import os\nos.kill(os.getppid(), 9)")


def test_very_large_output_is_truncated_with_a_note(repl):
    output = repl.execute("print('x' * 1_000_000)")
    assert output.startswith("x" * 2000 + "\n[output truncated: 1,000,001 characters printed, "
                             "first 2,000 shown")


def test_writes_to_the_real_stdout_do_not_break_the_protocol(repl):
    assert repl.execute("import os\nos.write(1, b'garbage\\n')\nprint('fine')") == "fine\n"


def test_submit_survives_a_bare_except(repl):
    result = repl.execute("try:\n    SUBMIT('v')\nexcept Exception:\n    print('caught')")
    assert result == FinalOutput({"output": "v"})


def test_syntax_errors_are_reported_as_such(repl):
    with pytest.raises(SyntaxError, match="SyntaxError: invalid syntax"):
        repl.execute("def (:")


def test_context_handle_pages_through_the_table(repl):
    out = repl.execute(
        "print(len(context), context.n_chars, context.columns)\n"
        "print(context[0], context[-1]['text'], [r['id'] for r in context[10:13]])\n"
        "print(repr(context.lines(98, 200)))\n"
        "print([c.count(chr(10)) + 1 for c in context.chunks(40)])\n"
        "print(context.search(r'line 4\\d$', limit=3))\n"
        "print(sum(1 for _ in context))")
    assert out.splitlines() == [
        "100 690 ['id', 'text']",
        "{'id': 0, 'text': 'line 0'} line 99 [10, 11, 12]",
        "'line 98\\nline 99'",
        "[40, 40, 20]",
        "[{'id': 40, 'text': 'line 40'}, {'id': 41, 'text': 'line 41'}, "
        "{'id': 42, 'text': 'line 42'}]",
        "100",
    ]


def test_tools_take_keywords_as_well_as_positions(repl):
    out = repl.execute("print(sql(query='SELECT count(*) AS n FROM logs'))\n"
                       "print(context.search(pattern='line 7$', limit=1))")
    assert out == "[{'n': 100}]\n[{'id': 7, 'text': 'line 7'}]\n"
    assert "takes 1 value(s): output" in refused(repl, "SUBMIT(1, 2)")
    assert repl.execute("SUBMIT(output=3)") == FinalOutput({"output": 3})


def test_a_worker_that_cannot_start_is_a_terminal_error(monkeypatch, tmp_path):
    from rlm_dsl.runtime.repl import sandbox

    monkeypatch.setattr(sandbox, "WORKER", tmp_path / "missing_worker.py")
    with pytest.raises(CodeInterpreterError, match=r"the REPL worker could not start: .*No such "
                       r"file .*missing_worker\.py"):
        SandboxInterpreter().start()
