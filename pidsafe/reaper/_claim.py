"""Claims: a foreign child's exit status, reserved before the child starts.

Subreaper mode reaps every child of this process that no pidfd holds (see
``_orphans``), so ``subprocess``, ``os.fork`` and ``os.posix_spawn``
children are reaped like orphans.  Code that needs such a child's status
opens a :class:`Claim` *before* starting the child and gives it the pid
after, as containerd's ``Monitor.Start`` subscribes before ``cmd.Start``.

While any claim has no pid yet, children nobody owns are *pinned, not
reaped*: their exits wait as zombies (held through the reaper's pidfds), so
no pid is freed, and none can be reused, before the pending claim learns
its pid.  A claim's pid therefore names the very process it started (or a
zombie of it).  Once no claim is pending, the reaper thread reaps the held
zombies: a claimed one for its claim, the others as orphans.  Every exit is
published by the reaper thread, so subscribers all see one order.
"""

from __future__ import annotations

import errno
import os
import threading
import time
import weakref
from typing import Callable, Dict, List, Optional, Tuple

from .. import _sys
from .._owned import Closable
from .._sigsafe import critical
from ._subscription import AsyncWaiters, Exit
from ..errors import ReaperError


class Claim(Closable):
    """A foreign child's exit status, reserved before the child starts.

    Subreaper mode only (:meth:`pidsafe.Reaper.claim`)::

        with reaper.claim() as claim:
            pid = os.posix_spawn(path, argv, env)   # or Popen(...).pid, os.fork()
            claim.pid = pid
            returncode = claim.wait(timeout=10)

    The reaper reaps the child and hands its return code (``Popen``'s
    convention) to the claim instead of publishing an orphan exit.  Its own
    waiter (``Popen.wait``, ``os.waitpid``) must not be used: the status is
    the claim's, and ``Popen.wait()`` would return 0 (set
    ``popen.returncode = claim.wait()`` instead).  Closing a claim whose
    child still runs gives that exit back to the orphan stream.

    While a claim has no pid yet, no unknown child is reaped (their exits
    wait as zombies): set the pid promptly.
    """

    def __init__(self, book: "ClaimBook") -> None:
        self._book = book
        self._pid: Optional[int] = None
        self.returncode: Optional[int] = None
        self._cond = threading.Condition(threading.Lock())
        self._end: Optional[Callable[[], BaseException]] = None
        self._waiters = AsyncWaiters()
        self._closed = False

    @property
    def pid(self) -> Optional[int]:
        """The claimed child's pid; set it once, right after starting the child.

        Raises (on assignment):
            ValueError: not a positive int, already set, already claimed by
                another claim, or the claim is closed.
        """
        return self._pid

    @pid.setter
    def pid(self, pid: int) -> None:
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"claim.pid must be a positive int, got {pid!r}")
        self._book.resolve(self, pid)

    # -- reaper side ----------------------------------------------------------

    def _deliver(self, returncode: Optional[int]) -> None:
        with self._cond:
            self.returncode = returncode
            self._cond.notify_all()
            self._waiters.wake_all()

    def _finish(self, reason: Callable[[], BaseException]) -> None:
        with self._cond:
            if self.returncode is None and self._end is None:
                self._end = reason
            self._cond.notify_all()
            self._waiters.wake_all()

    def _ready_locked(self) -> bool:
        if self.returncode is not None:
            return True
        if self._end is not None:
            raise self._end()
        if self._pid is None:
            raise ValueError("set claim.pid to the child's pid before waiting")
        return False

    # -- user side ------------------------------------------------------------

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait until the reaper has reaped the claimed child.

        Returns:
            Its return code: the exit status, or ``-N`` for signal ``N``.

        Raises:
            pidsafe.TimeoutExpired: still running after ``timeout`` seconds.
            ValueError: ``pid`` was never set.
            ChildProcessError: the pid is no child of ours, or another waiter
                reaped it first.
            ReaperError: the claim was closed or the reaper stopped first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ready_locked():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    from ..errors import TimeoutExpired   # here: its base loads subprocess

                    raise TimeoutExpired(f"pid {self._pid}", timeout or 0)
                self._cond.wait(remaining)
            assert self.returncode is not None
            return self.returncode

    async def wait_async(self) -> int:
        """``await`` :meth:`wait` without blocking the loop (no thread)."""
        return await self._waiters.until(
            self._cond, lambda: self.returncode if self._ready_locked() else None)

    def close(self) -> None:
        """Give the claim up.  Idempotent; ``returncode`` stays readable."""
        with critical:   # a half-closed claim would stay pending for ever
            if self._closed:
                return
            self._closed = True
            self._book.release(self)
            pid = self._pid
            self._finish(lambda: ReaperError(f"the claim for pid {pid} was closed before "
                                             "its child was reaped"))

    def __repr__(self) -> str:
        return f"<pidsafe.Claim pid={self._pid} returncode={self.returncode}>"


class ClaimBook:
    """Pending and named claims.

    ``_lock`` is held while the reaper thread decides about (and reaps) an
    exited unknown child, and while a claim learns its pid: so a claim never
    misses an exit that is half reaped, and a child is never reaped while a
    claim that may be its own is pending.
    """

    #: :meth:`reap` results besides a list of exits.
    DEFER = None

    def __init__(self, owns_pid: Callable[[int], bool], wake: Callable[[], None]) -> None:
        """``owns_pid``: whether the reaper watches a pid (it needs no claim);
        ``wake``: wake the reaper thread, which then reaps what a claim held
        back, and scans."""
        self._owns_pid = owns_pid
        self._wake = wake
        self._lock = threading.Lock()
        self._pending: "weakref.WeakSet[Claim]" = weakref.WeakSet()
        self._by_pid: Dict[int, Claim] = {}

    def open(self) -> Claim:
        # Held weakly: a claim dropped unclosed stops being pending (the
        # reaper's next pass then reaps what it held back).
        claim = Claim(self)
        with self._lock:
            self._pending.add(claim)
        return claim

    @property
    def pending(self) -> bool:
        """Whether some claim has no pid yet."""
        return bool(self._pending)

    def is_claimed(self, pid: int) -> bool:
        return pid in self._by_pid

    def reap(self, pid: int, reap: Callable[[], Tuple[bool, Optional[int]]]
             ) -> Optional[List[Exit]]:
        """Reaper thread: an unknown child ``pid`` has exited (a zombie we pin).

        Reaps it with ``reap()`` unless a claim is pending and it is not
        claimed: then returns ``None`` (keep it pinned, ask again later).
        Otherwise returns the orphan exits to publish (``[]`` if it went to
        its claim, or if ``reap()`` found nothing to reap).
        """
        with self._lock:
            claim = self._by_pid.get(pid)
            if claim is None and self._pending:
                return self.DEFER
            done, returncode = reap()
            if not done:
                return []
            ts = time.monotonic()
            if claim is not None:
                del self._by_pid[pid]
                claim._deliver(returncode)
                return []
            return [Exit(pid, returncode, None, True, ts)]

    def resolve(self, claim: Claim, pid: int) -> None:
        """``claim.pid = pid`` (a user thread); the reaper is woken after."""
        if self._owns_pid(pid):
            raise ValueError(f"pid {pid} is a pidsafe process this reaper watches: "
                             "it needs no claim")
        self._resolve(claim, pid)
        self._wake()

    def _resolve(self, claim: Claim, pid: int) -> None:
        with critical, self._lock:   # pending -> named as one step
            if claim._closed:
                raise ValueError("the claim is closed")
            if claim._pid is not None:
                raise ValueError(f"claim.pid is already set to {claim._pid}")
            if pid in self._by_pid:
                raise ValueError(f"pid {pid} is already claimed")
            self._pending.discard(claim)
            claim._pid = pid
            try:
                # An unreaped child of ours (running or a zombie we hold):
                # nothing reaps unknown children while this claim was
                # pending, so the pid still names the child it started.
                os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT | _sys.WALL)
                self._by_pid[pid] = claim
            except ChildProcessError:
                claim._finish(lambda: _sys.make_oserror(
                    errno.ECHILD, f"claim: pid {pid} is no child of this process, "
                    "or another waiter reaped it"))

    def release(self, claim: Claim) -> None:
        """``claim.close()``; the reaper is woken after."""
        with self._lock:
            self._pending.discard(claim)
            if claim._pid is not None and self._by_pid.get(claim._pid) is claim:
                del self._by_pid[claim._pid]
        self._wake()

    def finish(self, reason: Callable[[], BaseException]) -> None:
        """The reaper stops: end every open claim (nothing is pending after)."""
        with self._lock:
            claims = list(self._pending) + list(self._by_pid.values())
            self._pending = weakref.WeakSet()
            self._by_pid.clear()
        for claim in claims:
            claim._finish(reason)

    def forget_after_fork(self, reason: Callable[[], BaseException]) -> None:
        self._lock = threading.Lock()
        claims = list(self._pending) + list(self._by_pid.values())
        self._pending = weakref.WeakSet()
        self._by_pid.clear()
        for claim in claims:
            claim._cond = threading.Condition(threading.Lock())
            claim._waiters = AsyncWaiters()
            claim._end = reason
