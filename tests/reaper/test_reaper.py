"""pidsafe.Reaper: no lost exit, no stolen status, no big lock.

The stress test runs 16 threads x 500 spawns (about 7 s on two
cores); ``PIDSAFE_REAPER_THREADS`` / ``PIDSAFE_REAPER_SPAWNS`` resize it.
Repeat everything with ``--count N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
import select
import subprocess
import sys
import threading
import time
import warnings
from typing import Dict, Iterator, List, Set, Tuple

import pytest

import pidsafe
from pidsafe import _sys

from conftest import (SH, assert_quiet, close_all, drain, foreign_spawn, held_foreign_child,
                      reaper_passes, state, unreaped_child, wait_exited, wait_until)

TRUE = "/bin/true"


# -- the basics ----------------------------------------------------------------

def test_the_docstring_example(reaper: pidsafe.Reaper) -> None:
    with reaper.subscribe() as exits:
        p = reaper.spawn([SH, "-c", "exit 7"])
        ev = exits.get(timeout=5)
    assert ev == pidsafe.Exit(pid=p.pid, returncode=7, process=p, orphan=False,
                              timestamp=ev.timestamp)
    assert ev.timestamp <= time.monotonic()
    assert p.wait() == 7
    p.close()


def test_every_subscriber_gets_each_exit_once(reaper: pidsafe.Reaper) -> None:
    subs = [reaper.subscribe() for _ in range(3)]
    procs = [reaper.spawn([SH, "-c", f"exit {i}"]) for i in range(10)]
    for sub in subs:
        got = drain(sub, 10)
        assert sorted((e.pid, e.returncode) for e in got) == sorted(
            (p.pid, i) for i, p in enumerate(procs))
        assert_quiet(sub, 0.1)
        sub.close()
    assert [p.wait() for p in procs] == list(range(10))
    close_all(procs)


def test_signal_return_code_and_user_wait_race(reaper: pidsafe.Reaper) -> None:
    with reaper.subscribe() as exits:
        p = reaper.spawn(["sleep", "100"])
        p.terminate()
        assert p.wait(timeout=5) == -signal.SIGTERM   # we may reap before the reaper
        ev = exits.get(timeout=5)
    assert (ev.process, ev.returncode) == (p, -signal.SIGTERM)
    p.close()


def test_exits_at_once_and_exec_failure(reaper: pidsafe.Reaper) -> None:
    with reaper.subscribe() as exits:
        procs = [reaper.spawn([TRUE]) for _ in range(20)]
        with pytest.raises(FileNotFoundError) as info:
            reaper.spawn(["/nonexistent/pidsafe-no-such-program"])
        assert info.value.filename == "/nonexistent/pidsafe-no-such-program"
        with pytest.raises(NotADirectoryError):
            reaper.spawn([TRUE], cwd="/etc/passwd")
        got = drain(exits, 20)
        assert {e.process for e in got} == set(procs)
        assert all(e.returncode == 0 for e in got)
        assert_quiet(exits)   # no event for the children that never ran
    close_all(procs)


@contextlib.contextmanager
def fd_limit_at_least(need: int) -> Iterator[None]:
    """Raise the soft RLIMIT_NOFILE to ``need`` for the block (skip if the hard one is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_many_threads_many_spawns_every_exit_once() -> None:
    threads = int(os.environ.get("PIDSAFE_REAPER_THREADS", "16"))
    per_thread = int(os.environ.get("PIDSAFE_REAPER_SPAWNS", "500"))
    total = threads * per_thread
    # Every Process stays open (with its pidfd) until the end.
    with fd_limit_at_least(total + 200):
        _many_threads_many_spawns(threads, per_thread, total)


def _many_threads_many_spawns(threads: int, per_thread: int, total: int) -> None:
    expected: Dict[pidsafe.Process, int] = {}
    lock = threading.Lock()
    errors: List[BaseException] = []
    with pidsafe.Reaper() as reaper, reaper.subscribe(maxsize=total) as exits:
        def spawner(t: int) -> None:
            try:
                for i in range(per_thread):
                    code = (t * per_thread + i) % 256
                    p = reaper.spawn([SH, "-c", f"exit {code}"])
                    with lock:
                        expected[p] = code
                    if i % 3 == 0:
                        assert p.wait() == code   # racing the reaper for it
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        workers = [threading.Thread(target=spawner, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        got = drain(exits, total, timeout=120)
        for w in workers:
            w.join()
        assert not errors, errors
        assert_quiet(exits)
    seen: Set[pidsafe.Process] = set()
    for ev in got:
        assert ev.process is not None and ev.process not in seen
        seen.add(ev.process)
        assert ev.returncode == expected[ev.process] == ev.process.returncode
        assert ev.pid == ev.process.pid and not ev.orphan
    assert seen == set(expected)
    close_all(list(expected))


def test_thousand_sleepers_killed_together() -> None:
    n = 1000
    # A pidfd per child (the reaper borrows it, no duplicate).
    with fd_limit_at_least(n + 200):
        with pidsafe.Reaper() as reaper, reaper.subscribe(maxsize=n) as exits:
            procs = [reaper.spawn(["sleep", "1000"]) for _ in range(n)]
            for p in procs:
                p.kill()
            got = drain(exits, n, timeout=60)
            assert_quiet(exits)
        assert {e.process for e in got} == set(procs)
        assert {e.returncode for e in got} == {-signal.SIGKILL}
        close_all(procs)


# -- start before exit, watch() ----------------------------------------------------

def test_exit_published_only_after_registration(reaper: pidsafe.Reaper) -> None:
    started: Set[int] = set()
    early: List[int] = []
    n = 100
    with reaper.subscribe() as exits:
        def consumer() -> None:
            for ev in drain(exits, n):
                if ev.pid not in started:
                    early.append(ev.pid)

        t = threading.Thread(target=consumer)
        t.start()
        procs = []
        for _ in range(n):
            p = pidsafe.spawn([TRUE])     # usually exited before we watch it
            started.add(p.pid)            # "publish the start event"
            reaper.watch(p)
            procs.append(p)
        t.join()
    assert early == []
    close_all(procs)


def test_watch_rules(reaper: pidsafe.Reaper) -> None:
    with reaper.subscribe() as exits:
        done = pidsafe.spawn([SH, "-c", "exit 4"])
        assert done.wait() == 4          # waited for before watch: still one event
        reaper.watch(done)
        with pytest.raises(ValueError, match="already watched"):
            reaper.watch(done)
        ev = exits.get(timeout=5)
        assert (ev.process, ev.returncode) == (done, 4)
        done.close()
        with pytest.raises(ValueError, match="closed"):
            reaper.watch(done)
        with pytest.raises(TypeError):
            reaper.watch(1234)  # type: ignore[arg-type]
        with pidsafe.Process.from_pid(1) as init:
            with pytest.raises(ValueError, match="not a child"):
                reaper.watch(init)
        assert_quiet(exits)


def test_concurrent_watch_of_one_process(reaper: pidsafe.Reaper) -> None:
    p = pidsafe.spawn(["sleep", "100"])
    barrier = threading.Barrier(8)
    results: List[str] = []

    def watch() -> None:
        barrier.wait()
        try:
            reaper.watch(p)
            results.append("watched")
        except ValueError:
            results.append("refused")

    with reaper.subscribe() as exits:
        ts = [threading.Thread(target=watch) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert sorted(results) == ["refused"] * 7 + ["watched"]
        p.kill()
        assert exits.get(timeout=5).process is p
        assert_quiet(exits)
    p.wait()
    p.close()


def test_caller_may_close_a_watched_process(reaper: pidsafe.Reaper) -> None:
    with reaper.subscribe() as exits:
        p = reaper.spawn([SH, "-c", "read x; exit 9"], stdin=subprocess.PIPE)
        assert p.stdin is not None
        p.close()                 # closes its pidfd and the pipe: sh reads EOF
        ev = exits.get(timeout=5)
    assert (ev.pid, ev.returncode, ev.process) == (p.pid, 9, p)
    assert p.returncode == 9


def test_foreign_waitpid_minus_one_loses_no_exit(reaper: pidsafe.Reaper) -> None:
    """After exec, pidsafe children have exit signal SIGCHLD (the kernel resets
    it), so a waitpid(-1) elsewhere can take the status; the kernel keeps it on
    the pidfd (PIDFD_INFO_EXIT) and the reaper still publishes the exact code."""
    if not pidsafe.features().pidfd_info_exit:
        pytest.skip("needs PIDFD_INFO_EXIT (Linux 6.15)")
    stop = threading.Event()

    def thief() -> None:
        while not stop.is_set():
            try:
                os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.0005)

    t = threading.Thread(target=thief)
    t.start()
    try:
        with reaper.subscribe() as exits:
            procs = [reaper.spawn([SH, "-c", f"sleep 0.01; exit {i}"]) for i in range(30)]
            got = {e.process: e.returncode for e in drain(exits, 30)}
    finally:
        stop.set()
        t.join()
    assert got == {p: i for i, p in enumerate(procs)}
    close_all(procs)


# -- coexistence ------------------------------------------------------------------

def test_popen_and_fork_keep_their_codes(reaper: pidsafe.Reaper) -> None:
    stop = threading.Event()
    churned: List[pidsafe.Process] = []

    def churn() -> None:
        while not stop.is_set():
            churned.append(reaper.spawn([TRUE]))

    t = threading.Thread(target=churn)
    t.start()
    try:
        for i in range(5):
            assert subprocess.Popen([SH, "-c", f"exit {10 + i}"]).wait() == 10 + i
            assert subprocess.run([SH, "-c", "exit 3"]).returncode == 3
            pid = foreign_spawn(f"exit {20 + i}")
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 20 + i
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork + threads, 3.12+
                pid = os.fork()
            if pid == 0:
                os._exit(30 + i)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 30 + i
    finally:
        stop.set()
        t.join()
    close_all(churned)


# -- slow subscribers ------------------------------------------------------------------

def test_slow_subscriber_overflows_without_stalling_others(reaper: pidsafe.Reaper) -> None:
    slow = reaper.subscribe(maxsize=5)
    with reaper.subscribe() as fast:
        procs = [reaper.spawn([SH, "-c", f"exit {i}"]) for i in range(20)]
        got = drain(fast, 20)       # the stuck subscriber stalls nobody
        assert {e.process for e in got} == set(procs)
    assert all(p.returncode is not None for p in procs)
    assert slow.overflowed and slow.qsize() == 5
    first = [slow.get(timeout=1) for _ in range(5)]   # the gap-free prefix
    assert [e.pid for e in first] == [e.pid for e in got[:5]]
    with pytest.raises(pidsafe.SubscriptionOverflow) as info:
        slow.get(timeout=1)
    assert info.value.maxsize == 5
    with pytest.raises(pidsafe.SubscriptionOverflow):
        next(iter(slow))
    # Detached: nothing more is queued for it, so its memory stays bounded.
    with reaper.subscribe() as check:
        extra = reaper.spawn([TRUE])
        assert check.get(timeout=5).process is extra
    assert slow.qsize() == 0
    slow.close()
    close_all(procs + [extra])


def test_subscription_bounds_and_close(reaper: pidsafe.Reaper) -> None:
    with pytest.raises(ValueError):
        reaper.subscribe(maxsize=0)
    sub = reaper.subscribe()
    assert_quiet(sub, 0.05)
    with pytest.raises(TimeoutError):
        sub.get(timeout=0)
    result: List[BaseException] = []

    def blocked() -> None:
        try:
            sub.get()
        except BaseException as exc:
            result.append(exc)

    t = threading.Thread(target=blocked)
    t.start()
    wait_until(lambda: len(sub._cond._waiters) > 0, "get() to block")  # type: ignore[attr-defined]
    sub.close()
    t.join(5)
    assert not t.is_alive() and isinstance(result[0], pidsafe.SubscriptionClosed)
    assert list(sub) == []
    sub.close()   # idempotent


# -- asyncio ------------------------------------------------------------------------------

def test_asyncio_awaits_without_blocking_the_loop(reaper: pidsafe.Reaper) -> None:
    async def main() -> None:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        tick = asyncio.create_task(ticker())
        with reaper.subscribe() as exits:
            p = reaper.spawn([SH, "-c", "sleep 0.2; exit 5"])
            ev = await asyncio.wait_for(exits.get_async(), 5)
            assert (ev.process, ev.returncode) == (p, 5)
            assert await p.wait_async() == 5
            assert ticks >= 2         # the loop ran while we waited
            procs = [reaper.spawn([SH, "-c", f"exit {i}"]) for i in range(5)]
            got = []
            async for ev in exits:
                got.append(ev)
                if len(got) == 5:
                    break
            assert {e.process: e.returncode for e in got} == {q: i for i, q in enumerate(procs)}
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(exits.get_async(), 0.05)   # cancel-safe
            late = reaper.spawn([TRUE])
            assert (await asyncio.wait_for(exits.get_async(), 5)).process is late
        tick.cancel()
        for q in [p, late] + procs:
            q.close()

    asyncio.run(main())


def test_asyncio_iteration_ends_when_closed(reaper: pidsafe.Reaper) -> None:
    async def main() -> List[pidsafe.Exit]:
        sub = reaper.subscribe()
        asyncio.get_running_loop().call_later(0.05, sub.close)
        return [ev async for ev in sub]

    assert asyncio.run(main()) == []


# -- subreaper mode ---------------------------------------------------------------------

def test_orphan_storm_leaves_no_zombie(subreaper: pidsafe.Reaper) -> None:
    n = 40
    with subreaper.subscribe() as exits:
        procs = [subreaper.spawn([SH, "-c", "sleep 0.1 >/dev/null & echo $!; exit 0"],
                                 stdout=subprocess.PIPE) for _ in range(n)]
        orphans = set()
        for p in procs:
            out, _ = p.communicate(timeout=10)
            orphans.add(int(out))
        got = drain(exits, 2 * n)
        assert_quiet(exits)
    owned = [e for e in got if not e.orphan]
    lost = [e for e in got if e.orphan]
    assert {e.process for e in owned} == set(procs) and {e.returncode for e in owned} == {0}
    assert {e.pid for e in lost} == orphans
    assert all(e.returncode == 0 and e.process is None for e in lost)
    assert not any(unreaped_child(pid) for pid in orphans)
    close_all(procs)


class _Host:
    """The reaper as OrphanScanner sees it, with one registered owned child."""

    def __init__(self, process: pidsafe.Process) -> None:
        self.process = process
        self.published: List[pidsafe.Exit] = []

    def owns_pid(self, pid: int) -> bool:
        return pid == self.process.pid

    def known_fds(self) -> Set[int]:
        return {self.process.fileno()}   # the reaper leases its pidfd

    def add_pinned(self, fd: int, pid: int) -> None:
        raise AssertionError("not expected to pin")


def test_held_child_registered_since_is_left_to_the_owned_path() -> None:
    """Reaper.spawn() is spawn() then watch(): a scan in between can pin the
    child, which, exiting before watch(), is held (its Process holds a
    pidfd).  When watch() has registered it, that pidfd is one of the
    reaper's own fds, which the holder check excludes: the scanner must see
    that the child is owned and leave it, or its exit is published twice
    (as an orphan, then as owned).  Found by test_orphan_storm (~3 %)."""
    from pidsafe.reaper._claim import ClaimBook
    from pidsafe.reaper._orphans import OrphanScanner, pin_child

    p = pidsafe.spawn([SH, "-c", "exit 4"])
    wait_exited(p)
    pinned = pin_child(p.pid)
    assert pinned is not None
    host = _Host(p)
    scanner = OrphanScanner(host, ClaimBook(host.owns_pid, lambda: None))
    scanner.held[p.pid] = pinned
    try:
        assert scanner._recheck_held({p.pid}) == []
        assert p.pid not in scanner.held        # forgotten, and its pidfd closed
    finally:
        scanner.close()
    assert p.wait() == 4                        # still there for its owner
    p.close()


def test_orphan_of_a_grandchild_is_found_by_the_timer(subreaper: pidsafe.Reaper) -> None:
    # p stays alive; its child dies and leaves us a grandchild: nothing we
    # reap announces that, so the periodic scan must find it.
    with subreaper.subscribe() as exits:
        p = subreaper.spawn(
            [SH, "-c", "sh -c 'sleep 0.3 >/dev/null & echo $!'; exec sleep 100"], stdout=subprocess.PIPE)
        assert p.stdout is not None
        grandchild = int(p.stdout.readline())
        ev = exits.get(timeout=5)
        assert (ev.pid, ev.orphan, ev.returncode) == (grandchild, True, 0)
        p.kill()
        assert exits.get(timeout=5).process is p
    p.wait()
    p.close()


def test_subreaper_does_not_steal_pidsafe_children(subreaper: pidsafe.Reaper) -> None:
    with subreaper.subscribe() as exits:
        p = pidsafe.spawn([SH, "-c", "exit 6"])   # not the reaper's: its own owner reaps
        wait_exited(p)
        reaper_passes(subreaper, 3)   # several scans see the zombie
        assert unreaped_child(p.pid)
        assert_quiet(exits, 0.05)
        assert p.wait() == 6
        p.close()
        # An owner that gives up (closes without waiting) leaves no zombie
        # and no orphan: close() reaps its exited child itself.
        q = pidsafe.spawn([SH, "-c", "exit 8"])
        pid = q.pid
        wait_exited(q)
        reaper_passes(subreaper, 2)
        assert_quiet(exits, 0.05)
        q.close()
        assert not unreaped_child(pid) and q.returncode == 8
        assert_quiet(exits, 0.05)


def test_claims(subreaper: pidsafe.Reaper) -> None:
    with subreaper.subscribe() as exits:
        with subreaper.claim() as claim:
            claim.pid = foreign_spawn("sleep 0.05; exit 3")
            assert claim.wait(timeout=5) == 3
        with subreaper.claim() as claim:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:
                os._exit(4)
            claim.pid = pid
            assert claim.wait(timeout=5) == 4
        # The child exits before the claim learns its pid: it stays a zombie
        # (pinned, not reaped), so its pid cannot be reused meanwhile.
        with subreaper.claim() as claim:
            pid = foreign_spawn("kill -9 $$")
            wait_until(lambda: state(pid) == "Z", f"pid {pid} to exit")
            reaper_passes(subreaper, 3)   # several scans saw the zombie
            assert unreaped_child(pid)       # held back for the claim, unreaped
            claim.pid = pid
            assert claim.wait(timeout=5) == -signal.SIGKILL
            assert claim.returncode == -signal.SIGKILL
        # A Popen child: the claim has its status (Popen itself must not wait).
        with subreaper.claim() as claim:
            popen = subprocess.Popen([SH, "-c", "exit 12"])
            claim.pid = popen.pid
            assert claim.wait(timeout=5) == 12
            popen.returncode = claim.returncode
        assert_quiet(exits, 0.1)     # claimed exits are not orphan events
        # Unclaimed foreign children are reaped as orphans, loudly.
        with pytest.warns(pidsafe.ForeignChildWarning, match="Popen.wait"):
            pid = foreign_spawn("exit 2")
        ev = exits.get(timeout=5)
        assert (ev.pid, ev.returncode, ev.orphan) == (pid, 2, True)
        # A claim closed while its child runs gives the exit back.
        with pytest.warns(pidsafe.ForeignChildWarning):
            pid, release = held_foreign_child(1)
        with subreaper.claim() as claim:
            claim.pid = pid
        os.close(release)
        ev = exits.get(timeout=5)
        assert (ev.pid, ev.returncode, ev.orphan) == (pid, 1, True)
        with pytest.raises(pidsafe.ReaperError, match="closed"):
            claim.wait()


def test_claim_errors(subreaper: pidsafe.Reaper, reaper: pidsafe.Reaper) -> None:
    with pytest.raises(pidsafe.ReaperError, match="subreaper mode only"):
        reaper.claim()
    with subreaper.claim() as claim:
        with pytest.raises(ValueError, match="before waiting"):
            claim.wait()
        for bad in (0, -1, True, "1"):
            with pytest.raises(ValueError):
                claim.pid = bad  # type: ignore[assignment]
        claim.pid = 1   # init: not our child
        with pytest.raises(ChildProcessError) as info:
            claim.wait(timeout=1)
        assert info.value.errno == errno.ECHILD
        with pytest.raises(ValueError, match="already set"):
            claim.pid = 2
    with subreaper.claim() as claim:
        claim.pid, release = held_foreign_child(0)
        with pytest.raises(pidsafe.TimeoutExpired):
            claim.wait(timeout=0.01)
        with subreaper.claim() as other:
            with pytest.raises(ValueError, match="already claimed"):
                other.pid = claim.pid
        os.close(release)
        assert claim.wait(timeout=5) == 0
    with subreaper.claim() as claim:
        p = subreaper.spawn(["sleep", "100"])
        with pytest.raises(ValueError, match="needs no claim"):
            claim.pid = p.pid
        p.kill()
        p.wait()
        p.close()


def test_claim_wait_async(subreaper: pidsafe.Reaper) -> None:
    async def main() -> int:
        with subreaper.claim() as claim:
            claim.pid = foreign_spawn("sleep 0.1; exit 17")
            return await asyncio.wait_for(claim.wait_async(), 5)

    assert asyncio.run(main()) == 17


def test_stop_with_a_running_orphan() -> None:
    r = pidsafe.Reaper(subreaper=True).start()
    with r.subscribe() as exits:
        p = r.spawn([SH, "-c", "sleep 100 >/dev/null & echo $!"], stdout=subprocess.PIPE)
        out, _ = p.communicate(timeout=5)
        orphan = int(out)
        assert exits.get(timeout=5).process is p
        reaper_passes(r, 2)   # pinned by a scan
        r.stop()
        assert list(exits) == []
    p.close()
    # Still our child after stop(): ours to reap now.
    assert unreaped_child(orphan)
    with pidsafe.Process.from_pid(orphan) as o:
        o.kill()
        assert o.wait(timeout=5) == -signal.SIGKILL


# -- lifecycle ------------------------------------------------------------------------------

def test_stop_is_clean_and_final() -> None:
    r = pidsafe.Reaper()
    sub = r.subscribe()             # before start: allowed
    with pytest.raises(pidsafe.ReaperError, match="start"):
        r.spawn([TRUE])
    r.start()
    with pytest.raises(pidsafe.ReaperError, match="once"):
        r.start()
    p = r.spawn([TRUE])
    threads = {t for t in threading.enumerate() if t.name == "pidsafe-reaper"}
    assert threads and r.running
    p.wait()
    r.stop()   # delivers the exits that have happened first
    assert not r.running and not any(t.is_alive() for t in threads)
    assert [e.process for e in sub] == [p]     # drained, then the stream ends
    with pytest.raises(pidsafe.SubscriptionClosed):
        sub.get(timeout=1)
    for call in (lambda: r.spawn([TRUE]), r.subscribe, r.start, lambda: r.watch(p)):
        with pytest.raises(pidsafe.ReaperError):
            call()
    r.stop()   # idempotent
    p.close()
    never = pidsafe.Reaper()
    never.stop()
    with pidsafe.Reaper() as r2:
        assert r2.running
    assert not r2.running


def test_subreaper_flag_is_restored() -> None:
    assert not _sys.child_subreaper()
    with pidsafe.Reaper(subreaper=True):
        assert _sys.child_subreaper()
    assert not _sys.child_subreaper()
    _sys.set_child_subreaper(True)
    try:
        with pidsafe.Reaper(subreaper=True):
            pass
        assert _sys.child_subreaper()
    finally:
        _sys.set_child_subreaper(False)


def test_second_reaper() -> None:
    with pidsafe.Reaper() as a, pidsafe.Reaper() as b:
        with a.subscribe() as ea, b.subscribe() as eb:
            pa = a.spawn([SH, "-c", "exit 1"])
            pb = b.spawn([SH, "-c", "exit 2"])
            assert (ea.get(timeout=5).process, eb.get(timeout=5).process) == (pa, pb)
            b.watch(pa)    # both may own one child: poll() is idempotent
            ev = eb.get(timeout=5)
            assert (ev.process, ev.returncode) == (pa, 1)
            assert_quiet(ea, 0.05)
    close_all([pa, pb])
    with pidsafe.Reaper(subreaper=True):
        with pytest.raises(pidsafe.ReaperError, match="another"):
            pidsafe.Reaper(subreaper=True).start()
    with pidsafe.Reaper(subreaper=True):   # the slot is free again
        pass


def test_forked_child_gets_a_dead_reaper(reaper: pidsafe.Reaper) -> None:
    sub = reaper.subscribe()
    r, w = os.pipe2(os.O_CLOEXEC)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its status
        code = 0
        try:
            os.close(r)
            for call in (lambda: reaper.spawn([TRUE]), reaper.subscribe,
                         lambda: sub.get(timeout=1)):
                try:
                    call()
                    code |= 1
                except pidsafe.ReaperError:
                    pass
            links = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                     if os.path.exists(f"/proc/self/fd/{fd}")]
            if any("eventpoll" in link or "eventfd" in link for link in links):
                code |= 2
            reaper.stop()      # a no-op there
            sub.close()
        except BaseException:
            code |= 4
        os._exit(code)
    os.close(w)
    os.close(r)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    p = reaper.spawn([TRUE])   # the parent's reaper is unharmed
    assert sub.get(timeout=5).process is p
    sub.close()
    close_all([p])


def test_bad_arguments() -> None:
    with pytest.raises(TypeError):
        pidsafe.Reaper(subreaper=1)  # type: ignore[arg-type]
    for bad in (0, -1, 61, True):
        with pytest.raises(ValueError):
            pidsafe.Reaper(scan_interval=bad)


def test_reaper_spawn_after_stop_race_leaves_nothing() -> None:
    r = pidsafe.Reaper().start()
    errors: List[BaseException] = []
    spawned: List[pidsafe.Process] = []

    def spawner() -> None:
        try:
            while True:
                spawned.append(r.spawn(["sleep", "100"], stdout=subprocess.DEVNULL))
        except pidsafe.ReaperError:
            pass
        except BaseException as exc:
            errors.append(exc)

    ts = [threading.Thread(target=spawner) for _ in range(4)]
    for t in ts:
        t.start()
    wait_until(lambda: len(spawned) >= 8, "the spawners to get going")
    r.stop()
    for t in ts:
        t.join()
    assert not errors
    assert spawned
    for p in spawned:
        p.kill()
    close_all(spawned)


def test_the_reaper_does_not_load_asyncio_or_subprocess() -> None:
    """A shim's daemon runs the reaper on its start-up path: asyncio (and ssl with
    it) and subprocess (with spawn()'s machinery) cost ms there that only
    get_async(), Reaper.spawn() and a timed-out Claim.wait() need."""
    code = ("import sys, pidsafe\n"
            "from pidsafe import _sys\n"
            "with pidsafe.Reaper(subreaper=True) as r, r.subscribe() as s:\n"
            "    pass\n"
            "with pidsafe.Reaper() as r, r.subscribe() as s:\n"
            "    pass\n"
            "loaded = [m for m in ('asyncio', 'subprocess', 'pidsafe.process._spawn')\n"
            "          if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
