"""Process: a child (or adopted process) held by its pidfd.

The pidfd is the process's identity for as long as the handle lives.
Signals go through ``pidfd_send_signal`` and reaping through
``waitid(P_PIDFD)``: once the process has been reaped, the pidfd refers to
no process at all, so a recycled pid can never be signalled or waited on.

Locking.  ``_lock`` guards the fd, ``returncode`` and the counters below,
and is held only around non-blocking syscalls, so a thread blocked in
``wait()`` never stops ``poll()``, ``send_signal()`` or ``close()`` in
another.  Blocking work happens outside it on a *borrowed* fd:
``_borrow_fd()`` counts the borrower, and ``close()`` while the fd is
borrowed only marks the handle closed; the last borrower closes the fd.  So
an fd number can never be closed, reused by another open, and then waited
on or polled by us.

Reaping.  ``wait()`` without a timeout blocks in ``waitid(P_PIDFD)`` (the
cheapest way to sleep until exit); at most one thread at a time does that
(``_block_lock``).  Everything else reaps with ``WNOHANG`` under ``_lock``.
If a ``WNOHANG`` reap finds the child gone while a blocking waiter is in
``waitid``, that waiter reaped it and will publish the status under
``_lock``: a user thread waits on ``_published`` for it; the reaper never
waits (see the lease section at the end of the class).
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
import signal
import threading
import time
import warnings
from types import TracebackType
from typing import IO, Any, Callable, Dict, List, Optional, Set, Tuple, Type

from .. import _sys
from ..errors import TimeoutExpired
from ._pipes import PipesMixin


#: How long a child another waiter took may go without the kernel's record
#: of its status before we call the status lost (see _reap_locked).
_STOLEN_GRACE = 1.0


def _returncode(code: int, status: int) -> int:
    """Popen's convention: exit status, or minus the signal number."""
    if code == _sys.CLD_EXITED:
        return status
    if code in (_sys.CLD_KILLED, _sys.CLD_DUMPED):
        return -status
    raise ValueError(f"unexpected waitid si_code {code}")  # pragma: no cover


class Process(PipesMixin):
    """A process held by a pidfd from birth (:func:`pidsafe.spawn`) or adoption.

    Mirrors ``subprocess.Popen`` where it can: ``pid``, ``args``,
    ``returncode``, ``stdin``/``stdout``/``stderr``, ``poll()``,
    ``wait(timeout)``, ``communicate()``, ``send_signal()``, ``terminate()``,
    ``kill()`` and the context manager.  Adds ``fileno()`` (the pidfd),
    ``is_alive()``, ``close()`` and ``await wait_async()``.
    """

    def __init__(self, pid: int, pidfd: int, *, args: Any = None,
                 stdin: Optional[IO[bytes]] = None, stdout: Optional[IO[bytes]] = None,
                 stderr: Optional[IO[bytes]] = None, child: Optional[bool] = True) -> None:
        self.pid = pid
        self.args = args
        self.returncode: Optional[int] = None
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._fd = pidfd
        self._closing = False     # close() called; the fd may still be borrowed
        self._borrowers = 0
        self._blocking = 0        # threads inside a blocking waitid()
        self._stolen_since: Optional[float] = None
        self._lock = threading.Lock()
        # Made by the first blocking wait (most handles never need them).
        self._published: Optional[threading.Condition] = None
        self._block_lock: Optional[threading.Lock] = None
        # True: our child.  None: adopted, not known yet.  False: not ours.
        self._child = child
        self._init_pipes()
        _index_pidfd(pidfd, pid)   # lease section: who holds which child

    # -- identity -----------------------------------------------------------

    @classmethod
    def from_pid(cls, pid: int) -> "Process":
        """Adopt an existing process through ``pidfd_open(2)`` (Linux 5.3).

        The pidfd pins the identity from this moment on; whether the pid
        still meant the process you had in mind *before* this call is for you
        to know (e.g. it is your child, or you hold it stopped).

        For a process that is not your child, ``wait()`` waits for it to
        exit and returns the status the kernel keeps once its real parent
        has reaped it (``PIDFD_INFO_EXIT``, Linux 6.15); until then it keeps
        waiting, and a timeout applies as usual.

        Raises:
            ProcessLookupError: no such process.
        """
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"pid must be a positive int, got {pid!r}")
        fd = _sys.pidfd_open(pid)
        return cls(pid, fd, args=None, child=None)

    def fileno(self) -> int:
        """The pidfd (close-on-exec).  Readable once the process has exited.

        Raises:
            ValueError: the handle has been closed.
        """
        if self._closing:
            raise ValueError(f"Process {self.pid} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closing

    def __repr__(self) -> str:
        return (f"<pidsafe.Process pid={self.pid} returncode={self.returncode} "
                f"args={self.args!r}{' closed' if self._closing else ''}>")

    def _borrow_fd(self) -> int:
        """With ``_lock`` held: the fd, kept open until ``_return_fd()``."""
        if self._closing:
            raise ValueError(f"Process {self.pid} is closed")
        self._borrowers += 1
        return self._fd

    def _return_fd(self) -> None:
        """With ``_lock`` held: end a borrow; the last one may close the fd."""
        self._borrowers -= 1
        self._close_if_unused()

    def _close_if_unused(self) -> None:
        if self._closing and self._borrowers == 0 and self._fd >= 0:
            fd, self._fd = self._fd, -1
            _unindex_pidfd(fd)   # lease section
            os.close(fd)

    # -- reaping --------------------------------------------------------------

    def _reap_locked(self, borrowed: bool = False) -> bool:
        """With ``_lock`` held: reap if exited; True once returncode is known.

        ``borrowed``: the caller holds a borrow of the fd (``_borrow_fd``),
        so it is still open even if the handle has been closed meanwhile.
        """
        if self.returncode is not None:
            return True
        if self._closing and not borrowed:
            raise ValueError(f"Process {self.pid} is closed")
        fd = self._fd
        stolen = False
        if self._child is not False:
            try:
                res = _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
            except ChildProcessError:
                if self._blocking:
                    # Our own blocking waiter reaped it: wait for its status.
                    assert self._published is not None
                    while self.returncode is None and self._blocking:
                        self._published.wait()
                    if self.returncode is not None:
                        return True
                if self._child is None:
                    self._child = False   # adopted, and not ours
                else:
                    stolen = True         # a foreign reaper (exec made it SIGCHLD)
            else:
                self._child = True
                if res is None:
                    return False
                self.returncode = _returncode(res[1], res[2])
                return True
        # The kernel keeps the exit status of a reaped process on its pidfd
        # (PIDFD_INFO_EXIT, Linux 6.15), whoever reaped it.
        try:
            status = _sys.pidfd_exit_info(fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                raise
            from ..errors import UnsupportedError

            raise UnsupportedError(
                "pidfd_info_exit",
                f"needed for the status of process {self.pid}, "
                + ("which another waiter reaped" if stolen else "which is not our child"),
                exc.errno) from None
        if status is not None:
            self.returncode = os.waitstatus_to_exitcode(status)
            return True
        if stolen:
            # A foreign waiter marks the zombie dead (from then on our waitid
            # says ECHILD) a moment before the kernel files its status on the
            # pidfd (in release_task()).  Give it that moment before calling
            # the status lost; callers that wait back off meanwhile.
            now = time.monotonic()
            if self._stolen_since is None:
                self._stolen_since = now
            if now - self._stolen_since < _STOLEN_GRACE:
                return False
            raise _sys.make_oserror(
                errno.ECHILD, f"child {self.pid} was reaped by another waiter and the "
                "kernel kept no exit status")
        return False

    def poll(self) -> Optional[int]:
        """Reap the process if it has exited; its return code, else ``None``."""
        if self.returncode is None:
            with self._lock:
                self._reap_locked()
        return self.returncode

    def _wait_readable(self, timeout: Optional[float]) -> bool:
        with self._lock:
            fd = self._borrow_fd()
        try:
            p = select.poll()
            p.register(fd, select.POLLIN)
            # PEP 475: poll() retries EINTR itself, recomputing the timeout,
            # and lets a signal handler's exception through.
            return bool(p.poll(None if timeout is None else max(0, timeout) * 1000))
        finally:
            with self._lock:
                self._return_fd()

    def _wait_blocking(self) -> None:
        """Block in ``waitid(P_PIDFD)`` until exit; publish the status.

        Returns without a status if the process is not (or no longer) ours
        to reap; the caller then falls back to polling.
        """
        block_lock = self._block_lock
        if block_lock is None:
            with self._lock:
                if self._block_lock is None:
                    self._block_lock = threading.Lock()
                    self._published = threading.Condition(self._lock)
                block_lock = self._block_lock
        with block_lock:
            with self._lock:
                if self.returncode is not None or self._child is False:
                    return
                fd = self._borrow_fd()
                self._blocking += 1
            res = None
            try:
                # Blocks with the GIL released; EINTR is retried in _sys.
                res = _sys.waitid_pidfd(fd, _sys.WEXITED)
            except ChildProcessError:
                pass  # reaped by a WNOHANG poll of ours, or not our child
            finally:
                with self._lock:
                    self._blocking -= 1
                    if res is not None and self.returncode is None:
                        self._child = True
                        self.returncode = _returncode(res[1], res[2])
                    assert self._published is not None
                    self._published.notify_all()
                    self._return_fd()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the process to exit and reap it through its pidfd.

        Blocks in ``waitid(P_PIDFD)`` (without a timeout) or ``poll(2)`` on
        the pidfd (with one): no busy loop.  Exits are never lost: a process
        that exited before ``wait()`` was called is reaped at once.

        Args:
            timeout: seconds; ``None`` waits for ever.

        Returns:
            The return code: the exit status, or ``-N`` for signal ``N``.

        Raises:
            pidsafe.TimeoutExpired: (a ``subprocess.TimeoutExpired``) the
                process is still running after ``timeout`` seconds.
            ValueError: the handle has been closed.
        """
        if self.returncode is not None:
            return self.returncode
        if timeout is None:
            self._wait_blocking()
            if self.returncode is not None:
                return self.returncode
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = 0.001
        while True:
            if self.poll() is not None:
                assert self.returncode is not None
                return self.returncode
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutExpired(self.args, timeout if timeout is not None else 0)
            if self._wait_readable(remaining):
                if self._child is False or self._stolen_since is not None:
                    # Exited, but its parent (or the foreign waiter that
                    # took it) has not finished reaping it: the kernel has
                    # no status to give us yet, and nothing to poll for
                    # that, so back off.
                    time.sleep(backoff if remaining is None else min(backoff, remaining))
                    backoff = min(backoff * 2, 0.05)

    async def wait_async(self) -> int:
        """``await`` the exit without blocking the event loop.

        Watches the pidfd with the running loop's ``add_reader`` (no thread
        per wait).  Any number of coroutines may await the same process.
        """
        if self.returncode is not None:
            return self.returncode
        loop = asyncio.get_running_loop()
        backoff = 0.001
        while self.poll() is None:
            # A private dup: add_reader() allows one callback per fd, and
            # several coroutines may be waiting on this process.
            import fcntl

            with self._lock:
                borrowed = self._borrow_fd()
                try:
                    fd = fcntl.fcntl(borrowed, fcntl.F_DUPFD_CLOEXEC, 0)
                finally:
                    self._return_fd()
            try:
                fut: "asyncio.Future[None]" = loop.create_future()

                def ready(fut: "asyncio.Future[None]" = fut) -> None:
                    if not fut.done():
                        fut.set_result(None)

                loop.add_reader(fd, ready)
                try:
                    await fut
                finally:
                    loop.remove_reader(fd)
            finally:
                os.close(fd)
            if self.poll() is None:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def is_alive(self) -> bool:
        """Whether the process is still running (a zombie is not alive)."""
        if self.returncode is not None:
            return False
        if self._wait_readable(0):
            self.poll()
            return False
        return True

    # -- signals ----------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` through the pidfd (``pidfd_send_signal(2)``, Linux 5.1).

        Does nothing once the process has been reaped, like ``Popen``; the
        pidfd guarantees that it can never reach another process that has
        since been given the same pid.

        Raises:
            ValueError: the handle has been closed.
        """
        with self._lock:
            if self.returncode is not None:
                return
            if self._closing:
                raise ValueError(f"Process {self.pid} is closed")
            try:
                _sys.pidfd_send_signal(self._fd, sig)
            except ProcessLookupError:
                # Reaped by someone else: the process no longer exists, and
                # the pidfd refers to nothing else.  Same as Popen.
                pass

    def terminate(self) -> None:
        """Send ``SIGTERM`` through the pidfd."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL`` through the pidfd."""
        self.send_signal(signal.SIGKILL)

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the pidfd and any pipes.  Idempotent.

        Closing does not wait: a child that has not been reaped is left to
        the kernel's usual rules (it stays a zombie until we exit).  Use the
        context manager, or ``wait()`` first.
        """
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                try:
                    f.close()
                except BrokenPipeError:
                    pass
        with self._lock:
            self._closing = True
            self._close_if_unused()

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        """Close the pipes, wait for the process (like Popen), close the pidfd."""
        try:
            for f in (self.stdout, self.stderr, self.stdin):
                if f is not None:
                    try:
                        f.close()
                    except BrokenPipeError:
                        pass
            if not self._closing and self._child is not False:
                self.wait()
        finally:
            self.close()

    def __del__(self) -> None:
        # No thread can be borrowing the fd: a borrower holds a reference.
        if getattr(self, "_closing", True) or self._fd < 0:
            return
        if (self.returncode is None and self._child is not False and not _try_reap(self)
                and self._child):
            # Still running: keep the handle so that a later spawn() reaps
            # it, as subprocess does with its _active list.
            _abandoned.append(self)
            warnings.warn(f"pidsafe child {self.pid} is still running",
                          ResourceWarning, stacklevel=2)
            return
        self.close()
        warnings.warn(f"unclosed pidsafe.Process {self.pid}", ResourceWarning, stacklevel=2)

    # == lease: the interface of pidsafe.reaper (it uses nothing else) =======
    #
    # A watcher (the reaper thread) borrows the pidfd for as long as it
    # watches the process, and must never wait for another thread: a user
    # thread may hold ``_lock`` across a syscall and then wait milliseconds
    # for the GIL.  So every call below that runs in the watcher's thread
    # only *tries* the lock and says "busy" instead of waiting; the watcher
    # retries a moment later.

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
            if self._blocking:
                return LEASE_BUSY, None   # a blocking wait() reaps it and publishes
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
        self._lock = threading.Lock()
        if self._published is not None:
            self._published = threading.Condition(self._lock)
        if self._block_lock is not None:
            self._block_lock = threading.Lock()
        # Every borrow was a thread's that does not exist here (the lease's,
        # a blocked wait()'s), whether or not it was being returned at fork.
        self._blocking = 0
        self._borrowers = 0
        self._close_if_unused()


# Handles dropped while their child still ran: reaped by reap_abandoned().
_abandoned: List[Process] = []


def _try_reap(p: Process) -> bool:
    """Reap without blocking; True if there is nothing left to wait for.

    For abandoned handles only: nobody is left to receive an error, so a
    process whose status cannot be had (reaped by a foreign waiter on a
    kernel without PIDFD_INFO_EXIT) counts as done.
    """
    with p._lock:
        try:
            return p._reap_locked()
        except OSError as exc:
            return exc.errno in (errno.ECHILD, errno.ENOTTY, errno.EINVAL)


def reap_abandoned() -> None:
    """Reap, without blocking, children whose handles were dropped running."""
    for p in list(_abandoned):
        if _try_reap(p):
            _abandoned.remove(p)
            p.close()



# == lease: module-level support (see the lease methods of Process) ===========

#: States returned by :meth:`Process.try_lease_reap`.
LEASE_REAPED, LEASE_BUSY, LEASE_RUNNING = 0, 1, 2

#: Test hook: called with the Process inside :meth:`Process.try_lease_reap`
#: while its lock is held (tests use it to fork at exactly that moment).
_lease_test_hook: Optional[Callable[[Process], None]] = None

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

    A handle whose process was reaped keeps its entry until it is closed;
    callers use this for children that have not been reaped, whose pid
    cannot have been reused.
    """
    return pid in _pid_fds


def handle_fds() -> Set[int]:
    """The fds of every open :class:`Process` handle (a snapshot)."""
    with _index_lock:
        return set(_fd_pid)


def waitid_returncode(code: int, status: int) -> int:
    """``Popen``'s return code from a ``waitid`` ``(si_code, si_status)``."""
    return _returncode(code, status)


def _lease_index_after_fork() -> None:
    global _index_lock
    _index_lock = threading.Lock()


os.register_at_fork(after_in_child=_lease_index_after_fork)
