"""The reaper thread: wake on exits, reap, publish, and never wait for anyone.

Latency comes from the GIL: under load every syscall the thread makes
releases the GIL, and getting it back can take milliseconds while busy
threads hold it.  The delivery path is therefore as short as it can be:

- one ``epoll_wait`` for a batch of exits, then per exit one ``waitid``
  (``PidfdLease.try_reap``) and the exit is published *at once*, before
  the next one is reaped;
- ending the lease and closing fds come after publishing;
- the thread never blocks on a ``Process`` lock or on another thread: a
  ``Process`` whose lock is held (a user thread in ``kill()``/``poll()``/
  ``close()``, possibly waiting for the GIL itself) or whose blocking
  ``wait()`` is mid-reap is tried again a moment later (``_BUSY_DELAY``),
  while every other exit goes on being delivered.

Every exit, orphans' and claims' included, is published from this thread
only, through the reaper's :class:`~._publisher.Publisher`, so every
subscriber sees one order.

Failures of a syscall (``EMFILE``, ``ENOMEM``...) never end the thread: the
work is kept and tried again with a growing delay (``_MAX_BACKOFF``).  Only
a bug (a non-``OSError``) ends it, and ``Reaper`` then reports it.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Callable, List, Optional

from ..process import LEASE_BUSY, LEASE_REAPED
from ._claim import ClaimBook
from ._orphans import OrphanScanner
from ._pidfdset import PidfdSet, Reg
from ._publisher import Publisher
from ._subscription import Exit
from ..errors import ReaperError

_BUSY_DELAY = 0.001    # a Process busy in another thread: try again after this
_RETRY_DELAY = 0.01    # readable but not exited (never expected): re-arm after this
_MAX_BACKOFF = 0.5     # the longest wait before retrying after a failed syscall


class ReaperLoop:
    """The state of one reaper thread; :meth:`run` is its body."""

    def __init__(self, pidfds: PidfdSet, scanner: Optional[OrphanScanner], book: ClaimBook,
                 publisher: Publisher, stopping: Callable[[], bool],
                 scan_interval: float) -> None:
        self._set = pidfds
        self._scanner = scanner
        self._book = book
        self._publisher = publisher
        self._stopping = stopping
        self._scan_interval = scan_interval
        self._busy: List[Reg] = []       # owned, exited, to reap again soon
        self._leases: List[Reg] = []     # leases to end (the Process was busy)
        self._close: List[int] = []      # fds handed back to us by ended leases
        self._rearm: List[Reg] = []
        self._busy_at = float("inf")
        self._rearm_at = float("inf")
        self._next_scan = time.monotonic() if scanner is not None else float("inf")
        self._backoff = 0.0
        #: Test hook: called at the end of every pass of the loop (in this
        #: thread), after publishing, ending leases and (subreaper mode)
        #: scanning; a pass follows every wake.
        self.after_pass: Optional[Callable[[], None]] = None

    @property
    def idle(self) -> bool:
        """Nothing left to retry: every exit seen so far is published, every
        lease ended, and the last scan (if any) did not fail (for tests)."""
        scanner = self._scanner
        return (not (self._busy or self._rearm or self._leases or self._close)
                and (scanner is None or not scanner.retry))

    # -- helpers ----------------------------------------------------------------

    def _failed(self) -> float:
        """A syscall failed transiently: the delay before trying again."""
        self._backoff = min(_MAX_BACKOFF, max(0.001, self._backoff * 2))
        return self._backoff

    def _reap_owned(self, reg: Reg) -> None:
        lease = reg.lease
        assert lease is not None
        try:
            state, returncode = lease.try_reap()
        except OSError:
            self._busy.append(reg)
            self._busy_at = min(self._busy_at, time.monotonic() + self._failed())
            return
        if state == LEASE_REAPED:
            self._backoff = 0.0
            self._publisher.publish(
                [Exit(reg.pid, returncode, lease.process, False, time.monotonic())])
            self._end_lease(reg)
        elif state == LEASE_BUSY:
            self._busy.append(reg)
            self._busy_at = min(self._busy_at, time.monotonic() + _BUSY_DELAY)
        else:
            self._rearm.append(reg)
            self._rearm_at = min(self._rearm_at, time.monotonic() + _RETRY_DELAY)

    def _end_lease(self, reg: Reg) -> None:
        # The registration is forgotten only once the lease has ended: a
        # fork meanwhile then finds the Process in ``regs`` and resets it
        # (``PidfdLease.after_fork``), even if this thread held its lock.
        assert reg.lease is not None
        fd = reg.lease.end()
        if fd is None:
            self._leases.append(reg)
            return
        self._set.drop(reg)
        if fd >= 0:
            self._close.append(fd)   # after drop: the number may be reused from now on

    def _housekeeping(self, now: float) -> None:
        if self._busy and now >= self._busy_at:
            busy, self._busy, self._busy_at = self._busy, [], float("inf")
            for reg in busy:
                self._reap_owned(reg)
        if self._rearm and now >= self._rearm_at:
            rearm, self._rearm, self._rearm_at = self._rearm, [], float("inf")
            for i, reg in enumerate(rearm):
                try:
                    self._set.rearm(reg)
                except OSError:
                    self._rearm += rearm[i:]
                    self._rearm_at = now + self._failed()
                    break
        if self._leases:
            leases, self._leases = self._leases, []
            for reg in leases:
                self._end_lease(reg)
        while self._close:
            os.close(self._close.pop())

    def _scan(self) -> None:
        scanner = self._scanner
        assert scanner is not None
        try:
            self._publisher.publish(scanner.scan())
        except OSError:
            scanner.retry = True
            self._next_scan = time.monotonic() + self._failed()
        else:
            if scanner.retry:
                delay = min(self._scan_interval, self._failed())
            else:
                self._backoff, delay = 0.0, self._scan_interval
            self._next_scan = time.monotonic() + delay

    def _timeout(self, stopping: bool) -> float:
        if stopping or self._leases or self._close:
            return 0.0
        due = min(self._next_scan, self._busy_at, self._rearm_at)
        if due == float("inf"):
            return -1.0
        return max(0.0, due - time.monotonic())

    # -- the thread body -------------------------------------------------------------

    def run(self) -> None:
        """Reap and publish until stopped (then reap what has already exited)."""
        pidfds, scanner = self._set, self._scanner
        wake = pidfds.wake_fd
        final_scan_done = False
        while True:
            stopping = self._stopping()
            events = pidfds.poll(self._timeout(stopping))
            woken = False
            for fd, _ in events:
                if fd == wake:
                    try:
                        pidfds.read_wake()
                    except OSError as exc:
                        if exc.errno != errno.EAGAIN:
                            raise
                    woken = True
                    continue
                reg = pidfds.regs.get(fd)
                if reg is None:
                    continue
                if reg.lease is not None:
                    self._reap_owned(reg)
                else:
                    assert scanner is not None
                    pidfds.drop(reg)   # the scanner owns the fd now
                    self._publisher.publish(scanner.exited(reg.pid, reg.fd))
                    woken = True       # its children may just have become ours
            if events and not woken and scanner is not None:
                woken = True           # an owned exit: its children may be ours now
            self._housekeeping(time.monotonic())
            if scanner is not None:
                # Cheap when nothing is held back, or a claim still pends
                # (a claim dropped unclosed stops pending without a wake).
                self._publisher.publish(scanner.flush_deferred())
                if stopping:
                    if not final_scan_done:
                        self._scan()
                        final_scan_done = True
                        continue   # reap the zombies the scan just pinned
                elif woken or time.monotonic() >= self._next_scan:
                    self._scan()
            hook = self.after_pass
            if hook is not None:
                hook()
            if stopping and not events and not self._busy and not self._leases:
                if scanner is not None:
                    self._book.finish(lambda: ReaperError(
                        "the reaper stopped before the claimed child was reaped"))
                    self._publisher.publish(scanner.flush_deferred())
                self._housekeeping(time.monotonic())
                return
