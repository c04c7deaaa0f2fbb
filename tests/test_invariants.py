"""The invariants (README.md, "Invariants") that the foundation owns, one section each.

1. Pidfd from birth.   3. Cost independent of the caller's memory.
4. No stolen statuses. 5. Nothing leaks.   6. Bad input: typed error, nothing started.
(2 and 7 belong to the user-namespace helper and the state files.)
"""

from __future__ import annotations

import ast
import asyncio
import errno
import fcntl
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Set, Tuple

import pytest

import pidsafe
from pidsafe.process import _process, _wait

from pidsafe import _sys

from conftest import (children, drop_running_child, is_cloexec, open_fds, spawn_and_wait,
                      started_cat, state, strace_one_spawn, wait_until)

PIPE = subprocess.PIPE
PY = sys.executable
ROOT = pathlib.Path(__file__).resolve().parent.parent


def abandon_a_child_then_spawn() -> None:
    """Drop a running child's handle (ResourceWarning); the next spawn reaps it."""
    pid = drop_running_child()
    spawn_and_wait()
    assert pid not in children()


# == 1. Pidfd from birth ========================================================

def test_pidfd_names_the_child_as_soon_as_spawn_returns() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        fd = p.fileno()
        with open(f"/proc/self/fdinfo/{fd}") as f:
            info = dict(line.split(":", 1) for line in f)
        assert int(info["Pid"]) == p.pid
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
        assert is_cloexec(fd)
        p.kill()


# What no library code may call on a process it owns: the pid-based APIs.
_FORBIDDEN_PY = {("os", n) for n in ("kill", "killpg", "waitpid", "wait", "wait3", "wait4",
                                     "waitid")} | {("signal", "pthread_kill")}
# Documented exceptions: (file, call) -> why.
_EXEMPT_PY = {
    ("_features.py", "os.waitid"): "feature probe: reaps its own exit_signal-0 probe "
                                   "child by pid only on kernels without waitid(P_PIDFD)",
}


def _forbidden_calls(path: pathlib.Path) -> List[Tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "signal"):
            for alias in node.names:
                if (node.module, alias.name) in _FORBIDDEN_PY:
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            value = node.func.value
            if isinstance(value, ast.Name) and (value.id, node.func.attr) in _FORBIDDEN_PY:
                if node.func.attr == "waitid" and _mentions(node, "WNOWAIT"):
                    continue  # a peek: reaps nothing, so it steals no status
                found.append((node.lineno, f"{value.id}.{node.func.attr}"))
    return found


def _mentions(call: ast.Call, name: str) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == name
               or isinstance(n, ast.Name) and n.id == name
               for arg in [*call.args, *(k.value for k in call.keywords)]
               for n in ast.walk(arg))


def test_no_library_code_signals_or_waits_by_pid_python() -> None:
    files = sorted((ROOT / "pidsafe").rglob("*.py"))
    assert len(files) >= 8
    offenders, used_exemptions = [], set()
    for path in files:
        for line, call in _forbidden_calls(path):
            if (path.name, call) in _EXEMPT_PY:
                used_exemptions.add((path.name, call))
            else:
                offenders.append(f"{path.name}:{line}: {call}")
    assert not offenders, (
        "pid-based signal/wait in library code (use the pidfd; if it truly cannot, "
        "add a documented entry to _EXEMPT_PY):\n" + "\n".join(offenders))
    # An exemption that no longer matches anything must go.
    assert used_exemptions == set(_EXEMPT_PY)


def test_the_pid_api_scanner_finds_what_it_should(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "sample.py"
    src.write_text("import os, signal\nfrom os import waitpid\n"
                   "# os.kill(1, 9) in a comment is fine\n"
                   "def f(pid):\n    \"os.waitpid(pid) in a docstring too\"\n"
                   "    os.kill(pid, 9)\n    signal.pthread_kill(1, 2)\n"
                   "    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)\n"
                   "    os.waitid(os.P_PID, pid, os.WEXITED)\n")
    assert sorted(_forbidden_calls(src)) == [(2, "from os import waitpid"), (6, "os.kill"),
                                             (7, "signal.pthread_kill"), (9, "os.waitid")]


def _strip_c(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def test_no_library_code_signals_or_waits_by_pid_c() -> None:
    offenders = []
    for path in sorted((ROOT / "csrc").rglob("*.c")):
        code = _strip_c(path.read_text())
        for m in re.finditer(r"\b(kill|killpg|tgkill|tkill|waitpid|wait|wait3|wait4|waitid)"
                             r"\s*\(|\bSYS_(kill|tgkill|tkill|wait4|waitid)\b[^;]*", code):
            text = m.group(0)
            if text.startswith("SYS_waitid") and "P_PIDFD" in text:
                continue  # waitid(P_PIDFD, pidfd): the one allowed way to reap
            offenders.append(f"{path.relative_to(ROOT)}: {text.strip()}")
    assert not offenders, offenders


@pytest.fixture
def no_pid_apis(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every pid-based signal/wait API fail the test if anyone calls it."""
    def forbidden(name: str) -> Callable[..., Any]:
        def call(*a: Any, **kw: Any) -> Any:
            raise AssertionError(f"pidsafe called {name}{a}")
        return call

    for mod, name in _FORBIDDEN_PY:
        target = os if mod == "os" else signal
        if hasattr(target, name):
            monkeypatch.setattr(target, name, forbidden(f"{mod}.{name}"))


def test_whole_lifecycle_uses_only_the_pidfd(no_pid_apis: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # spawn() must get its pidfd from clone3, never by opening the pid.
    def no_pidfd_open(*a: Any) -> Any:
        raise AssertionError("spawn() opened a pidfd by pid")

    real_pidfd_open = _sys.pidfd_open
    monkeypatch.setattr(_sys, "pidfd_open", no_pidfd_open)
    with pidsafe.spawn(["sh", "-c", "exit 3"]) as p:
        assert p.wait() == 3
    with pidsafe.spawn(["sleep", "30"]) as p:
        assert p.poll() is None and p.is_alive()
        with pytest.raises(pidsafe.TimeoutExpired):
            p.wait(timeout=0.01)
        p.terminate()
        assert p.wait(timeout=10) == -signal.SIGTERM
        p.kill()  # after the reap: nothing
    with pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE) as p:
        assert p.communicate(b"x", timeout=10) == (b"x", None)
    with pidsafe.spawn(["sh", "-c", "exit 4"]) as p:
        assert asyncio.run(p.wait_async()) == 4
    with pytest.raises(FileNotFoundError):
        pidsafe.spawn(["pidsafe-no-such-program"])
    abandon_a_child_then_spawn()
    monkeypatch.setattr(_sys, "pidfd_open", real_pidfd_open)
    with pidsafe.spawn(["sleep", "30"]) as p, pidsafe.Process.from_pid(p.pid) as q:
        q.kill()
        assert q.wait(timeout=10) == -signal.SIGKILL
        assert p.wait(timeout=10) == -signal.SIGKILL  # from the kernel's exit info


# == 3. Cost independent of the caller's memory =====================================

# The cost itself is measured by benchmarks/bench_spawn.py (1 GiB heap / empty
# heap, against os.fork): a benchmark, not a timed test.  What a test can
# prove without a clock is the reason the cost stays flat: the child shares
# our memory (CLONE_VM) and we sleep until it has exec'd (CLONE_VFORK).

def test_spawn_clones_with_clone_vm_and_clone_vfork(tmp_path: pathlib.Path) -> None:
    text, flags, child = strace_one_spawn(tmp_path, "clone3,execve")
    assert {"CLONE_VM", "CLONE_VFORK", "CLONE_PIDFD"} <= set(flags), text
    # That child is the program: its last execve() (a PATH search) succeeded.
    tried = re.findall(rf"^{child}\s+execve\(\"([^\"]+)\"", text, re.M)
    assert tried and os.path.basename(tried[-1]) == "true", text
    assert re.search(rf"^{child}\s+(<\.\.\. execve resumed>|execve\(.*)\) += 0$", text, re.M), text


# == 4. Exactly one reaper per child, no stolen statuses ================================

# Children start with exit_signal 0, but execve() resets it to SIGCHLD: once
# the program runs, a foreign waitpid(-1) can reap it.  The status must
# survive that (the kernel keeps it on the pidfd: PIDFD_INFO_EXIT).
needs_exit_info = pytest.mark.skipif(
    not pidsafe.features().pidfd_info_exit,
    reason="no PIDFD_INFO_EXIT (Linux 6.15): a stolen status cannot be recovered")


def test_exec_resets_exit_signal_so_a_foreign_waitpid_can_reap() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 7"]) as p:
        wait_until(lambda: state(p.pid) == "Z", "the child to exit")
        pid, status = os.waitpid(-1, os.WNOHANG)   # the thief
        assert (pid, os.waitstatus_to_exitcode(status)) == (p.pid, 7)
        if pidsafe.features().pidfd_info_exit:
            assert p.wait() == 7
            assert p.poll() == 7
        else:  # pragma: no cover - older kernels
            with pytest.raises(pidsafe.UnsupportedError, match="PIDFD_INFO_EXIT"):
                p.wait()


@pytest.mark.parametrize("code", [0, 3, -signal.SIGKILL])
@needs_exit_info
def test_status_reaped_by_a_foreign_waitpid_is_right(code: int) -> None:
    prog = f"kill -KILL $$" if code < 0 else f"exit {code}"
    with pidsafe.spawn(["sh", "-c", prog]) as p:
        wait_until(lambda: state(p.pid) == "Z", "the child to exit")
        assert os.waitpid(p.pid, 0)[0] == p.pid   # the thief, by pid this time
        assert p.poll() == code
        p.kill()  # gone: nothing happens


@needs_exit_info
def test_reaper_thread_and_sigchld_handler_do_not_make_statuses_wrong() -> None:
    stop = threading.Event()
    reaped: List[int] = []

    def reaper() -> None:  # what a careless library does in its own thread
        while not stop.is_set():
            try:
                # Sleep until some child has exited, then reap whatever is there.
                os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if pid:
                    reaped.append(pid)
            except ChildProcessError:
                pass

    def on_sigchld(signum: int, frame: Any) -> None:
        try:
            while True:
                pid, _ = os.waitpid(-1, os.WNOHANG)
                if not pid:
                    break
                reaped.append(pid)
        except ChildProcessError:
            pass

    old = signal.signal(signal.SIGCHLD, on_sigchld)
    t = threading.Thread(target=reaper)
    t.start()
    try:
        procs = [pidsafe.spawn(["sh", "-c", f"exit {i}"]) for i in range(1, 21)]
        victim = subprocess.Popen(["true"])
        for p in procs:
            wait_until(lambda: state(p.pid) in ("Z", ""), "the child to exit")
        wait_until(lambda: victim.pid in reaped, "the foreign reaper to work")
        try:
            for i, p in enumerate(procs, 1):
                assert p.wait() == i
        finally:
            for p in procs:
                p.close()
        # The reapers did take pidsafe children: the statuses above came back
        # through the pidfds.
        assert set(reaped) & {p.pid for p in procs}
        victim.wait()  # 0: its real status went to the foreign reaper
    finally:
        stop.set()
        # Wake the thread with an exit that only it will reap.  One that we
        # reap first may not wake it, and then, if this process has another
        # child that lives on (a session fixture's daemon), its waitid(P_ALL)
        # blocks for ever instead of failing with ECHILD.
        signal.signal(signal.SIGCHLD, old)
        waker = subprocess.Popen(["true"])
        t.join()
        waker.wait()


@needs_exit_info
def test_sigchld_ignored_keeps_pidsafe_statuses() -> None:
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        with pidsafe.spawn(["sh", "-c", "exit 5"]) as p:
            wait_until(lambda: state(p.pid) in ("Z", ""), "the child to exit")
            assert p.wait() == 5
    finally:
        signal.signal(signal.SIGCHLD, old)


def test_subprocess_return_codes_stay_right_alongside_pidsafe() -> None:
    popen = subprocess.Popen(["sh", "-c", "exit 5"])
    wait_until(lambda: state(popen.pid) == "Z", "the Popen child to exit")
    # Everything pidsafe does to reap must leave the Popen zombie alone.
    for i in range(5):
        with pidsafe.spawn(["sh", "-c", f"exit {i}"]) as p:
            assert p.wait() == i
    abandon_a_child_then_spawn()
    assert popen.wait() == 5
    # ... and the other way round.
    with pidsafe.spawn(["sh", "-c", "exit 6"]) as p:
        popen = subprocess.Popen(["sh", "-c", "exit 8"])
        assert popen.wait() == 8
        assert p.wait() == 6


def test_exit_before_spawn_returns_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    real_spawn = _sys.spawn

    def spawn_then_let_it_exit(*a: Any, **kw: Any) -> Tuple[int, int]:
        pid, pidfd = real_spawn(*a, **kw)
        wait_until(lambda: state(pid) == "Z", "the child to exit inside spawn()")
        return pid, pidfd

    monkeypatch.setattr(_sys, "spawn", spawn_then_let_it_exit)
    with pidsafe.spawn(["sh", "-c", "exit 42"]) as p:
        assert p.poll() == 42
    with pidsafe.spawn(["sh", "-c", "echo gone; exit 43"], stdout=PIPE) as p:
        assert p.communicate() == (b"gone\n", None)
        assert p.returncode == 43


@needs_exit_info
def test_status_stolen_with_wall_is_recovered_from_the_pidfd() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 9"]) as p:
        wait_until(lambda: state(p.pid) == "Z", "the child to exit")
        # A reaper that does use __WALL (not something we can prevent).
        res = os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT | _sys.WALL)
        assert res is not None and res.si_status == 9   # WNOWAIT: still there
        res = os.waitid(os.P_PID, p.pid, os.WEXITED | _sys.WALL)
        assert res is not None and res.si_status == 9
        assert p.poll() == 9
        p.kill()  # the process is gone: nothing happens


def _steal(p: pidsafe.Process, code: int) -> None:
    wait_until(lambda: state(p.pid) == "Z", "the child to exit")
    res = os.waitid(os.P_PID, p.pid, os.WEXITED | _sys.WALL)   # a foreign reaper
    assert res is not None and res.si_status == code


@needs_exit_info
@pytest.mark.parametrize("meanwhile", ["nothing", "ESRCH"])
def test_status_filed_late_after_a_steal_is_still_recovered(
        monkeypatch: pytest.MonkeyPatch, meanwhile: str) -> None:
    """A foreign waiter marks the zombie dead (our waitid: ECHILD) a moment
    before the kernel files the status on the pidfd.  Stand in for that
    moment: the first few PIDFD_INFO_EXIT reads find nothing yet, or fail
    with ESRCH as Linux 6.18 does then (about 1 foreign reap in 100)."""
    real = _sys.pidfd_exit_info
    misses = [4]

    def late(fd: int) -> Any:
        if misses[0] > 0:
            misses[0] -= 1
            if meanwhile == "ESRCH":
                raise _sys.make_oserror(errno.ESRCH, "ioctl(PIDFD_GET_INFO)")
            return None
        return real(fd)

    with pidsafe.spawn(["sh", "-c", "exit 11"]) as p:
        _steal(p, 11)
        monkeypatch.setattr(_sys, "pidfd_exit_info", late)
        assert p.poll() is None          # not known yet: not an error
        assert p.wait(timeout=5) == 11
        assert misses == [0]


@needs_exit_info
def test_status_never_filed_after_a_steal_is_reported_lost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wait, "_STOLEN_GRACE", 0.2)
    with pidsafe.spawn(["sh", "-c", "exit 12"]) as p:
        _steal(p, 12)
        monkeypatch.setattr(_sys, "pidfd_exit_info", lambda fd: None)
        t0 = time.monotonic()
        with pytest.raises(ChildProcessError, match="kept no exit status"):
            p.wait(timeout=5)
        assert time.monotonic() - t0 >= 0.2   # the grace was given
        p.close()


# == 5. Nothing leaks ===========================================================

def child_fds(pid: int) -> Dict[int, str]:
    out = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        out[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return out


@pytest.fixture
def fd_zoo() -> Iterator[Dict[str, int]]:
    """Our fds of every kind: cloexec, inheritable, high, next to passed ones."""
    made: Dict[str, int] = {}
    r, w = os.pipe()
    made["cloexec"] = r
    made["inheritable"] = w
    os.set_inheritable(w, True)
    made["pass_low"] = os.dup(r)
    made["between"] = fcntl.fcntl(r, fcntl.F_DUPFD, 40)          # inheritable
    made["pass_high"] = fcntl.fcntl(r, fcntl.F_DUPFD_CLOEXEC, 60)
    made["above"] = fcntl.fcntl(r, fcntl.F_DUPFD, 300)           # inheritable
    try:
        yield made
    finally:
        for fd in made.values():
            os.close(fd)


def test_childs_fd_table_is_stdio_and_pass_fds_only(fd_zoo: Dict[str, int]) -> None:
    passed = (fd_zoo["pass_low"], fd_zoo["pass_high"])
    with started_cat(pass_fds=passed, stderr=subprocess.DEVNULL) as p:
        fds = child_fds(p.pid)
        p.communicate(timeout=10)
    assert set(fds) == {0, 1, 2, *passed}
    for fd in passed:
        assert fds[fd] == os.readlink(f"/proc/self/fd/{fd}")


def test_close_fds_false_adds_only_our_inheritable_fds(fd_zoo: Dict[str, int]) -> None:
    passed = (fd_zoo["pass_high"],)
    with started_cat(pass_fds=passed, close_fds=False) as p:
        fds = child_fds(p.pid)
        p.communicate(timeout=10)
    inheritable = {fd for fd in open_fds() if fd > 2 and not is_cloexec(fd)}
    assert {fd_zoo["inheritable"], fd_zoo["between"], fd_zoo["above"]} <= inheritable
    # Nothing of pidsafe's own (pipes, error pipe, pidfds) gets through.
    assert set(fds) == {0, 1, 2, *passed} | inheritable


def test_every_fd_pidsafe_holds_at_clone_time_is_cloexec(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: pathlib.Path) -> None:
    real_spawn = _sys.spawn
    seen: List[Dict[int, bool]] = []
    before: Set[int] = set()

    def checking_spawn(*a: Any, **kw: Any) -> Tuple[int, int]:
        # Another thread's fds could appear here too, but tests run alone.
        seen.append({fd: is_cloexec(fd) for fd in set(open_fds()) - before})
        return real_spawn(*a, **kw)

    monkeypatch.setattr(_sys, "spawn", checking_spawn)
    cases: List[Dict[str, Any]] = [
        dict(stdin=PIPE, stdout=PIPE, stderr=PIPE),
        dict(stdin=subprocess.DEVNULL, stdout=PIPE, stderr=subprocess.STDOUT),
        dict(stdout=2, stderr=1),
        dict(stdin=0, stdout=0),
    ]
    for kw in cases:
        before = set(open_fds())
        with pidsafe.spawn(["true"], **kw) as p:
            p.communicate(timeout=10)
        with pytest.raises(FileNotFoundError):
            pidsafe.spawn(["true"], cwd=tmp_path / "missing", **kw)
    assert len(seen) == 2 * len(cases)
    assert any(seen)   # pipes, /dev/null (with no pipe asked for, there may be none)
    for fds in seen:
        assert all(fds.values()), f"fds without FD_CLOEXEC at clone time: {fds}"


def test_every_fd_pidsafe_hands_out_is_cloexec() -> None:
    before = set(open_fds())

    def new_fds_are_cloexec() -> None:
        new = set(open_fds()) - before
        assert new and all(is_cloexec(fd) for fd in new), new

    with pidsafe.spawn(["sleep", "30"], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
        new_fds_are_cloexec()
        with pidsafe.Process.from_pid(p.pid) as q:
            new_fds_are_cloexec()

            async def main() -> None:
                task = asyncio.create_task(q.wait_async())
                await asyncio.sleep(0)  # one loop step: wait_async holds a dup now
                new_fds_are_cloexec()
                p.kill()
                assert await task == -signal.SIGKILL

            asyncio.run(main())
        assert p.communicate(timeout=10) == (b"", b"")


@pytest.mark.parametrize("failure", ["exec", "chdir", "clone", "after-clone"])
def test_error_paths_leave_no_fd_and_no_child(monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: pathlib.Path, failure: str) -> None:
    kw: Dict[str, Any] = dict(stdin=PIPE, stdout=PIPE, stderr=subprocess.STDOUT)
    args = ["sleep", "30"]
    expected: type = OSError
    if failure == "exec":
        args = ["pidsafe-no-such-program"]
        expected = FileNotFoundError
    elif failure == "chdir":
        kw["cwd"] = tmp_path / "missing"
        expected = FileNotFoundError
    elif failure == "clone":
        monkeypatch.setattr(_sys, "spawn", lambda *a, **k: (_ for _ in ()).throw(
            _sys.make_oserror(errno.ENOMEM, "clone3")))
        expected = OSError
    else:
        monkeypatch.setattr(_process.Process, "__init__", lambda *a, **k: (_ for _ in ()).throw(
            KeyboardInterrupt()))
        kw = dict(stdout=subprocess.DEVNULL)
        expected = KeyboardInterrupt
    fds, kids = open_fds(), children()
    with pytest.raises(expected):
        pidsafe.spawn(args, **kw)
    assert open_fds() == fds
    assert children() == kids


# == 6. Bad input: a typed error naming field and value; nothing started =============

def test_closed_fd_numbers_are_refused_before_spawn_reuses_them() -> None:
    # The numbers of a just-closed pipe are exactly what spawn's own pipes get
    # next: passing them must not hand the child our ends of its stdout pipe.
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    for kw in (dict(pass_fds=[r, w]), dict(stdin=r), dict(stderr=w)):
        with pytest.raises(OSError) as info:
            pidsafe.spawn(["true"], stdout=PIPE, **kw)
        assert info.value.errno == errno.EBADF
        assert str(r) in str(info.value) or str(w) in str(info.value)


def _closed_fd() -> int:
    # A number far above anything in use, so that nothing reuses it meanwhile.
    return 987


class _ClosedFile:
    def fileno(self) -> int:
        raise ValueError("I/O operation on closed file")


BAD_INPUTS: List[Tuple[str, Dict[str, Any], type, Tuple[str, ...]]] = [
    ("empty args", dict(args=[]), ValueError, ("args",)),
    ("NUL in args", dict(args=["echo", "a\0b"]), ValueError, ("args[1]", repr("a\0b"))),
    ("int in args", dict(args=["echo", 3]), TypeError, ("args[1]", "3")),
    ("NUL in program", dict(args=["ec\0ho"]), ValueError, ("args[0]",)),
    ("NUL in executable", dict(executable="/bin/sh\0"), ValueError, ("executable",)),
    ("NUL in cwd", dict(cwd="/tmp\0x"), ValueError, ("cwd", repr("/tmp\0x"))),
    ("cwd of a wrong type", dict(cwd=3.5), TypeError, ("cwd", "3.5")),
    ("'=' in env key", dict(env={"A=B": "1"}), ValueError, ("environment", "'A=B'")),
    ("empty env key", dict(env={"": "1"}), ValueError, ("environment", "''")),
    ("NUL in env key", dict(env={"A\0": "1"}), ValueError, ("env key", repr("A\0"))),
    ("NUL in env value", dict(env={"A": "x\0"}), ValueError, ("env['A']", repr("x\0"))),
    ("int env key", dict(env={1: "x"}), TypeError, ("env key", "1")),
    ("None env value", dict(env={"A": None}), TypeError, ("env['A']", "None")),
    ("negative pass_fd", dict(pass_fds=[-1]), ValueError, ("pass_fds", "-1")),
    ("str pass_fd", dict(pass_fds=["3"]), ValueError, ("pass_fds", "'3'")),
    ("bool pass_fd", dict(pass_fds=[True]), ValueError, ("pass_fds", "True")),
    ("closed pass_fd", dict(pass_fds=[_closed_fd()]), OSError, ("pass_fds", str(_closed_fd()))),
    ("pdeathsig 0", dict(pdeathsig=0), ValueError, ("pdeathsig", "0")),
    ("pdeathsig too big", dict(pdeathsig=999), ValueError, ("pdeathsig", "999")),
    ("pdeathsig negative", dict(pdeathsig=-9), ValueError, ("pdeathsig", "-9")),
    ("pdeathsig str", dict(pdeathsig="KILL"), TypeError, ("pdeathsig", "'KILL'")),
    ("pdeathsig float", dict(pdeathsig=9.5), TypeError, ("pdeathsig", "9.5")),
    ("pdeathsig bool", dict(pdeathsig=True), TypeError, ("pdeathsig", "True")),
    ("stdin object", dict(stdin=object()), TypeError, ("stdin", "object")),
    ("stdout negative", dict(stdout=-7), ValueError, ("stdout", "-7")),
    ("stdout bool", dict(stdout=True), TypeError, ("stdout",)),
    ("stdout closed fd", dict(stdout=_closed_fd()), OSError, ("stdout", str(_closed_fd()))),
    ("stdin closed file", dict(stdin=_ClosedFile()), ValueError, ("stdin", "closed")),
    ("stdout=STDOUT", dict(stdout=subprocess.STDOUT), ValueError, ("STDOUT",)),
    ("stdin=STDOUT", dict(stdin=subprocess.STDOUT), ValueError, ("STDOUT",)),
    ("bufsize str", dict(stdout=PIPE, bufsize="big"), TypeError, ("bufsize", "'big'")),
]


@pytest.mark.parametrize("kw,exc_type,needles",
                         [pytest.param(kw, e, n, id=name) for name, kw, e, n in BAD_INPUTS])
def test_bad_input_is_a_typed_error_and_starts_nothing(
        monkeypatch: pytest.MonkeyPatch, kw: Dict[str, Any], exc_type: type,
        needles: Tuple[str, ...]) -> None:
    clones: List[Any] = []
    real_spawn = _sys.spawn
    monkeypatch.setattr(_sys, "spawn", lambda *a, **k: clones.append(a) or real_spawn(*a, **k))
    kw = dict(kw)
    args = kw.pop("args", ["true"])
    assert not any(_closed_fd() == fd for fd in open_fds())
    fds, kids = open_fds(), children()
    with pytest.raises(exc_type) as info:
        pidsafe.spawn(args, **kw)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    assert not clones, "a child was started for bad input"
    assert open_fds() == fds and children() == kids
