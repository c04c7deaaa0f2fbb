"""Hardening regressions of the reaper: claims, threads, fork.

Each test fails on the code before the fix it names.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import warnings
from typing import Iterator, List, Optional

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.process import _lease, _process

from conftest import (SH, assert_quiet, drain, foreign_spawn, orphan_round, reaper_passes,
                      state, unreaped_child, wait_exited, wait_until)
from faults import Faults

TRUE = "/bin/true"


# -- claims: pin, don't reap, while one is pending ----------------------------------

def test_pending_claim_pins_unknown_children_instead_of_reaping(
        subreaper: pidsafe.Reaper) -> None:
    """Before: an unknown child that exited while a claim was pending was
    reaped at once, freeing its pid, which a later child could then reuse and
    the claim bind to.  Now it stays a zombie until no claim is pending."""
    with subreaper.subscribe() as exits:
        claim = subreaper.claim()
        other = foreign_spawn("exit 5")          # not the claimed child
        wait_until(lambda: state(other) == "Z", "the other child to exit")
        reaper_passes(subreaper, 3)              # scans have seen it exit
        assert unreaped_child(other)             # pinned, so its pid cannot be reused
        with pytest.raises(TimeoutError):
            exits.get(timeout=0)
        mine = foreign_spawn("exit 6")
        claim.pid = mine
        assert claim.wait(timeout=10) == 6
        ev = exits.get(timeout=10)               # nothing pending now: an orphan
        assert (ev.pid, ev.returncode, ev.orphan) == (other, 5, True)
        claim.close()
        assert_quiet(exits, 0.05)


def test_dropped_claim_stops_pending(subreaper: pidsafe.Reaper) -> None:
    """A claim dropped without close() (e.g. an exception between claim() and
    ``with``) must not hold every unknown child back for ever."""
    with subreaper.subscribe() as exits:
        claim = subreaper.claim()
        other = foreign_spawn("exit 9")
        wait_until(lambda: state(other) == "Z", "the child to exit")
        reaper_passes(subreaper, 2)
        assert unreaped_child(other)
        del claim
        reaper_passes(subreaper, 1)
        ev = exits.get(timeout=10)
        assert (ev.pid, ev.returncode, ev.orphan) == (other, 9, True)


def test_every_exit_is_published_by_the_reaper_thread(
        subreaper: pidsafe.Reaper, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: ``claim.pid = pid`` published the exits held back for claims
    from the caller's thread, racing the reaper thread's own publishing, so
    two subscribers could see two orders."""
    publishers: List[str] = []
    real = pidsafe.Subscription._put_many

    def spy(self: pidsafe.Subscription, exits: object) -> bool:
        publishers.append(threading.current_thread().name)
        return real(self, exits)  # type: ignore[arg-type]

    monkeypatch.setattr(pidsafe.Subscription, "_put_many", spy)
    with subreaper.subscribe() as first, subreaper.subscribe() as second:
        claim = subreaper.claim()
        others = [foreign_spawn(f"exit {i}") for i in range(5)]
        for pid in others:
            wait_until(lambda: state(pid) == "Z", "the children to exit")
        reaper_passes(subreaper, 2)
        mine = foreign_spawn("exit 7")
        claim.pid = mine
        assert claim.wait(timeout=10) == 7
        claim.close()
        a, b = drain(first, 5), drain(second, 5)
    assert [e.pid for e in a] == [e.pid for e in b]
    assert {e.pid for e in a} == set(others)
    assert publishers and set(publishers) == {"pidsafe-reaper"}


# -- the reaper thread never waits for a user thread -----------------------------------

def test_reaper_delivers_other_exits_while_a_process_is_busy(
        reaper: pidsafe.Reaper) -> None:
    """Before: the reaper reaped with ``Process.poll()``, which blocks on the
    Process lock; a user thread holding it (kill()/poll()/close() are
    syscalls under it, then a wait for the GIL) stalled every delivery."""
    with reaper.subscribe() as exits:
        a = reaper.spawn(["sleep", "100"])
        b = reaper.spawn(["sleep", "100"])
        with a._lock:   # a user thread inside one of a's methods
            _sys.pidfd_send_signal(a.fileno(), signal.SIGKILL)
            wait_exited(a)       # a's event is ahead of b's in the ready list
            b.kill()
            ev = exits.get(timeout=10)
            assert (ev.process, ev.returncode) == (b, -signal.SIGKILL)
        ev = exits.get(timeout=10)
        assert (ev.process, ev.returncode) == (a, -signal.SIGKILL)
    for p in (a, b):
        p.wait()
        p.close()


def test_blocking_wait_in_a_user_thread_does_not_stall_the_reaper(
        reaper: pidsafe.Reaper) -> None:
    """A user thread blocked in ``wait()`` (which may reap the child first)
    never holds up the reaper's other deliveries, and both see the code."""
    with reaper.subscribe() as exits:
        a = reaper.spawn([SH, "-c", "read x; exit 3"], stdin=subprocess.PIPE)
        got: List[int] = []
        waiter = threading.Thread(target=lambda: got.append(a.wait()))
        waiter.start()

        def blocked_in_waitid() -> bool:
            assert waiter.native_id is not None
            with open(f"/proc/self/task/{waiter.native_id}/wchan") as f:
                return f.read() == "do_wait"

        wait_until(blocked_in_waitid, "wait() to block in the kernel")
        assert a.stdin is not None
        a.stdin.close()
        b = reaper.spawn([SH, "-c", "exit 4"])
        results = {e.process: e.returncode for e in drain(exits, 2)}
        waiter.join()
    assert results == {a: 3, b: 4} and got == [3]
    for p in (a, b):
        p.close()


# -- EMFILE and friends never kill the reaper thread ----------------------------------------

def test_reaper_thread_survives_emfile(subreaper: pidsafe.Reaper, faults: Faults) -> None:
    """Before: EMFILE in a scan (opening /proc or a pidfd) ended the reaper
    thread for good.  Now every failure is retried: no exit is lost, and
    each is exact."""
    with subreaper.subscribe() as exits:
        n = faults.count(lambda: orphan_round(subreaper, exits))
        for k in range(1, n + 1):
            try:
                with faults.fail_at(k, errno.EMFILE):
                    orphan_round(subreaper, exits)
            except OSError as exc:   # the k-th call was the spawn's own
                assert exc.errno == errno.EMFILE, (k, exc)
                reaper_passes(subreaper, 2)
                while True:           # what that failed spawn left (nothing, or a killed child)
                    try:
                        ev = exits.get(timeout=0)
                    except TimeoutError:
                        break
                    assert ev.returncode is not None
            assert subreaper.running, f"k={k}: the reaper thread died"


# -- orphan exits cost O(other fds), not O(open handles) --------------------------------------

def test_orphan_exit_does_not_read_every_handle(subreaper: pidsafe.Reaper,
                                                faults: Faults) -> None:
    """Before: each orphan exit read /proc/self/fd/N for every fd, so 2,000
    open handles cost thousands of syscalls per exit (seconds for 100)."""
    with subreaper.subscribe() as exits:
        def readlinks() -> int:
            faults.count(lambda: orphan_round(subreaper, exits))
            return faults.calls.count("os.readlink")

        without = readlinks()
        handles = [pidsafe.Process.from_pid(os.getpid()) for _ in range(300)]
        try:
            with_handles = readlinks()
        finally:
            for h in handles:
                h.close()
    # The old code read every fd for each exit: 300 or more more here.  The
    # margin absorbs the periodic scans a loaded machine adds to one round.
    assert with_handles <= without + 100, (without, with_handles)


# -- fork() while the reaper thread holds a Process lock --------------------------------------

@pytest.fixture
def reaper_inside_a_lock(monkeypatch: pytest.MonkeyPatch
                         ) -> Iterator["tuple[threading.Event, threading.Event]"]:
    inside, release = threading.Event(), threading.Event()
    target: List[Optional[pidsafe.Process]] = [None]

    def hook(proc: pidsafe.Process) -> None:
        if proc is target[0]:
            inside.set()
            release.wait(30)

    monkeypatch.setattr(_lease, "_lease_test_hook", hook)
    inside.target = target  # type: ignore[attr-defined]
    try:
        yield inside, release
    finally:
        release.set()


def test_fork_while_the_reaper_thread_holds_a_process_lock(
        reaper: pidsafe.Reaper,
        reaper_inside_a_lock: "tuple[threading.Event, threading.Event]") -> None:
    """Before: the child inherited the Process lock held by the (vanished)
    reaper thread: poll()/close()/__del__ hung for ever there.  Now the
    parent's handle refuses use in the child with a clear error, at once,
    and close() and __del__ work."""
    inside, release = reaper_inside_a_lock
    p = pidsafe.spawn([TRUE])
    inside.target[0] = p  # type: ignore[attr-defined]
    reaper.watch(p)
    assert inside.wait(30), "the reaper thread never reaped"
    r, w = os.pipe2(os.O_CLOEXEC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork + threads, 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - reports through the pipe
        try:
            signal.alarm(20)      # a hang ends as SIGALRM, not as a stuck test
            os.close(r)
            try:
                p.poll()          # the parent's handle: refused, never a hang
                rc = "poll() worked"
            except ValueError as exc:
                rc = "refused" if "fork()" in str(exc) else repr(exc)
            p.close()
            q = pidsafe.Process.from_pid(os.getpid())
            del q                 # __del__ of a handle: no hang either
            os.write(w, f"ok {rc}".encode())
        except BaseException as exc:
            os.write(w, f"error {exc!r}".encode())
        os._exit(0)
    os.close(w)
    release.set()
    data = b""
    while chunk := os.read(r, 4096):
        data += chunk
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, data
    assert data.startswith(b"ok refused"), data
    assert p.wait() == 0
    p.close()


# -- subreaper mode and subprocess: loud, documented, refusable ---------------------------------

def test_subreaper_warns_about_unclaimed_foreign_children(subreaper: pidsafe.Reaper) -> None:
    """Subreaper mode reaps a Popen child like an orphan, so Popen.wait()
    returns 0 (Popen's rule for ECHILD).  Before: silently.  Now: a
    ForeignChildWarning at the caller's line, none inside a claim, and the
    start is refused when the warning is an error."""
    with subreaper.subscribe() as exits:
        with pytest.warns(pidsafe.ForeignChildWarning, match="Popen.wait") as record:
            popen = subprocess.Popen([SH, "-c", "exit 3"])
        assert record[0].filename == __file__
        ev = exits.get(timeout=10)
        assert (ev.pid, ev.returncode, ev.orphan) == (popen.pid, 3, True)
        assert popen.wait() == 0      # the documented hazard
        with subreaper.claim() as claim:   # filterwarnings=error: a warning would raise
            popen = subprocess.Popen([SH, "-c", "exit 4"])
            claim.pid = popen.pid
            popen.returncode = claim.wait(timeout=10)
        assert popen.returncode == 4
        with warnings.catch_warnings():
            warnings.simplefilter("error", pidsafe.ForeignChildWarning)
            with pytest.raises(pidsafe.ForeignChildWarning):
                subprocess.Popen([SH, "-c", "exit 5"])    # refused: no child exists
        assert_quiet(exits, 0.05)


def test_default_mode_does_not_warn_about_subprocess(reaper: pidsafe.Reaper) -> None:
    assert subprocess.run([SH, "-c", "exit 6"]).returncode == 6   # filterwarnings=error


def test_a_failed_reaper_thread_reports_its_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the subscription's end reason referred to the except block's
    name after it was unbound: ``get()`` raised NameError, not ReaperError."""
    from pidsafe.reaper import _thread

    def broken(self: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(_thread.ReaperLoop, "run", broken)
    r = pidsafe.Reaper()
    sub = r.subscribe()
    r.start()
    with pytest.raises(pidsafe.ReaperError, match="a bug"):
        sub.get(timeout=30)
    with pytest.raises(pidsafe.ReaperError, match="a bug"):
        r.stop()


def test_a_reaped_handle_no_longer_holds_its_pid() -> None:
    """The handle index answers "does a pidsafe handle hold this child?" for
    the subreaper.  Once the handle's process is reaped its pid is free: a
    recycled orphan with that pid must not look held (it would never be
    reaped while the handle stays open)."""
    from pidsafe.process._lease import handle_holds

    p = pidsafe.spawn([TRUE])
    try:
        assert handle_holds(p.pid)
        assert p.wait() == 0
        assert not handle_holds(p.pid)
    finally:
        p.close()
