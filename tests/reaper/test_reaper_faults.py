"""Fault injection for the reaper: every k, with EMFILE and with a Ctrl-C.

``faults`` counts (and fails) calls from every thread, the reaper thread's
included, so a failure lands either in the caller (which must raise a typed
error and leave nothing behind) or in the reaper thread (which must survive
and lose no exit, every status exact).  Interrupts land only in the main
thread (Python runs signal handlers there).  After each k: no fd, child or
mount left (``leak_check``), the reaper still running, and nothing but exact
statuses published.
"""

from __future__ import annotations

import errno
import signal
from typing import Callable, Iterator, List

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.reaper import _foreign, _slot
from conftest import (SH, foreign_spawn, leak_check, orphan_round, reaper_passes,
                      reaper_settled)
from faults import Faults, Interrupt


@pytest.fixture
def quiet_subreaper() -> "Iterator[pidsafe.Reaper]":
    """A subreaper that scans only when woken (or an exit asks for it), so a
    leak check between two operations never sees a scan's transient fds."""
    r = pidsafe.Reaper(subreaper=True, scan_interval=60).start()
    try:
        yield r
    finally:
        r.stop()


def pending_exits(r: pidsafe.Reaper, sub: pidsafe.Subscription) -> List[pidsafe.Exit]:
    """What ``r`` has published so far (once it has nothing left to retry)."""
    reaper_settled(r)
    out = []
    while True:
        try:
            out.append(sub.get(timeout=0))
        except TimeoutError:
            return out


# -- start / stop -------------------------------------------------------------------------

@pytest.mark.parametrize("subreaper", [False, True], ids=["default", "subreaper"])
def test_start_stop_under_emfile(faults: Faults, subreaper: bool) -> None:
    def op() -> None:
        with pidsafe.Reaper(subreaper=subreaper, scan_interval=0.05) as r:
            r.subscribe().close()

    n = faults.count(op)
    for k in range(1, n + 3):
        with leak_check(f"k={k}"):
            r = pidsafe.Reaper(subreaper=subreaper, scan_interval=0.05)
            try:
                with faults.fail_at(k, errno.EMFILE):
                    r.start()
                    r.stop()
            except OSError as exc:
                assert exc.errno == errno.EMFILE, (k, exc)
            r.stop()
            assert not r.running
        assert not _sys.child_subreaper()


def test_a_failed_start_that_cannot_put_the_subreaper_flag_back_still_releases(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """start() fails after setting the subreaper flag, and its undo cannot clear
    the flag: that error is raised (the process stays a subreaper, which the
    caller must know), and the reaper's fds and subreaper slot are released all
    the same (they were not: the undo stopped at the failed restore)."""
    def fail_watch(book: object) -> None:
        raise OSError(errno.EMFILE, "watching foreign starts")

    def fail_restore(previous: int) -> None:
        raise OSError(errno.EPERM, "prctl(PR_SET_CHILD_SUBREAPER)")

    monkeypatch.setattr(_foreign, "watch_foreign_starts", fail_watch)
    monkeypatch.setattr(_slot, "restore", fail_restore)
    try:
        with leak_check("failed start"):
            r = pidsafe.Reaper(subreaper=True)
            with pytest.raises(OSError) as ei:
                r.start()
            assert ei.value.errno == errno.EPERM, ei.value
            assert isinstance(ei.value.__context__, OSError)
            assert ei.value.__context__.errno == errno.EMFILE
            assert not r.running
            r.stop()   # nothing left to do
    finally:
        monkeypatch.undo()
        _sys.set_child_subreaper(False)
    with pidsafe.Reaper(subreaper=True):   # the subreaper slot was given back
        assert _sys.child_subreaper()
    assert not _sys.child_subreaper()


@pytest.mark.parametrize("subreaper", [False, True], ids=["default", "subreaper"])
def test_start_stop_under_interrupts(faults: Faults, subreaper: bool) -> None:
    def op() -> None:
        with pidsafe.Reaper(subreaper=subreaper, scan_interval=0.05):
            pass

    n = faults.count(op)
    for k in range(1, n + 3):
        with leak_check(f"k={k}"):
            r = pidsafe.Reaper(subreaper=subreaper, scan_interval=0.05)
            try:
                with faults.interrupt_at(k):
                    with r:
                        pass
            except Interrupt:
                pass
            r.stop()   # finishes a stop() that was interrupted
            assert not r.running
        assert not _sys.child_subreaper()


# -- spawn / watch ---------------------------------------------------------------------------

def _sweep_spawn(r: pidsafe.Reaper, faults: Faults,
                 arm: Callable[[int], "object"], expect: type) -> None:
    with r.subscribe() as exits:
        def op() -> None:
            p = r.spawn([SH, "-c", "exit 7"])
            ev = exits.get(timeout=30)
            assert (ev.process, ev.returncode) == (p, 7)
            p.close()

        n = faults.count(op)
        reaper_passes(r)
        for k in range(1, n + 3):
            with leak_check(f"k={k}"):
                p = None
                try:
                    with arm(k):  # type: ignore[attr-defined]
                        p = r.spawn([SH, "-c", "exit 7"])
                except expect as exc:
                    if isinstance(exc, OSError):
                        assert exc.errno == errno.EMFILE, (k, exc)
                if p is not None:
                    ev = exits.get(timeout=30)
                    assert (ev.process, ev.returncode) == (p, 7), k
                    p.close()
                for ev in pending_exits(r, exits):
                    # A child created before the failure: killed and reaped.
                    assert ev.returncode is not None and ev.process is not None, (k, ev)
                    ev.process.close()
                assert r.running, f"k={k}: the reaper thread died"


def test_reaper_spawn_under_emfile(reaper: pidsafe.Reaper, faults: Faults) -> None:
    _sweep_spawn(reaper, faults, lambda k: faults.fail_at(k, errno.EMFILE), OSError)


def test_reaper_spawn_under_interrupts(reaper: pidsafe.Reaper, faults: Faults) -> None:
    _sweep_spawn(reaper, faults, lambda k: faults.interrupt_at(k), Interrupt)


def test_interrupt_between_lease_and_registration(reaper: pidsafe.Reaper,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The reaper's own part of spawn: a signal handler raising right after
    the pidfd is leased must not leak the lease (the fd would stay open for
    ever after close()); the spawn raises, its child killed and reaped."""
    from pidsafe.process import PidfdLease

    real = PidfdLease.take

    def lease_then_ctrl_c(process: pidsafe.Process) -> PidfdLease:
        lease = real(process)
        signal.raise_signal(signal.SIGINT)   # the handler runs right here
        return lease

    def on_sigint(signum: int, frame: object) -> None:
        raise Interrupt("Ctrl-C")

    monkeypatch.setattr(PidfdLease, "take", staticmethod(lease_then_ctrl_c))
    old = signal.signal(signal.SIGINT, on_sigint)
    try:
        with reaper.subscribe() as exits, leak_check("interrupted watch"):
            with pytest.raises(Interrupt):
                reaper.spawn(["sleep", "100"])
            ev = exits.get(timeout=30)
            assert pending_exits(reaper, exits) == []   # and the lease has ended
            assert ev.returncode == -signal.SIGKILL and ev.process is not None
            assert ev.process.closed
    finally:
        signal.signal(signal.SIGINT, old)
    assert reaper.running


def test_subreaper_spawn_under_emfile(quiet_subreaper: pidsafe.Reaper, faults: Faults) -> None:
    _sweep_spawn(quiet_subreaper, faults, lambda k: faults.fail_at(k, errno.EMFILE), OSError)


def test_watch_under_faults(reaper: pidsafe.Reaper, faults: Faults) -> None:
    with reaper.subscribe() as exits:
        def op() -> None:
            p = pidsafe.spawn([SH, "-c", "exit 5"])
            reaper.watch(p)
            assert exits.get(timeout=30).returncode == 5
            p.close()

        n = faults.count(op)
        for k in range(1, n + 3):
            for arm in (lambda: faults.fail_at(k, errno.EMFILE), lambda: faults.interrupt_at(k)):
                with leak_check(f"k={k}"):
                    p = pidsafe.spawn([SH, "-c", "exit 5"])
                    watched = False
                    try:
                        with arm():
                            reaper.watch(p)
                            watched = True
                            ev = exits.get(timeout=30)
                            assert (ev.process, ev.returncode) == (p, 5), k
                    except Interrupt:
                        pass
                    if watched:
                        p.close()
                    else:
                        assert p.wait() == 5
                        p.close()
                    for ev in pending_exits(reaper, exits):
                        assert (ev.process, ev.returncode) == (p, 5), (k, ev)
                    assert reaper.running


# -- claims and orphans (subreaper mode) -----------------------------------------------------

def test_claims_and_orphans_under_emfile(quiet_subreaper: pidsafe.Reaper,
                                        faults: Faults) -> None:
    subreaper = quiet_subreaper
    with subreaper.subscribe() as exits:
        def op() -> None:
            with subreaper.claim() as claim:
                claim.pid = foreign_spawn("exit 5")
                assert claim.wait(timeout=30) == 5
            orphan_round(subreaper, exits, faults.paused)

        n = faults.count(op)
        reaper_passes(subreaper)
        for k in range(1, n + 3):
            with leak_check(f"k={k}"):
                claimed = 0
                try:
                    with faults.fail_at(k, errno.EMFILE):
                        with subreaper.claim() as claim:
                            claim.pid = claimed = foreign_spawn("exit 5")
                            assert claim.wait(timeout=30) == 5, k
                        # pidsafe.spawn's own faults are swept in tests/process: a
                        # spawn failing half-way could leave a stray orphan.
                        orphan_round(subreaper, exits, faults.paused)
                except OSError as exc:   # the k-th call was the caller's (wait())
                    assert exc.errno == errno.EMFILE, (k, exc)
                for ev in pending_exits(subreaper, exits):
                    assert ev.pid != claimed, f"k={k}: a claimed exit was published: {ev}"
                    assert ev.returncode is not None, (k, ev)
                assert subreaper.running, f"k={k}: the reaper thread died"
