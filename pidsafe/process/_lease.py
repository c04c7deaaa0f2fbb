"""The lease interface: what ``pidsafe.reaper`` uses of a :class:`Process`.

A watcher (the reaper thread) borrows the pidfd for as long as it watches
the process, and must never wait for another thread: a user thread may hold
the handle's lock across a syscall and then wait milliseconds for the GIL.
So every call here that runs in the watcher's thread only *tries* the lock
and says "busy" instead of waiting; the watcher retries a moment later.

Module level: an index of every open handle's pidfd, so that the subreaper
answers "does a pidsafe handle hold this child?" in O(1) instead of reading
``/proc/self/fd``.
"""

from __future__ import annotations

import errno
import os
import threading

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Set, Tuple

#: States returned by :meth:`Process.try_lease_reap`.
LEASE_REAPED, LEASE_BUSY, LEASE_RUNNING = 0, 1, 2

#: Test hook: called with the Process inside :meth:`Process.try_lease_reap`
#: while its lock is held (tests use it to fork at exactly that moment).
_lease_test_hook: Optional[Callable[[Any], None]] = None

# Every open pidfd of a Process handle: fd -> pid, and how many such fds
# refer to each pid.  The subreaper asks "does a pidsafe handle hold this
# child?" in O(1) instead of reading /proc/self/fd.  Plain dict operations
# under a lock that is never held across a syscall.
_index_lock = threading.Lock()
_fd_pid: Dict[int, int] = {}
_pid_fds: Dict[int, int] = {}


def _index_pidfd(fd: int, pid: int) -> None:
    with _index_lock:
        _fd_pid[fd] = pid
        _pid_fds[pid] = _pid_fds.get(pid, 0) + 1


def _unindex_pidfd(fd: int) -> None:
    with _index_lock:
        pid = _fd_pid.pop(fd, None)
        if pid is not None:
            n = _pid_fds[pid] - 1
            if n:
                _pid_fds[pid] = n
            else:
                del _pid_fds[pid]


def handle_holds(pid: int) -> bool:
    """Whether an open :class:`Process` handle's pidfd refers to ``pid``.

    A handle drops its entry when it reaps its process (the pid is free
    from then on) or is closed.  A handle whose process another waiter
    reaped keeps it until it learns of that, so callers ask only about
    children that have not been reaped, whose pid cannot have been reused.
    """
    return pid in _pid_fds


def handle_fds() -> Set[int]:
    """The fds of every open :class:`Process` handle (a snapshot)."""
    with _index_lock:
        return set(_fd_pid)


def _lease_index_after_fork() -> None:
    global _index_lock
    _index_lock = threading.Lock()


os.register_at_fork(after_in_child=_lease_index_after_fork)


class LeaseMixin:
    """The lease methods of :class:`~pidsafe.process._process.Process`."""

    if TYPE_CHECKING:   # provided by Process
        pid: int
        returncode: Optional[int]
        _lock: "threading.RLock"
        _fd: int
        _closing: bool
        _borrowers: int
        _child: Optional[bool]
        _stolen_since: Optional[float]

        def poll(self) -> Optional[int]: ...
        def _borrow_fd(self) -> int: ...
        def _reap_locked(self, borrowed: bool = False, fd: int = -1) -> bool: ...
        def _close_if_unused(self) -> bool: ...

    def lease_pidfd(self) -> int:
        """Borrow the pidfd of a child until :meth:`end_lease` (a reaper's watch).

        While leased, :meth:`close` only marks the handle closed: the fd
        stays open (and its number unused) until the last lease ends.

        Raises:
            ValueError: the handle has been closed, or the process is not a
                child of this process (only a child can be reaped).
        """
        if self._child is not True:
            self.poll()   # an adopted process: learns whether it is our child
        with self._lock:
            if self._child is False:
                raise ValueError(f"process {self.pid} is not a child of this process: "
                                 "a reaper can only reap its own children")
            return self._borrow_fd()

    def try_lease_reap(self) -> Tuple[int, Optional[int]]:
        """Reap through the leased pidfd if the process has exited; never waits.

        For a leased child whose pidfd polled readable.  Thread-safe and
        idempotent with :meth:`poll`/:meth:`wait`: whoever reaps first
        records ``returncode`` and the others see it.

        Returns:
            ``(LEASE_REAPED, returncode)``: done; ``returncode`` is ``None``
            only if another waiter took the status and the kernel kept none.
            ``(LEASE_BUSY, None)``: another thread is reaping it or holds the
            handle's lock: try again shortly.  ``(LEASE_RUNNING, None)``: it
            has not exited.

        Raises:
            OSError: a transient failure of ``waitid``; try again later.
        """
        if self.returncode is not None:
            return LEASE_REAPED, self.returncode
        if not self._lock.acquire(blocking=False):
            return LEASE_BUSY, None
        try:
            hook = _lease_test_hook
            if hook is not None:
                hook(self)
            if self.returncode is not None:
                return LEASE_REAPED, self.returncode
            # A blocking wait() never reaps (it waits with WNOWAIT, then reaps
            # under this lock like us): whoever gets the lock first reaps.
            try:
                done = self._reap_locked(borrowed=True)
            except OSError as exc:
                if exc.errno in (errno.ECHILD, errno.ENOTTY, errno.EINVAL):
                    return LEASE_REAPED, None   # the status is lost for good
                raise
            if done:
                return LEASE_REAPED, self.returncode
            return (LEASE_BUSY if self._stolen_since is not None else LEASE_RUNNING), None
        finally:
            self._lock.release()

    def end_lease(self, *, wait: bool = False) -> Optional[int]:
        """End a lease of :meth:`lease_pidfd`; without ``wait``, never waits.

        Returns:
            ``None``: busy (only without ``wait``), call again shortly; the
            lease still holds.  ``-1``: ended.  An fd: ended, and the handle
            had been closed meanwhile, so that fd is now the caller's to
            close (after its more urgent work).
        """
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            self._borrowers -= 1
            if self._closing and self._borrowers == 0 and self._fd >= 0:
                fd, self._fd = self._fd, -1
                _unindex_pidfd(fd)
                return fd
            return -1
        finally:
            self._lock.release()

    def lease_after_fork(self) -> None:
        """In a forked child: end a lease whose holder (a thread) is gone.

        Only the forking thread exists in the child, so any lock of this
        handle held at fork time is held by nobody: it is replaced, and the
        lease's borrow is dropped (closing the fd if the handle was closed).
        """
        self._lock = threading.RLock()
        # Every borrow was a thread's that does not exist here (the lease's),
        # whether or not it was being returned at fork.
        self._borrowers = 0
        self._close_if_unused()
