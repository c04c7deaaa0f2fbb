"""Test-wide rules: root-only tests, and no test may leak.

Every test is wrapped by ``no_leaks``: it fails if, after the test, this
process has an fd, a child (zombie or not) or a mount it did not have before.
``gc.collect()`` runs first so that a dropped-but-unclosed object warns
(``ResourceWarning`` is an error here) inside the test that dropped it.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import gc
import os
import pathlib
import random
import re
import select
import shutil
import signal
import sys
import threading
import time
from subprocess import PIPE
from types import FrameType
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.process import _abandoned, _wait

import session_owned
from faults import Faults
from bundles import busybox_rootfs, make_bundle, state_dir  # noqa: F401 - container fixtures
from ctrd.fixtures import (containerd, containerd_daemon, cri,  # noqa: F401 - containerd
                           cri_daemon, cri_handler, pytest_runtest_makereport, shim_runtime)
from ctrd.daemon import skip_reason as containerd_skip_reason


def pytest_configure(config: pytest.Config) -> None:
    """Signals as an interactive start gives them, however the suite was started.

    A non-interactive shell starts a background command (``pytest ... &``)
    with SIGINT and SIGQUIT ignored, and SIG_IGN survives exec: the tests
    whose children must die of those signals (or forward Ctrl-C) then fail
    for a reason that is not theirs.  Runs in every xdist worker too.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if signal.getsignal(signal.SIGQUIT) == signal.SIG_IGN:
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    reason = containerd_skip_reason()
    if reason:
        skip_containerd = pytest.mark.skip(reason=reason)
        for item in items:
            if "containerd" in item.keywords:
                item.add_marker(skip_containerd)
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (uid 0): run the suite as root to exercise it")
    for item in items:
        if "root" in item.keywords:
            item.add_marker(skip)


def open_fds() -> Dict[int, str]:
    """This process's fds and what they point at."""
    out = {}
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue  # the fd listdir() itself used
    return out


def children() -> Set[int]:
    """Pids of this process's children, zombies included, of every thread."""
    kids: Set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            continue
    return kids


def mounts() -> Set[str]:
    """Mount points (as mountinfo spells them) in our mount namespace."""
    with open("/proc/self/mountinfo", errors="surrogateescape") as f:   # any bytes
        return {line.split()[4] for line in f}


def state(pid: int) -> str:
    """The state letter of /proc/PID/stat ('Z' for a zombie), '' if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return ""   # ESRCH: reaped between the open and the read
    return stat[stat.rindex(")") + 2]


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def started_cat(**kw: Any) -> pidsafe.Process:
    """A `cat` that has provably exec'd and reached its read loop."""
    p = pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, **kw)
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write(b"ping\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"ping\n"
    return p


def spawn_and_wait(args: Any = ("true",)) -> None:
    """One spawn() (which reaps abandoned children first) and its wait()."""
    with pidsafe.spawn(list(args)) as p:
        p.wait()


def is_cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def assert_nothing_left(fds_before: Dict[int, str], kids_before: Set[int]) -> None:
    """Right after an operation, not after the leak fixture's grace period."""
    assert children() == kids_before
    assert open_fds() == fds_before


def settle_abandoned(timeout: float = 10) -> None:
    """Let every child whose handle was closed running exit, then reap them
    (as the next spawn() would)."""
    pids = [p.pid for p in list(_abandoned.registry.values())]
    for pid in pids:
        wait_until(lambda: state(pid) in ("Z", ""), f"abandoned child {pid} to exit", timeout)
    _abandoned.reap_abandoned()
    assert not _abandoned.registry


class Boom(Exception):
    """What a test's own signal handler raises."""


@pytest.fixture
def alarm() -> Iterator[Callable[[float, Callable[[int, Any], None]], None]]:
    """alarm(interval, handler): SIGALRM every interval seconds until the test ends.

    Takes pytest-timeout's SIGALRM timer for the test and gives it back after.
    """
    old = signal.getsignal(signal.SIGALRM)
    old_timer = signal.getitimer(signal.ITIMER_REAL)
    t0 = time.monotonic()

    def start(interval: float, handler: Callable[[int, Any], None]) -> None:
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, interval, interval)

    yield start
    signal.setitimer(signal.ITIMER_REAL, 0, 0)
    signal.signal(signal.SIGALRM, old)
    if old_timer[0] > 0:
        signal.setitimer(signal.ITIMER_REAL,
                         max(0.001, old_timer[0] - (time.monotonic() - t0)), old_timer[1])


class BlockingCalls:
    """The calls in which a Process waits (poll(2) on the pidfd, waitid with
    WNOWAIT), counted; and a way to wait until N threads are inside one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from pidsafe import _sys

        self.calls: List[Any] = []    # ("poll", timeout, ready) or ("waitid", None, None)
        self.inside = 0
        self._cond = threading.Condition()
        real_readable = _wait._readable

        def readable(fd: int, timeout: Optional[float]) -> bool:
            with self._inside():
                ready = real_readable(fd, timeout)
            self.calls.append(("poll", timeout, ready))
            return ready

        def counted(real_waitid: Callable[..., Any]) -> Callable[..., Any]:
            def waitid(fd: int, options: int, *record: Any) -> Any:
                # (waitid_status's reap passes the handle's status record.)
                if not options & _sys.WNOWAIT:
                    return real_waitid(fd, options, *record)
                with self._inside():
                    res = real_waitid(fd, options, *record)
                self.calls.append(("waitid", None, None))
                return res
            return waitid

        monkeypatch.setattr(_wait, "_readable", readable)
        # Both forms of waitid(P_PIDFD): the hot path blocks in waitid_status.
        for name in ("waitid_pidfd", "waitid_status"):
            monkeypatch.setattr(_sys, name, counted(getattr(_sys, name)))

    @contextlib.contextmanager
    def _inside(self) -> Iterator[None]:
        with self._cond:
            self.inside += 1
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.inside -= 1

    def wait_inside(self, n: int = 1) -> None:
        """Until ``n`` threads are in (or about to enter) a blocking call."""
        with self._cond:
            assert self._cond.wait_for(lambda: self.inside >= n, timeout=60), self.inside


@pytest.fixture
def blocking_calls(monkeypatch: pytest.MonkeyPatch) -> BlockingCalls:
    return BlockingCalls(monkeypatch)


def drop_running_child() -> int:
    """Drop the handle of a running child (ResourceWarning); let the child exit.

    Returns its pid: a zombie now, that the next spawn() must reap.
    """
    p = started_cat()
    pid = p.pid
    assert p.stdin is not None
    stdin = os.dup(p.stdin.fileno())   # keeps cat reading through the drop
    with pytest.warns(ResourceWarning, match="still running"):
        del p
        gc.collect()
    assert state(pid) not in ("Z", "")
    os.close(stdin)
    wait_until(lambda: state(pid) == "Z", "the abandoned child to exit")
    return pid


def pending_signals(pid: int) -> Set[int]:
    """Signals pending for ``pid`` (thread and process), from /proc/PID/status."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    bits = int(fields["SigPnd"], 16) | int(fields["ShdPnd"], 16)
    return {n for n in range(1, 65) if bits & (1 << (n - 1))}


class Alarm(Exception):
    """Raised by :class:`RandomAlarms` inside pidsafe code."""


_PIDSAFE_DIR = os.path.dirname(pidsafe.__file__) + os.sep


def _in_pidsafe(frame: Optional[FrameType]) -> bool:
    """Whether pidsafe code is on the stack (and no finaliser, which cannot raise)."""
    inside = False
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return False
        inside = inside or frame.f_code.co_filename.startswith(_PIDSAFE_DIR)
        frame = frame.f_back
    return inside


class RandomAlarms:
    """A SIGALRM after a random delay whose handler raises :class:`Alarm`.

    It raises only while pidsafe code is on the stack: a signal landing in
    the test's own code between two pidsafe calls (say, after spawn()
    returned, before its result is assigned) is a window of the caller's,
    which no library can close, so it is counted in ``missed`` instead.
    """

    def __init__(self) -> None:
        self.armed = False
        self.raised = 0
        self.missed = 0

    def handler(self, signum: int, frame: Optional[FrameType]) -> None:
        if not self.armed:
            return
        if not _in_pidsafe(frame):
            self.missed += 1
            return
        self.armed = False
        self.raised += 1
        raise Alarm()

    def arm(self, max_delay: float) -> None:
        self.armed = True
        signal.setitimer(signal.ITIMER_REAL, random.uniform(0, max_delay))

    def disarm(self) -> None:
        self.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


@pytest.fixture
def random_alarms(alarm: Any) -> Iterator[RandomAlarms]:
    """A :class:`RandomAlarms`; its handler is SIGALRM's for the test."""
    r = RandomAlarms()
    alarm(0, r.handler)
    yield r
    r.disarm()


def _describe_child(pid: int) -> str:
    letter = state(pid)
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return f"pid {pid} (gone)"
    return f"pid {pid} state {letter or '?'} cmd {cmd!r}"


class Snapshot:
    """This process's fds, children and mounts at one moment."""

    def __init__(self, relevant: Callable[[Set[str]], Set[str]] = lambda s: s) -> None:
        self._relevant = relevant
        self.fds = open_fds()
        self.kids = children()
        self.mounts = relevant(mounts())

    def leaks(self, grace: float = 2.0) -> List[str]:
        """What exists now and did not then, as messages; [] if nothing."""
        gc.collect()
        problems = []
        # A child that is being killed may need a moment to become reapable,
        # but a test must reap what it starts: a short grace only for exiting
        # ones.
        deadline = time.monotonic() + grace
        while True:
            new_kids = {p for p in children() - self.kids if not session_owned.owns_pid(p)}
            if not new_kids or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        problems += ["leaked child: " + _describe_child(p) for p in sorted(new_kids)]
        # A background thread (a reaper's scan of /proc) may hold an fd for a
        # moment: a leaked fd is one that stays, so look again until the new
        # ones are gone or the grace is over.  A session fixture's fds
        # (tests/session_owned.py) are no test's.
        while True:
            fds_after = {fd: target for fd, target in open_fds().items()
                         if not session_owned.owns_fd(fd, target)}
            if set(fds_after) <= set(self.fds) or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        for fd in sorted(set(fds_after) - set(self.fds) - _sealed_copies() - _mount_table()):
            problems.append(f"leaked fd {fd} -> {fds_after[fd]}")
        for fd in sorted(set(self.fds) & set(fds_after)):
            if self.fds[fd] != fds_after[fd]:
                problems.append(f"fd {fd} changed: {self.fds[fd]} -> {fds_after[fd]}")
        new_mounts = self._relevant(mounts()) - self.mounts
        problems += [f"leaked mount: {m}" for m in sorted(new_mounts)]
        problems += _handle_index_problems(fds_after)
        return problems


def _sealed_copies() -> Set[int]:
    """The sealed copies of pidsafe's programs (pidsafe/_sys/_sealed.py): made
    on first use, kept for the life of the process by design."""
    from pidsafe._sys import _sealed
    return {fd for fd, _, _ in _sealed._copies.values()}


def _mount_table() -> Set[int]:
    """The fd pidsafe keeps on this process's mountinfo (pidsafe/mount/_mountinfo.py),
    which says when the table changed: opened on first use, kept by design."""
    from pidsafe.mount import _mountinfo
    return {_mountinfo.table_fd()} - {-1}


def _handle_index_problems(fds: Dict[int, str]) -> List[str]:
    """The handle index (which pids pidsafe handles hold) must describe
    exactly the open handles: a stale pid in it would make a subreaper leave
    a recycled orphan with that pid unreaped for good."""
    from pidsafe.process import _lease
    with _lease._index_lock:
        fd_pid = dict(_lease._fd_pid)
        pid_fds = dict(_lease._pid_fds)
    problems = [f"handle index: fd {fd} (pid {pid}) is not open" for fd, pid in
                sorted(fd_pid.items()) if fd not in fds]
    if dict(collections.Counter(fd_pid.values())) != pid_fds:
        stale = sorted(set(pid_fds) - set(fd_pid.values()))
        problems.append(f"handle index: pid counts disagree with its fds (stale pids {stale[:10]})")
    return problems


#: Which mounts are ours to watch (set per test by ``no_leaks``): other
#: pytest sessions on the machine mount and unmount under their own basetemp.
_relevant_mounts: Callable[[Set[str]], Set[str]] = lambda s: s


@contextlib.contextmanager
def leak_check(what: str, *, check_mounts: bool = True,
               mounts_under: Optional[str] = None) -> Iterator[None]:
    """Fail naming ``what`` if the block leaves an fd, a child or a mount.

    ``check_mounts=False`` for blocks that mount nothing: the mount table is
    shared with other pytest sessions on the machine, whose mounts come and
    go meanwhile.  ``mounts_under`` limits the mounts watched to those at or
    below that path (other xdist workers mount and unmount meanwhile in the
    same mount namespace); by default every mount outside other sessions'
    temp directories is watched.
    """
    def relevant(points: Set[str]) -> Set[str]:
        if not check_mounts:
            return set()
        if mounts_under is None:
            return _relevant_mounts(points)
        return {p for p in points if p == mounts_under or p.startswith(mounts_under + "/")}

    snap = Snapshot(relevant)
    yield
    problems = snap.leaks()
    if problems:
        pytest.fail(f"{what} leaked resources:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def faults() -> "Faults":
    """Fail or interrupt the k-th native call of an operation (tests/faults.py)."""
    return Faults()


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Other xdist workers, and other pytest sessions on the machine, share
    # our mount namespace; their mounts live under their own basetemp inside
    # pytest's per-user temp root (/tmp/pytest-of-USER).  Ignore those and
    # watch everything else, our own basetemp included.
    ours = str(tmp_path_factory.getbasetemp())
    shared_root = next((str(d) for d in tmp_path_factory.getbasetemp().parents
                        if d.name.startswith("pytest-of-")), os.path.dirname(ours))

    def relevant(points: Set[str]) -> Set[str]:
        return {p for p in points
                if not p.startswith(shared_root + "/") or p == ours or p.startswith(ours + "/")}

    global _relevant_mounts
    _relevant_mounts = relevant
    snap = Snapshot(relevant)
    yield
    problems = snap.leaks()
    if problems:
        pytest.fail("test leaked resources:\n  " + "\n  ".join(problems), pytrace=False)


# == reaper helpers (tests/reaper) ===============================================

SH = "/bin/sh"


@pytest.fixture
def reaper() -> Iterator[pidsafe.Reaper]:
    r = pidsafe.Reaper().start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def subreaper() -> Iterator[pidsafe.Reaper]:
    r = pidsafe.Reaper(subreaper=True, scan_interval=0.05).start()
    try:
        yield r
    finally:
        r.stop()


def reaper_passes(r: pidsafe.Reaper, n: int = 1) -> None:
    """Wake the reaper thread and return after ``n`` full passes of its loop.

    A pass publishes what it reaped, ends the leases it can, closes the fds
    they hand back and (subreaper mode) scans for orphans: after one, the
    reaper holds nothing for exits already delivered.
    """
    loop = r._loop
    assert loop is not None and r.running
    done = threading.Semaphore(0)
    loop.after_pass = done.release
    try:
        for _ in range(n):
            r._set.wake()
            assert done.acquire(timeout=30), "the reaper thread made no pass"
    finally:
        loop.after_pass = None


def reaper_settled(r: pidsafe.Reaper) -> None:
    """Return once ``r`` has nothing left to retry (see ``ReaperLoop.idle``):
    every exit it has seen is published and every lease it could end ended."""
    loop = r._loop
    assert loop is not None
    for _ in range(1000):
        reaper_passes(r)
        if loop.idle:
            return
    raise AssertionError("the reaper thread keeps retrying")


def close_all(procs: List[pidsafe.Process]) -> None:
    for p in procs:
        p.wait()
        p.close()


def drain(sub: pidsafe.Subscription, n: int, timeout: float = 30) -> List[pidsafe.Exit]:
    deadline = time.monotonic() + timeout
    return [sub.get(timeout=max(0.0, deadline - time.monotonic())) for _ in range(n)]


def assert_quiet(sub: pidsafe.Subscription, wait: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        ev = sub.get(timeout=wait)
        pytest.fail(f"unexpected exit: {ev}")


def unreaped_child(pid: int) -> bool:
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT | _sys.WALL)
    except ChildProcessError:
        return False
    return True


def wait_exited(p: pidsafe.Process, timeout: float = 5) -> None:
    """Wait until the pidfd is readable, without reaping."""
    assert select.select([p], [], [], timeout)[0], f"{p} did not exit"


def foreign_spawn(script: str) -> int:
    """A child the way subprocess/posix_spawn make them: no pidfd."""
    return os.posix_spawn(SH, [SH, "-c", script], os.environ)


def held_foreign_child(code: int) -> Tuple[int, int]:
    """A foreign child that exits with ``code`` once we close the returned fd."""
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(SH, [SH, "-c", f"read x; exit {code}"], os.environ,
                             file_actions=[(os.POSIX_SPAWN_DUP2, r, 0)])
    finally:
        os.close(r)
    return pid, w




def orphan_round(r: pidsafe.Reaper, exits: pidsafe.Subscription,
                 around_spawn: Callable[[], "contextlib.AbstractContextManager[Any]"]
                 = contextlib.nullcontext) -> None:
    """A child of ``r`` that leaves an orphan (subreaper mode); both exits, exact.

    ``around_spawn``: a context for the spawn itself (e.g. ``faults.paused``).
    """
    # An asynchronous list's stdin is /dev/null: hand it the pipe as fd 3.
    with around_spawn():
        p = r.spawn([SH, "-c", "exec 3<&0; (read x <&3; exit 3) >/dev/null & echo $!"],
                    stdin=PIPE, stdout=PIPE)
    assert p.stdin is not None and p.stdout is not None
    orphan = 0
    ok = False
    try:
        orphan = int(p.stdout.readline())
        assert p.wait() == 0          # the orphan is ours now; it exits on EOF
        p.stdin.close()
        want = {(p.pid, False): 0, (orphan, True): 3}
        got: Dict[Tuple[int, bool], Optional[int]] = {}
        while not want.keys() <= got.keys():
            ev = exits.get(timeout=30)
            got[(ev.pid, ev.orphan)] = ev.returncode
            # Anything else: a stray orphan of an earlier round that failed
            # under fault injection before it could learn its orphan's pid.
            assert (ev.pid, ev.orphan) in want or ev.orphan, ev
        assert {key: got[key] for key in want} == want
        ok = True
    finally:
        with contextlib.ExitStack() as cleanup:   # e.g. an injected fault in wait()
            cleanup.callback(p.close)
            cleanup.callback(p.wait)
            cleanup.callback(p.stdin.close)
        if not ok and orphan:   # let the orphan finish, so its exit is not a later surprise
            wait_until(lambda: state(orphan) == "", f"orphan {orphan} to be reaped", 30)


def strace_one_spawn(tmp_path: pathlib.Path, syscalls: str) -> Tuple[str, List[str], str]:
    """``strace -f -e trace=SYSCALLS`` (clone3 among them) of a Python that
    spawns ``true`` with pidsafe, waits for it and closes it: the trace, the
    flags of its one clone3 (asserted one) and the pid that clone3 made.
    Skips where strace is not installed."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")
    trace = tmp_path / "trace"
    code = "import pidsafe; p = pidsafe.spawn(['true']); p.wait(); p.close()"
    with pidsafe.spawn([strace, "-f", "-qq", "-e", f"trace={syscalls}", "-o", str(trace),
                        sys.executable, "-c", code], stdout=PIPE, stderr=PIPE) as p:
        _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err.decode()
    text = trace.read_text()
    # "1234 clone3({flags=CLONE_VM|CLONE_PIDFD|CLONE_VFORK, ...} <unfinished ...>"
    # and, once the child has exec'd, "1234 <... clone3 resumed> ...) = 1240".
    flags = re.findall(r"^\d+\s+clone3\(\{flags=([A-Z_|]+)", text, re.M)
    made = re.findall(r"clone3.*\) = (\d+)$", text, re.M)
    assert len(flags) == len(made) == 1, text
    return text, flags[0].split("|"), made[0]
