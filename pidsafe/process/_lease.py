"""A pidfd lease: what ``pidsafe.reaper`` holds of a :class:`Process` it watches.

A watcher (the reaper thread) borrows the pidfd for as long as it watches
the process (:class:`PidfdLease`), and must never wait for another thread:
a user thread may hold the handle's lock across a syscall and then wait
milliseconds for the GIL.  So every call here that runs in the watcher's
thread only *tries* the lock and says "busy" instead of waiting; the
watcher retries a moment later.

Module level: an index of every open handle's pidfd, so that the subreaper
answers "does a pidsafe handle hold this child?" in O(1) instead of reading
``/proc/self/fd``.
"""

from __future__ import annotations

import errno
import os

from .. import _lite
from ._wait import reap_locked

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Set, Tuple

    from ._process import Process

#: States returned by :meth:`PidfdLease.try_reap`.
LEASE_REAPED, LEASE_BUSY, LEASE_RUNNING = 0, 1, 2

#: Test hook: called with the Process inside :meth:`PidfdLease.try_reap`
#: while its lock is held (tests use it to fork at exactly that moment).
_lease_test_hook: Optional[Callable[[Any], None]] = None

# Every open pidfd of a Process handle: fd -> pid, and how many such fds
# refer to each pid.  The subreaper asks "does a pidsafe handle hold this
# child?" in O(1) instead of reading /proc/self/fd.  Plain dict operations
# under a lock that is never held across a syscall.
_index_lock = _lite.Lock()
_fd_pid: Dict[int, int] = {}
_pid_fds: Dict[int, int] = {}


def index_pidfd(fd: int, pid: int) -> None:
    """A handle holds ``fd``, a pidfd of ``pid``."""
    with _index_lock:
        # No call (see forget_reaped): one step for the other threads too.
        _fd_pid[fd] = pid
        _pid_fds[pid] = _pid_fds[pid] + 1 if pid in _pid_fds else 1


def unindex_pidfd(fd: int) -> None:
    """The handle's ``fd`` closes, or its process has been reaped (its pid is free)."""
    with _index_lock:
        pid = _fd_pid.pop(fd, None)
        if pid is not None:
            n = _pid_fds[pid] - 1
            if n:
                _pid_fds[pid] = n
            else:
                del _pid_fds[pid]


def forget_reaped(p: Process) -> None:
    """``p`` has reaped its process: the index forgets its pid (free from now on).

    Outside any critical section (a wait's reap), so it makes no call from
    reading ``p._fd`` to its last store: a signal handler cannot run in
    between (pidsafe/_sigsafe.py, "Sequences that make no call"), and
    CPython switches threads only where it runs handlers, so this is one
    step for :func:`unindex_pidfd` in another thread too.  It takes no lock
    (a handler that ran as this began may be using it): the handle's own
    lock, held by the caller, keeps other reaps of ``p`` out.
    """
    fd = p._fd
    if fd in _fd_pid:
        pid = _fd_pid[fd]
        del _fd_pid[fd]
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
    _index_lock = _lite.Lock()


os.register_at_fork(after_in_child=_lease_index_after_fork)


class PidfdLease:
    """A watcher's borrow of a child's pidfd, from :meth:`take` to :meth:`end`.

    While leased, :meth:`Process.close` only marks the handle closed: the fd
    stays open (and its number unused) until the last lease ends.
    """

    __slots__ = ("process", "fd")

    def __init__(self, process: Process, fd: int) -> None:
        self.process = process
        self.fd = fd   # the handle's own pidfd, borrowed

    @classmethod
    def take(cls, process: Process) -> "PidfdLease":
        """Borrow the pidfd of a child until :meth:`end` (a reaper's watch).

        Raises:
            ValueError: the handle has been closed, or the process is not a
                child of this process (only a child can be reaped).
        """
        p = process
        if p._child is not True:
            p.poll()   # an adopted process: learns whether it is our child
        with p._lock:
            if p._child is False:
                raise ValueError(f"process {p.pid} is not a child of this process: "
                                 "a reaper can only reap its own children")
            return cls(p, p._borrow_fd())

    def try_reap(self) -> Tuple[int, Optional[int]]:
        """Reap through the leased pidfd if the process has exited; never waits.

        For a leased child whose pidfd polled readable.  Thread-safe and
        idempotent with :meth:`Process.poll`/:meth:`Process.wait`: whoever
        reaps first records ``returncode`` and the others see it.

        Returns:
            ``(LEASE_REAPED, returncode)``: done; ``returncode`` is ``None``
            only if another waiter took the status and the kernel kept none.
            ``(LEASE_BUSY, None)``: another thread is reaping it or holds the
            handle's lock: try again shortly.  ``(LEASE_RUNNING, None)``: it
            has not exited.

        Raises:
            OSError: a transient failure of ``waitid``; try again later.
        """
        p = self.process
        if p._returncode is not None:
            return LEASE_REAPED, p._returncode
        if not p._lock.acquire(blocking=False):
            return LEASE_BUSY, None
        try:
            hook = _lease_test_hook
            if hook is not None:
                hook(p)
            if p._returncode is not None:
                return LEASE_REAPED, p._returncode
            # A blocking wait() never reaps (it waits with WNOWAIT, then reaps
            # under this lock like us): whoever gets the lock first reaps.
            try:
                done = reap_locked(p, borrowed=True)
            except OSError as exc:
                if exc.errno in (errno.ECHILD, errno.ENOTTY, errno.EINVAL):
                    return LEASE_REAPED, None   # the status is lost for good
                raise
            if done:
                return LEASE_REAPED, p.returncode
            return (LEASE_BUSY if p._stolen_since is not None else LEASE_RUNNING), None
        finally:
            p._lock.release()

    def end(self, *, wait: bool = False) -> Optional[int]:
        """End the lease; without ``wait``, never waits.

        Returns:
            ``None``: busy (only without ``wait``), call again shortly; the
            lease still holds.  ``-1``: ended.  An fd: ended, and the handle
            had been closed meanwhile, so that fd is now the caller's to
            close (after its more urgent work).
        """
        p = self.process
        if not p._lock.acquire(blocking=wait):
            return None
        try:
            p._borrowers -= 1
            if p._closing and p._borrowers == 0 and p._fd >= 0:
                fd, p._fd = p._fd, -1
                unindex_pidfd(fd)
                return fd
            return -1
        finally:
            p._lock.release()

    def after_fork(self) -> None:
        """In a forked child: end a lease whose holder (a thread) is gone.

        Only the forking thread exists in the child, so any lock of the
        handle held at fork time is held by nobody: it is replaced, and the
        lease's borrow is dropped (closing the fd if the handle was closed).
        """
        p = self.process
        p._lock = _lite.RLock()
        # Every borrow was a thread's that does not exist here (the lease's),
        # whether or not it was being returned at fork.
        p._borrowers = 0
        p._close_if_unused()
