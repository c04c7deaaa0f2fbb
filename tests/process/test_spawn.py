"""pidsafe.spawn(): arguments, stdio, fds, sessions, signals, and every failure path.

The invariants themselves (pidfd from birth, no leaks, typed errors, ...) are
proven in test_invariants.py; this file covers what spawn() promises to do.
"""

from __future__ import annotations

import errno
import io
import itertools
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

import pidsafe
from pidsafe.process import _abandoned, _spawn, _start, _stdio

from pidsafe import _sys
from pidsafe._sys import _spawn as sys_spawn

from conftest import (Alarm, RandomAlarms, assert_nothing_left, children, leak_check, open_fds,
                      pending_signals, settle_abandoned, started_cat, strace_one_spawn)
from faults import Faults, Interrupt

PIPE = subprocess.PIPE
PY = sys.executable


def run(args: Any, **kw: Any) -> Tuple[int, bytes]:
    """Spawn with stdout piped; (returncode, stdout)."""
    with pidsafe.spawn(args, stdout=PIPE, **kw) as p:
        out, _ = p.communicate(timeout=30)
    assert p.returncode is not None
    return p.returncode, out or b""


def make_script(path: pathlib.Path, body: str, mode: int = 0o755) -> pathlib.Path:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(mode)
    return path


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def sigmask(field: str, pid: int) -> set[int]:
    """The signal numbers in /proc/PID/status's SigIgn/SigBlk/SigCgt field."""
    bits = int(proc_status(pid)[field], 16)
    return {n for n in range(1, 65) if bits & (1 << (n - 1))}


# -- exit codes and arguments ------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 3, 126, 127, 255])
def test_exit_status_is_returned(code: int) -> None:
    with pidsafe.spawn(["sh", "-c", f"exit {code}"]) as p:
        assert p.wait(timeout=10) == code
    assert p.returncode == code


def test_args_accept_str_bytes_and_pathlike() -> None:
    assert run(["echo", b"bytes", pathlib.Path("path"), "str"]) == (0, b"bytes path str\n")
    # A lone str/bytes/path is the program, with no arguments (like Popen).
    assert run("true") == (0, b"")
    assert run(b"/bin/true") == (0, b"")
    assert run(pathlib.Path("/bin/true")) == (0, b"")
    assert run(("echo", "tuple")) == (0, b"tuple\n")


def test_argv_is_passed_verbatim() -> None:
    args = ["printf", "%s|", "", " spaced ", "*", "$HOME", "\u00e9", b"\xff"]
    code, out = run(args)
    assert code == 0
    assert out == "| spaced |*|$HOME|\u00e9|".encode() + b"\xff|"


def test_executable_overrides_program_but_not_argv0() -> None:
    assert run(["my-name", "-c", 'echo "$0"'], executable="/bin/sh") == (0, b"my-name\n")
    # executable is searched in PATH too, like Popen's.
    assert run(["other-name", "-c", 'echo "$0"'], executable="sh") == (0, b"other-name\n")


def test_env_replaces_the_environment() -> None:
    assert run(["/usr/bin/env"], env={"FOO": "bar", "EMPTY": ""}) == (0, b"FOO=bar\nEMPTY=\n")
    assert run(["/usr/bin/env"], env={b"RAW": b"\xff"}) == (0, b"RAW=\xff\n")
    assert run(["/usr/bin/env"], env={}) == (0, b"")


def test_env_none_inherits_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIDSAFE_TEST_INHERITED", "yes it is")
    assert run(["sh", "-c", 'echo "$PIDSAFE_TEST_INHERITED"']) == (0, b"yes it is\n")


def test_path_search_uses_the_childs_path(tmp_path: pathlib.Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    make_script(bindir / "pidsafe-test-prog", 'echo "found $0"')
    assert str(bindir) not in os.environ.get("PATH", "")
    code, out = run(["pidsafe-test-prog"], env={"PATH": str(bindir)})
    assert (code, out) == (0, f"found {bindir}/pidsafe-test-prog\n".encode())
    # ... and not ours.
    with pytest.raises(FileNotFoundError):
        pidsafe.spawn(["pidsafe-test-prog"])
    # bytes PATH in a bytes env
    assert run([b"pidsafe-test-prog"], env={b"PATH": os.fsencode(bindir)})[0] == 0


def test_path_search_skips_non_executable_candidates(tmp_path: pathlib.Path) -> None:
    a, b, empty = tmp_path / "a", tmp_path / "b", tmp_path / "empty"
    for d in (a, b, empty):
        d.mkdir()
    make_script(a / "prog", "echo from a", mode=0o644)
    make_script(b / "prog", "echo from b")
    assert run(["prog"], env={"PATH": f"{a}:{b}"}) == (0, b"from b\n")
    # Like execvp: EACCES from one entry wins over ENOENT from the others,
    # whichever comes first.
    for path in (f"{a}:{empty}", f"{empty}:{a}"):
        with pytest.raises(PermissionError) as info:
            pidsafe.spawn(["prog"], env={"PATH": path})
        assert info.value.filename == "prog"


def test_relative_program_is_resolved_in_cwd(tmp_path: pathlib.Path) -> None:
    make_script(tmp_path / "here", "echo here")
    assert run(["./here"], cwd=tmp_path) == (0, b"here\n")


@pytest.mark.parametrize("kind", [str, bytes, pathlib.Path])
def test_cwd(tmp_path: pathlib.Path, kind: Any) -> None:
    cwd = kind(os.fsencode(tmp_path)) if kind is bytes else kind(tmp_path)
    assert run(["pwd"], cwd=cwd) == (0, os.fsencode(tmp_path) + b"\n")


# -- exec and set-up failures ------------------------------------------------

def test_missing_program_raises_file_not_found() -> None:
    fds, kids = open_fds(), children()
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.spawn(["pidsafe-no-such-program", "arg"])
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == "pidsafe-no-such-program"
    assert "exec" in str(info.value)
    assert_nothing_left(fds, kids)


def test_missing_absolute_program(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.spawn([missing])
    assert info.value.filename == missing


def test_non_executable_file_raises_permission_error(tmp_path: pathlib.Path) -> None:
    # Even root cannot exec a file with no x bit at all.
    prog = make_script(tmp_path / "prog", "exit 0", mode=0o644)
    fds, kids = open_fds(), children()
    with pytest.raises(PermissionError) as info:
        pidsafe.spawn([str(prog)])
    assert info.value.filename == str(prog)
    assert_nothing_left(fds, kids)
    with pytest.raises(PermissionError):
        pidsafe.spawn([str(tmp_path)])  # a directory


def test_bad_executable_format(tmp_path: pathlib.Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x7fELF not really")
    junk.chmod(0o755)
    with pytest.raises(OSError) as info:
        pidsafe.spawn([str(junk)])
    assert info.value.errno == errno.ENOEXEC
    assert info.value.filename == str(junk)


def test_missing_executable_names_executable(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.spawn(["sh", "-c", "exit 0"], executable=str(tmp_path / "missing"))
    assert info.value.filename == str(tmp_path / "missing")


def test_missing_cwd_raises_file_not_found(tmp_path: pathlib.Path) -> None:
    cwd = tmp_path / "missing"
    fds, kids = open_fds(), children()
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.spawn(["true"], cwd=cwd)
    assert info.value.filename == cwd
    assert "chdir" in str(info.value)
    assert_nothing_left(fds, kids)


def test_cwd_that_is_a_file_raises_not_a_directory(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(NotADirectoryError) as info:
        pidsafe.spawn(["true"], cwd=str(f))
    assert info.value.filename == str(f)


def test_empty_path_raises_file_not_found() -> None:
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.spawn(["true"], env={"PATH": ""})
    assert info.value.filename == "true"


def test_failure_after_the_clone_kills_and_reaps_the_child(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: List[int] = []
    real_spawn = _sys.spawn

    def recording_spawn(*a: Any, **kw: Any) -> Tuple[int, int]:
        pid, pidfd = real_spawn(*a, **kw)
        spawned.append(pid)
        return pid, pidfd

    def broken_files(fds: List[int], *a: Any) -> Any:
        for fd in fds:  # open_pipe_files owns the fds it is given
            if fd >= 0:
                os.close(fd)
        raise RuntimeError("injected after the clone")

    def broken_process(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("injected after the clone")

    real_send = _sys.pidfd_send_signal
    sent: List[int] = []

    def recording_send(fd: int, sig: int) -> None:
        sent.append(sig)
        real_send(fd, sig)

    monkeypatch.setattr(_sys, "spawn", recording_spawn)
    monkeypatch.setattr(_sys, "pidfd_send_signal", recording_send)
    monkeypatch.setattr(_spawn, "open_pipe_files", broken_files)
    monkeypatch.setattr(_start, "Process", broken_process)   # start_process makes it
    fds, kids = open_fds(), children()
    for kw in (dict(stdin=PIPE, stdout=PIPE, stderr=PIPE), dict(stdout=subprocess.DEVNULL)):
        with pytest.raises(RuntimeError, match="injected"):
            pidsafe.spawn(["sleep", "60"], **kw)
        assert_nothing_left(fds, kids)
    assert len(spawned) == 2
    assert sent == [signal.SIGKILL] * 2, "the child was waited for, not killed"


class _FlakyIo:
    """Stands in for the io module in pidsafe.process._stdio: open() fails once."""

    def __init__(self, fail_at: int) -> None:
        self.calls = 0
        self.fail_at = fail_at

    def open(self, *a: Any, **kw: Any) -> Any:
        self.calls += 1
        if self.calls == self.fail_at:
            raise MemoryError("injected in the middle of open_pipe_files")
        return io.open(*a, **kw)


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_failure_while_wrapping_pipes_closes_each_fd_once(
        monkeypatch: pytest.MonkeyPatch, fail_at: int) -> None:
    flaky = _FlakyIo(fail_at)
    monkeypatch.setattr(_stdio, "io", flaky)
    fds, kids = open_fds(), children()
    with pytest.raises(MemoryError):
        pidsafe.spawn(["sleep", "60"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
    assert flaky.calls == fail_at
    # Files made before the failure must not close their fd a second time
    # later (it may have been reused by then) nor warn when collected.
    import gc

    gc.collect()
    assert_nothing_left(fds, kids)


def test_clone3_enosys_raises_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clone3(*a: Any, **kw: Any) -> Any:
        raise _sys.make_oserror(errno.ENOSYS, "clone3")

    monkeypatch.setattr(_sys, "spawn", no_clone3)
    fds = open_fds()
    with pytest.raises(pidsafe.UnsupportedError) as info:
        pidsafe.spawn(["true"], stdout=PIPE, stdin=subprocess.DEVNULL)
    assert info.value.feature == "clone3"
    assert "clone3" in str(info.value)
    assert open_fds() == fds


def test_other_clone_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    def eagain(*a: Any, **kw: Any) -> Any:
        raise _sys.make_oserror(errno.EAGAIN, "clone3")

    monkeypatch.setattr(_sys, "spawn", eagain)
    fds = open_fds()
    with pytest.raises(BlockingIOError, match="clone3"):
        pidsafe.spawn(["true"], stdout=PIPE)
    assert open_fds() == fds


# -- stdio ---------------------------------------------------------------------

def test_stdio_none_inherits_ours(capfd: pytest.CaptureFixture[str]) -> None:
    with pidsafe.spawn(["sh", "-c", "echo to-out; echo to-err >&2"]) as p:
        assert p.wait(10) == 0
        assert p.stdin is None and p.stdout is None and p.stderr is None
    assert capfd.readouterr() == ("to-out\n", "to-err\n")


def test_stdout_and_stderr_pipes() -> None:
    with pidsafe.spawn(["sh", "-c", "echo out; echo err >&2; exit 4"],
                       stdout=PIPE, stderr=PIPE) as p:
        assert p.communicate(timeout=10) == (b"out\n", b"err\n")
    assert p.returncode == 4


def test_stdin_pipe_file_objects() -> None:
    with pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE) as p:
        assert isinstance(p.stdin, io.BufferedWriter)
        assert isinstance(p.stdout, io.BufferedReader)
        p.stdin.write(b"hello\n")
        p.stdin.close()
        assert p.stdout.read() == b"hello\n"
        assert p.wait(10) == 0


def test_bufsize_zero_gives_raw_files() -> None:
    with pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, bufsize=0) as p:
        assert isinstance(p.stdin, io.FileIO) and isinstance(p.stdout, io.FileIO)
        assert p.communicate(b"raw", timeout=10) == (b"raw", None)


def test_stdio_file_objects_and_fds(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "in"
    src.write_bytes(b"from a file\n")
    with open(src, "rb") as fin, open(tmp_path / "out", "wb") as fout:
        with pidsafe.spawn(["cat"], stdin=fin, stdout=fout) as p:
            assert p.wait(10) == 0
    assert (tmp_path / "out").read_bytes() == b"from a file\n"
    fin_fd = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    fout_fd = os.open(tmp_path / "out2", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
    try:
        with pidsafe.spawn(["cat"], stdin=fin_fd, stdout=fout_fd, stderr=fout_fd) as p:
            assert p.wait(10) == 0
    finally:
        os.close(fin_fd)
        os.close(fout_fd)
    assert (tmp_path / "out2").read_bytes() == b"from a file\n"


def test_devnull() -> None:
    with pidsafe.spawn(["sh", "-c", "cat; echo out; echo err >&2"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=PIPE) as p:
        assert p.communicate(timeout=10) == (None, b"err\n")
    assert p.returncode == 0
    code, out = run(["sh", "-c", "readlink /proc/self/fd/0 /proc/self/fd/2"],
                    stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert (code, out) == (0, b"/dev/null\n/dev/null\n")


def test_stderr_to_stdout_pipe() -> None:
    code, out = run(["sh", "-c", "echo 1; echo 2 >&2; echo 3"], stderr=subprocess.STDOUT)
    assert (code, out) == (0, b"1\n2\n3\n")


def test_stderr_to_inherited_stdout(capfd: pytest.CaptureFixture[str]) -> None:
    with pidsafe.spawn(["sh", "-c", "echo a; echo b >&2"], stderr=subprocess.STDOUT) as p:
        assert p.wait(10) == 0
    assert capfd.readouterr() == ("a\nb\n", "")


def test_stdout_and_stderr_swapped(capfd: pytest.CaptureFixture[str]) -> None:
    with pidsafe.spawn(["sh", "-c", "echo out; echo err >&2"], stdout=2, stderr=1) as p:
        assert p.wait(10) == 0
    assert capfd.readouterr() == ("err\n", "out\n")


@pytest.mark.parametrize("sources", [(2, 0, 1), (1, 2, 0), (0, 0, 0), (1, 0, 2)])
def test_stdio_sources_that_are_each_others_targets(
        tmp_path: pathlib.Path, sources: Tuple[int, int, int]) -> None:
    # Our fds 0, 1, 2 become three files; the child's stdin/stdout/stderr are
    # taken from them in a rotated order, so a naive dup2() sequence would
    # clobber a source before using it.
    files = [tmp_path / f"fd{i}" for i in range(3)]
    stdin_src, stdout_src, stderr_src = sources
    saved = [os.dup(i) for i in range(3)]
    try:
        for i, f in enumerate(files):
            f.write_bytes(b"input of fd%d\n" % i if i == stdin_src else b"")
            fd = os.open(f, os.O_RDWR | os.O_CLOEXEC)
            os.dup2(fd, i)
            os.close(fd)
        with pidsafe.spawn(["sh", "-c", "read line; echo \"got $line\"; echo err >&2"],
                           stdin=stdin_src, stdout=stdout_src, stderr=stderr_src) as p:
            code = p.wait(10)
    finally:
        for i, fd in enumerate(saved):
            os.dup2(fd, i)
            os.close(fd)
    assert code == 0
    if stdout_src == stderr_src == stdin_src:
        # One file, one offset: the line, then what the child appended.
        assert files[0].read_bytes() == b"input of fd0\ngot input of fd0\nerr\n"
        return
    assert files[stdout_src].read_bytes().endswith(b"got input of fd%d\n" % stdin_src)
    assert files[stderr_src].read_bytes().endswith(b"err\n")


# -- fds -----------------------------------------------------------------------

# Writes a line to the fd named by argv[1]; prints whether that fd was open.
WRITE_FD = """
import os, sys
try:
    os.write(int(sys.argv[1]), sys.argv[2].encode() + b"\\n")
except OSError:
    print("closed")
else:
    print("open")
"""


def test_pass_fds_reach_the_child_at_the_same_number() -> None:
    r, w = os.pipe()  # close-on-exec, as Python makes every fd
    try:
        assert run([PY, "-c", WRITE_FD, str(w), "via-pass-fd"], pass_fds=[w]) == (0, b"open\n")
        assert os.get_inheritable(w) is False, "spawn cleared FD_CLOEXEC in the parent"
        os.close(w)
        w = -1
        assert os.read(r, 100) == b"via-pass-fd\n"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_fds_not_passed_are_closed_unless_close_fds_is_false() -> None:
    r, w = os.pipe()
    os.set_inheritable(w, True)  # would leak without close_fds
    try:
        assert run([PY, "-c", WRITE_FD, str(w), "leaked"]) == (0, b"closed\n")
        assert run([PY, "-c", WRITE_FD, str(w), "inherited"], close_fds=False) == (0, b"open\n")
        assert os.read(r, 100) == b"inherited\n"
    finally:
        os.close(r)
        os.close(w)


def test_pass_fds_below_three_are_harmless() -> None:
    assert run(["true"], pass_fds=(0, 1, 2)) == (0, b"")


# -- sessions, signals, pdeathsig --------------------------------------------------

SESSION = "import os; print(os.getsid(0), os.getpid(), os.getpgid(0))"


def test_start_new_session() -> None:
    code, out = run([PY, "-c", SESSION], start_new_session=True)
    sid, pid, pgid = map(int, out.split())
    assert code == 0 and sid == pid == pgid
    code, out = run([PY, "-c", SESSION])
    sid, pid, pgid = map(int, out.split())
    assert sid == os.getsid(0) and pgid == os.getpgid(0)


@pytest.fixture(params=["clone3", "child"])
def handlers_reset_by(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Who puts the spawn child's signal handlers back to SIG_DFL: the kernel
    (CLONE_CLEAR_SIGHAND, Linux 5.5), or the child itself, as on a kernel
    that refuses the flag (the test knob makes clone3 refuse it)."""
    if request.param == "child":
        monkeypatch.setattr(sys_spawn, "_test_fail", (_sys.FAULT_NO_CLEAR_SIGHAND, 0))
    return str(request.param)


@pytest.mark.parametrize("restore", [True, False])
def test_restore_signals(restore: bool, handlers_reset_by: str) -> None:
    # Python ignores SIGPIPE and SIGXFSZ; Popen (and spawn) undo that.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN
    p = started_cat(restore_signals=restore)
    with p:
        ignored = sigmask("SigIgn", p.pid)
        p.communicate(timeout=10)
    restored = {signal.SIGPIPE, signal.SIGXFSZ}
    if restore:
        assert not ignored & restored
    else:
        assert restored <= ignored


def test_the_kernel_resets_the_handlers_without_a_call_per_signal(
        tmp_path: pathlib.Path) -> None:
    # CLONE_CLEAR_SIGHAND (Linux 5.5): the spawn child's only sigaction()
    # calls are restore_signals' two, where it used to ask about every signal.
    text, flags, child = strace_one_spawn(tmp_path, "clone3,rt_sigaction,execve")
    assert "CLONE_CLEAR_SIGHAND" in flags, text
    before_exec = itertools.takewhile(lambda line: "execve(" not in line,
                                      re.findall(rf"^{child}\s+(.*)$", text, re.M))
    assert [m.group(1) for m in map(re.compile(r"rt_sigaction\((\w+)").match, before_exec)
            if m] == ["SIGPIPE", "SIGXFSZ"], text


def test_child_signal_mask_is_ours_not_the_clone_mask(handlers_reset_by: str) -> None:
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        p = started_cat()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    with p:
        assert sigmask("SigBlk", p.pid) == {signal.SIGUSR1}
        p.communicate(timeout=10)
    with started_cat() as p:
        assert sigmask("SigBlk", p.pid) == set()
        p.communicate(timeout=10)


def test_ignored_signals_stay_ignored_and_handlers_do_not_survive(
        handlers_reset_by: str) -> None:
    old_usr2 = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    old_usr1 = signal.signal(signal.SIGUSR1, lambda *a: None)
    try:
        p = started_cat()
    finally:
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGUSR1, old_usr1)
    with p:
        assert signal.SIGUSR2 in sigmask("SigIgn", p.pid)  # like Popen
        assert signal.SIGUSR1 not in sigmask("SigIgn", p.pid)
        assert sigmask("SigCgt", p.pid) == set()
        p.communicate(timeout=10)


@pytest.fixture
def subreaper() -> Iterator[None]:
    """Make us the subreaper, so orphaned grandchildren are ours to reap."""
    _sys.set_child_subreaper(True)
    try:
        yield
    finally:
        _sys.set_child_subreaper(False)


MIDDLE = """
import signal, sys, pidsafe
sig = int(sys.argv[1]) or None
p = pidsafe.spawn(["sleep", "60"], pdeathsig=sig)
print(p.pid, flush=True)
signal.pause()   # until killed
"""


@pytest.mark.parametrize("pdeathsig", [signal.SIGKILL, signal.SIGTERM, None])
def test_pdeathsig_kills_the_child_when_its_parent_dies(
        subreaper: None, pdeathsig: Optional[int]) -> None:
    with pidsafe.spawn([PY, "-c", MIDDLE, str(int(pdeathsig or 0))], stdout=PIPE) as middle:
        assert middle.stdout is not None
        line = middle.stdout.readline()
        assert line, "the middle process died before spawning"
        # Pin the grandchild by pidfd while its parent still holds it.
        grand = pidsafe.Process.from_pid(int(line))
        middle.kill()
        assert middle.wait(10) == -signal.SIGKILL
    with grand:
        # Orphaned, it is reparented to us (the subreaper): wait() reaps it.
        if pdeathsig is None:
            # The kernel sends the parent-death signal while the parent
            # exits, before it can be reaped: none is on its way now.
            assert grand.is_alive() and not pending_signals(grand.pid), \
                "the control child got a signal without pdeathsig"
            grand.kill()
            assert grand.wait(10) == -signal.SIGKILL
        else:
            assert grand.wait(10) == -pdeathsig


# -- concurrency ---------------------------------------------------------------

def test_spawn_from_many_threads_at_once() -> None:
    errors: List[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                code, out = run(["sh", "-c", f"echo {n}-{i}; exit {i}"])
                assert (code, out) == (i, f"{n}-{i}\n".encode())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def test_spawn_while_signals_keep_arriving() -> None:
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    signal.setitimer(signal.ITIMER_REAL, 0.001, 0.001)
    try:
        for i in range(40):
            assert run(["sh", "-c", f"echo {i}"]) == (0, f"{i}\n".encode())
            with pytest.raises(FileNotFoundError):
                pidsafe.spawn(["pidsafe-no-such-program"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert hits, "the timer never fired: the test proved nothing"


# -- resource exhaustion and threads ---------------------------------------------

def _fill_fd_holes() -> List[int]:
    """Occupy every free fd number below our highest one; returns them."""
    used = set(open_fds())
    src = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    made = [src]
    for fd in range(max(used)):
        if fd not in used and fd != src:
            made.append(os.dup2(src, fd, inheritable=False))
    return made


def test_fd_exhaustion_at_every_step_leaves_nothing_behind() -> None:
    # RLIMIT_NOFILE caps fd *numbers*: with no holes below our highest fd,
    # stepping the limit up from there makes each fd spawn() needs (/dev/null,
    # the pipes, the error pipe, the pidfd clone3 makes) fail in turn.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    outcomes: List[Any] = []
    filler = _fill_fd_holes()
    try:
        for extra in range(10):
            fds, kids = open_fds(), children()
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(fds) + 1 + extra, hard))
            try:
                with pidsafe.spawn(["sh", "-c", "echo ok"], stdin=subprocess.DEVNULL,
                                   stdout=PIPE, stderr=0) as p:
                    outcomes.append(p.communicate(timeout=10)[0])
            except OSError as exc:
                assert exc.errno == errno.EMFILE, exc
                outcomes.append(str(exc))
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            assert open_fds() == fds and children() == kids, f"leak with {extra} spare fds"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for fd in filler:
            os.close(fd)
    assert outcomes[-1] == b"ok\n", outcomes
    failures = [o for o in outcomes if o != b"ok\n"]
    assert len(failures) >= 3, outcomes
    assert any("/dev/null" in o for o in failures), outcomes
    assert any("clone3" in o for o in failures), outcomes  # no room for the pidfd


def test_argument_too_long() -> None:
    with pytest.raises(OSError) as info:
        pidsafe.spawn(["true", "x" * 200_000])  # > MAX_ARG_STRLEN
    assert info.value.errno == errno.E2BIG and info.value.filename == "true"


def test_child_of_an_exited_thread_is_waited_from_another() -> None:
    box: List[pidsafe.Process] = []
    t = threading.Thread(target=lambda: box.append(pidsafe.spawn(["sh", "-c", "exit 8"])))
    t.start()
    t.join()
    with box[0] as p:
        assert p.wait(timeout=10) == 8


def test_pdeathsig_follows_the_spawning_thread() -> None:
    # Documented: PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    box: List[pidsafe.Process] = []
    t = threading.Thread(target=lambda: box.append(
        pidsafe.spawn(["sleep", "30"], pdeathsig=signal.SIGKILL)))
    t.start()
    t.join()
    with box[0] as p:
        assert p.wait(timeout=10) == -signal.SIGKILL


# -- asynchronous exceptions: a signal handler that raises anywhere -----------------

# (kwargs, program, what the finished child gives: communicate()'s output)
SPAWN_VARIANTS: List[Tuple[str, Dict[str, Any], List[str], Any]] = [
    ("inherit", dict(), ["true"], (None, None)),
    ("pipes", dict(stdin=PIPE, stdout=PIPE, stderr=PIPE), ["cat"], (b"", b"")),
    ("devnull-stdout-pass_fds-cwd-session-pdeathsig",
     dict(stdin=subprocess.DEVNULL, stdout=PIPE, stderr=subprocess.STDOUT, cwd="/",
          start_new_session=True, pdeathsig=signal.SIGKILL), ["pwd"], (b"/\n", None)),
    ("exec-error", dict(stdout=PIPE), ["pidsafe-no-such-program"], FileNotFoundError),
]


def _spawn_variant(kw: Dict[str, Any], args: List[str], passed: int) -> pidsafe.Process:
    if "cwd" in kw:
        kw = dict(kw, pass_fds=[passed])
    return pidsafe.spawn(args, **kw)


def _finish(p: pidsafe.Process, expected: Any) -> None:
    """Outside any fault or alarm: the child ends as it would have."""
    with p:
        assert p.communicate(timeout=30) == expected
        assert p.returncode == 0


@pytest.fixture
def passed_fd() -> Iterator[int]:
    r, w = os.pipe()
    yield w
    os.close(r)
    os.close(w)


@pytest.mark.parametrize("kw,args,expected",
                         [pytest.param(kw, a, e, id=n) for n, kw, a, e in SPAWN_VARIANTS])
def test_spawn_under_faults_leaves_nothing(faults: Faults, passed_fd: int, kw: Dict[str, Any],
                                           args: List[str], expected: Any) -> None:
    """Fail each call spawn() makes, then land a Ctrl-C right before and right
    after each: an error or KeyboardInterrupt comes out, and nothing is left."""
    def op() -> Optional[pidsafe.Process]:
        try:
            return _spawn_variant(kw, args, passed_fd)
        except FileNotFoundError:
            if expected is not FileNotFoundError:
                raise
            return None

    n = faults.count(lambda: (lambda p: p and _finish(p, expected))(op()))
    # At least the clone, the reap and (but for inherit) a pipe.
    assert n >= (2 if kw == {} else 3), faults.calls
    modes = [("fail", lambda k: faults.fail_at(k, errno.EIO)),
             ("interrupt", lambda k: faults.interrupt_at(k)),
             ("interrupt before", lambda k: faults.interrupt_at(k, before=True))]
    for mode, inject in modes:
        for k in range(1, n + 1):
            p = None
            with leak_check(f"{mode} at call {k}"):
                with inject(k) as f:
                    try:
                        p = op()
                    except (OSError, Interrupt) as exc:
                        assert (isinstance(exc, Interrupt) if mode != "fail"
                                else exc.errno == errno.EIO), (f.fired, exc)
                if p is not None:
                    assert f.fired is None or f.fired.startswith(f"call {k}: pidsafe_wait")
                    _finish(p, expected)
                settle_abandoned()


@pytest.mark.parametrize("kind", ["wait", "wait-timeout", "communicate", "exec-error"])
def test_random_raising_signals_never_leak_or_lose_anything(random_alarms: RandomAlarms,
                                                            passed_fd: int, kind: str) -> None:
    """A SIGALRM handler raises at a random point of spawn() and wait() or
    communicate(), 500 times for each: every child is reaped with its real
    status, every byte of input and output arrives, no fd is left (the
    fixture checks, and that nothing was left to reap_abandoned())."""
    def one(i: int) -> Optional[pidsafe.Process]:
        p = None
        try:
            if kind == "wait":
                p = pidsafe.spawn(["sh", "-c", "exit 3"], stdin=subprocess.DEVNULL)
                p.wait()
            elif kind == "wait-timeout":
                p = pidsafe.spawn(["sh", "-c", "exit 3"], pass_fds=[passed_fd], cwd="/",
                                  start_new_session=True, pdeathsig=signal.SIGKILL)
                p.wait(timeout=30)
            elif kind == "communicate":
                p = pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, stderr=PIPE)
                p.communicate(b"%d" % i, timeout=30)
            else:
                with pytest.raises(FileNotFoundError):
                    pidsafe.spawn(["pidsafe-no-such-program"], stdout=PIPE, stderr=PIPE)
        except Alarm:
            pass
        finally:
            random_alarms.disarm()
        if p is not None:
            with p:
                if kind == "communicate":
                    try:
                        out = p.communicate(b"%d" % i, timeout=30)
                    except ValueError:   # the interrupted call had taken the input
                        out = p.communicate(timeout=30)
                    assert out == (b"%d" % i, b"") and p.returncode == 0
                else:
                    assert p.wait() == 3
        return p

    # Spread the alarms over the time one round takes on this machine.
    times = []
    for i in range(20):
        t0 = time.perf_counter()
        one(i)
        times.append(time.perf_counter() - t0)
    span = 1.2 * min(times)
    rounds = 500
    for i in range(rounds):
        random_alarms.arm(span)
        one(i)
    assert not _abandoned.registry
    # Enough landed inside pidsafe to prove something.
    assert random_alarms.raised > rounds // 5, (random_alarms.raised, random_alarms.missed)
