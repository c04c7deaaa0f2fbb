"""Process: a child (or adopted process) held by its pidfd.

The pidfd is the process's identity for as long as the handle lives.
Signals go through ``pidfd_send_signal`` and reaping through
``waitid(P_PIDFD)``: once the process has been reaped, the pidfd refers to
no process at all, so a recycled pid can never be signalled or waited on.

Locking.  ``_lock`` guards the fd, ``returncode`` and the counters below,
and is held only around non-blocking syscalls, so a thread blocked in
``wait()`` never stops ``poll()``, ``send_signal()`` or ``close()`` in
another.  It is reentrant: a signal handler runs in the main thread,
between two bytecodes of whatever that thread was doing, and may call
``send_signal()`` or ``poll()`` on the very process whose lock it holds.

Asynchronous exceptions.  A signal handler may raise at any bytecode.
Every sequence in which an fd or an exit status changes hands (created ->
owned, reaped -> recorded, owned -> closed) runs inside one
``pidsafe._sigsafe.critical`` section, where handlers are held back until
the end; nothing blocks inside one.  So ``wait()`` blocks *without reaping*
(``waitid(WEXITED|WNOWAIT)`` for our child, ``poll(2)`` on the pidfd
otherwise), outside any section and outside the lock, then reaps with
``WNOHANG`` and records ``returncode`` in one section: an exception can
interrupt the wait, never lose the status.

Blocking on a duplicate.  The blocking call works on a private duplicate
of the pidfd made under the lock, so ``close()`` in another thread may
close the handle's own fd meanwhile without the number being reused under
us, and the status is then still reaped through the duplicate.  The
duplicate is closed by the first call of a ``finally`` clause: a handler can
only run after a call returns, so no exception can come between.

Borrowing.  ``_borrow_fd()`` lends the fd itself to a long-lived watcher
(``pidsafe.Reaper``'s epoll set): ``close()`` while it is borrowed only
marks the handle closed, and the last borrower closes the fd.

Closed or dropped while running.  A child we spawned whose handle is closed
(or garbage-collected) before it has been reaped is not left a zombie: its
pidfd goes to a registry that the next ``spawn()`` reaps without blocking,
as ``subprocess`` does with the ``Popen`` objects it drops.

After fork().  A handle made before ``os.fork()`` belongs to the parent: in
the child every method raises ``ValueError`` (its lock may be held by a
thread that does not exist there, and the process is not the child's to
reap), except ``close()``, which closes the child's copy of the pidfd.

The reaper.  ``pidsafe.Reaper`` uses only the lease interface at the end of
the class; its thread never waits on a handle's lock or on a blocking waiter.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import threading
import time
import warnings
from types import TracebackType

from .. import _sys, errors   # errors.TimeoutExpired: made on first use (subprocess)
from .._sigsafe import critical
from ._lease import (LEASE_BUSY, LEASE_REAPED, LEASE_RUNNING, LeaseMixin, _index_pidfd,
                     _unindex_pidfd, handle_fds, handle_holds)
from ._pipes import PipesMixin

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import IO, Any, Callable, Dict, List, Optional, Set, Tuple, Type, TypeVar

    import asyncio


#: How long a child another waiter took may go without the kernel's record
#: of its status before we call the status lost (see _reap_locked).
_STOLEN_GRACE = 1.0

#: poll(2) takes an int of milliseconds: longer timeouts are waited in turns.
_POLL_MAX_MS = 2**31 - 1

#: Bumped in a forked child: a handle made before the fork is the parent's.
_generation = 0

if TYPE_CHECKING:
    _T = TypeVar("_T")


def _returncode(code: int, status: int) -> int:
    """Popen's convention: exit status, or minus the signal number."""
    if code == _sys.CLD_EXITED:
        return status
    if code in (_sys.CLD_KILLED, _sys.CLD_DUMPED):
        return -status
    raise ValueError(f"unexpected waitid si_code {code}")  # pragma: no cover


def _readable(fd: int, timeout: Optional[float]) -> bool:
    """poll(2) ``fd`` for ``POLLIN``: ``timeout`` seconds, ``None`` for ever.

    PEP 475: poll() retries EINTR itself, recomputing the timeout, and lets
    a signal handler's exception through.  A timeout too long for poll(2)
    (2**31 ms or more, ``inf``) waits its longest and says "not ready": the
    caller's deadline decides whether to go on.
    """
    p = select.poll()
    p.register(fd, select.POLLIN)
    if timeout is None:
        return bool(p.poll())
    return bool(p.poll(min(max(0.0, timeout) * 1000, _POLL_MAX_MS)))


def _dup(fd: int) -> int:
    """A close-on-exec duplicate of ``fd`` (above stdio)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _end_child(pidfd: int, pid: int) -> None:
    """Kill a child nobody will own, reap it through ``pidfd``, close ``pidfd``.

    For error paths, inside a critical section: it never raises, so the
    error being handled is the one reported.  If the child cannot be killed
    or reaped now, its pidfd goes to :func:`reap_abandoned` instead.
    """
    try:
        _sys.pidfd_send_signal(pidfd, signal.SIGKILL)
        _sys.waitid_pidfd(pidfd, _sys.WEXITED)
    except ChildProcessError:
        pass  # a foreign waiter reaped it: gone all the same
    except ProcessLookupError:
        pass  # reaped already, by a foreign waiter
    except OSError:
        # Not killed or not reaped: never block on it here.
        p = Process(pid, pidfd, child=True)
        p._closing = True
        _abandoned[pidfd] = p
        return
    os.close(pidfd)


def hand_out(make: Callable[[], _T], discard: Callable[[_T], None]) -> _T:
    """``make()`` inside a critical section; return what it made.

    Signals that arrive meanwhile are delivered when the section ends,
    before the result reaches the caller: if a handler raises then, the
    result is ``discard()``-ed and the exception propagates, so nothing
    made here is left without an owner.  (Once this returns, the caller
    owns the result.)
    """
    made: Optional[_T] = None
    try:
        with critical:
            made = make()
        return made
    except BaseException:
        if made is not None:
            discard(made)
        raise


def discard(p: "Process") -> None:
    """Undo a start that is failing: kill ``p``, reap it, close the handle.

    For error paths (a spawn whose caller never got the handle, a container
    process whose set-up failed): it never raises, so the error being
    handled is the one reported, and a child it cannot kill or reap now goes
    to :func:`reap_abandoned`.  A handle already reaped or closed is only
    closed.
    """
    p._discard()


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class Process(PipesMixin, LeaseMixin):
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
        self._stolen_since: Optional[float] = None
        self._lock = threading.RLock()
        # True: our child.  None: adopted, not known yet.  False: not ours.
        self._child = child
        # Spawned by us: reaped later if closed or dropped while it runs.
        self._spawned = child is True
        self._generation = _generation
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
        waiting, and a timeout applies as usual.  Leaving a ``with`` block
        waits only for a process that is your child.

        Raises:
            ProcessLookupError: no such process.
        """
        if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
            raise ValueError(f"pid must be a positive int, got {pid!r}")
        return hand_out(lambda: cls(pid, _sys.pidfd_open(pid), args=None, child=None),
                        cls.close)

    def fileno(self) -> int:
        """The pidfd (close-on-exec).  Readable once the process has exited.

        Raises:
            ValueError: the handle has been closed (or came through fork()).
        """
        self._check_owner()
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

    def _check_owner(self) -> None:
        """Raise ``ValueError`` in a forked child: the handle is the parent's."""
        if self._generation != _generation:
            raise ValueError(
                f"pidsafe.Process {self.pid} came through fork() from the parent process, "
                f"whose handle it is: it cannot be used in the child (pid {os.getpid()}); "
                "only close() works here")

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

    def _close_if_unused(self) -> bool:
        """With ``_lock`` held: once closed and not borrowed, close the fd.

        A child we spawned that nobody has reaped yet is reaped now if it
        has exited; if it still runs, the handle goes to the registry that
        :func:`reap_abandoned` works through, fd open (a closed pidfd could
        no longer reap it), and this returns True.  Whoever reaps it later
        (a waiter in another thread, or reap_abandoned) closes the fd.
        """
        if not (self._closing and self._borrowers == 0 and self._fd >= 0):
            return False
        if self._spawned and self.returncode is None and self._generation == _generation:
            try:
                res = _sys.waitid_pidfd(self._fd, _sys.WEXITED | _sys.WNOHANG)
            except ChildProcessError:
                pass  # a foreign waiter took it: nothing left to reap
            except OSError:
                _abandoned[self._fd] = self  # reap_abandoned() tries again
                return True
            else:
                if res is None:
                    _abandoned[self._fd] = self
                    return True
                self._reaped(_returncode(res[1], res[2]))
        fd, self._fd = self._fd, -1
        if _abandoned.get(fd) is self:
            del _abandoned[fd]
        _unindex_pidfd(fd)   # lease section
        os.close(fd)
        return False

    # -- reaping --------------------------------------------------------------

    def _reaped(self, returncode: int) -> None:
        """With ``_lock`` held: record the status of a process that is gone.

        Its pid is free from here on, and may be given to another process:
        the handle index stops answering for it (else a subreaper would take
        a recycled orphan with that pid for this handle's, and never reap it).
        """
        self.returncode = returncode
        if self._fd >= 0:
            _unindex_pidfd(self._fd)

    def _reap_locked(self, borrowed: bool = False, fd: int = -1) -> bool:
        """With ``_lock`` held: reap if exited; True once returncode is known.

        ``borrowed``: the caller holds a borrow of the fd (``_borrow_fd``),
        so it is still open even if the handle has been closed meanwhile.
        ``fd``: reap through this duplicate of the pidfd instead (open even
        if the handle has been closed meanwhile).
        """
        if self.returncode is not None:
            return True
        if fd < 0:
            if self._closing and not borrowed:
                raise ValueError(f"Process {self.pid} is closed")
            fd = self._fd
        stolen = False
        if self._child is not False:
            try:
                res = _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
            except ChildProcessError:
                if self._child is None:
                    self._child = False   # adopted, and not ours
                else:
                    stolen = True         # a foreign reaper (exec made it SIGCHLD)
            else:
                self._child = True
                if res is None:
                    return False
                self._reaped(_returncode(res[1], res[2]))
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
            self._reaped(os.waitstatus_to_exitcode(status))
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
            self._check_owner()
            with critical, self._lock:
                self._reap_locked()
        return self.returncode

    def _wait_step(self, timeout: Optional[float]) -> bool:
        """Reap if exited, else block up to ``timeout`` (``None``: until exit)
        and try again.  True once ``returncode`` is known.

        Blocks outside any critical section and outside the lock, on a
        duplicate of the pidfd (see the module docstring), and reaps nothing
        while blocked.
        """
        dup = -1
        try:
            with critical, self._lock:
                if self._reap_locked():
                    return True
                if timeout is not None and timeout <= 0:
                    return False
                dup = _dup(self._fd)
            if timeout is None and self._child:
                try:
                    # Sleeps until exit with the GIL released; reaps nothing.
                    _sys.waitid_pidfd(dup, _sys.WEXITED | _sys.WNOWAIT)
                except ChildProcessError:
                    pass  # a foreign waiter took it: _reap_locked says what is left
            elif not _readable(dup, timeout):
                return False
            with critical, self._lock:
                done = self._reap_locked(fd=dup)
                if done:
                    self._close_if_unused()  # closed meanwhile: the fd can go now
                return done
        finally:
            if dup >= 0:
                os.close(dup)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Wait for the process to exit and reap it through its pidfd.

        Blocks in ``waitid(P_PIDFD, WNOWAIT)`` (our child, no timeout) or
        ``poll(2)`` on the pidfd: no busy loop.  Exits are never lost: a
        process that exited before ``wait()`` was called is reaped at once,
        and an exception a signal handler raises during the wait leaves the
        process unreaped (or reaped with ``returncode`` set).

        Args:
            timeout: seconds; ``None`` (or ``inf``) waits for ever.

        Returns:
            The return code: the exit status, or ``-N`` for signal ``N``.

        Raises:
            pidsafe.TimeoutExpired: (a ``subprocess.TimeoutExpired``) the
                process is still running after ``timeout`` seconds.
            ValueError: the handle has been closed (or came through fork()).
        """
        if self.returncode is not None:
            return self.returncode
        self._check_owner()
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = 0.001
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if self._wait_step(remaining):
                assert self.returncode is not None
                return self.returncode
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise errors.TimeoutExpired(self.args, timeout if timeout is not None else 0)
            if self._child is False or self._stolen_since is not None:
                # Exited, but its parent (or the foreign waiter that took
                # it) has not finished reaping it: the kernel has no status
                # to give us yet, and nothing to poll for that, so back off.
                time.sleep(backoff if remaining is None else min(backoff, remaining))
                backoff = min(backoff * 2, 0.05)

    def communicate(self, input: Optional[bytes] = None,
                    timeout: Optional[float] = None) -> Tuple[Optional[bytes], Optional[bytes]]:
        """Send ``input``, read stdout/stderr to EOF, wait; like ``Popen``'s.

        After a :class:`pidsafe.TimeoutExpired`, or an exception a signal
        handler raised, call again (without ``input``) to go on: nothing
        sent or read so far is lost.

        Returns:
            ``(stdout, stderr)``: bytes for each stream that is a pipe.

        Raises:
            pidsafe.TimeoutExpired: not done within ``timeout`` seconds.
            ValueError: ``input`` again after communication began; a closed
                handle, or one that came through fork().
        """
        self._check_owner()
        return super().communicate(input, timeout)

    async def wait_async(self) -> int:
        """``await`` the exit without blocking the event loop.

        Watches a duplicate of the pidfd with the running loop's
        ``add_reader`` (no thread per wait).  Any number of coroutines may
        await the same process.
        """
        if self.returncode is not None:
            return self.returncode
        self._check_owner()
        import asyncio   # here: the CLI and most callers never load it

        loop = asyncio.get_running_loop()
        backoff = 0.001
        while True:
            # A private dup: add_reader() allows one callback per fd, and
            # several coroutines may be waiting on this process.
            dup = -1
            try:
                with critical, self._lock:
                    if self._reap_locked():
                        break
                    dup = _dup(self._fd)
                fut: "asyncio.Future[None]" = loop.create_future()
                loop.add_reader(dup, _set_done, fut)
                try:
                    await fut
                finally:
                    loop.remove_reader(dup)
                with critical, self._lock:
                    if self._reap_locked(fd=dup):
                        self._close_if_unused()  # closed meanwhile: the fd can go now
                        break
            finally:
                if dup >= 0:
                    os.close(dup)
            await asyncio.sleep(backoff)  # exited, no status yet: see wait()
            backoff = min(backoff * 2, 0.05)
        assert self.returncode is not None
        return self.returncode

    def is_alive(self) -> bool:
        """Whether the process is still running (a zombie is not alive)."""
        if self.returncode is not None:
            return False
        self._check_owner()
        with critical, self._lock:
            if self._closing:
                raise ValueError(f"Process {self.pid} is closed")
            if not _readable(self._fd, 0):
                return True
            self._reap_locked()
        return False

    # -- signals ----------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` through the pidfd (``pidfd_send_signal(2)``, Linux 5.1).

        Does nothing once the process has been reaped, like ``Popen``; the
        pidfd guarantees that it can never reach another process that has
        since been given the same pid.  Safe to call from a signal handler.

        Raises:
            ValueError: the handle has been closed (or came through fork()).
        """
        if self.returncode is not None:
            return
        self._check_owner()
        with critical, self._lock:
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

    def _close_pipes(self, order: Any = None) -> None:
        for f in order or (self.stdin, self.stdout, self.stderr):
            if f is not None:
                try:
                    f.close()
                except BrokenPipeError:
                    pass

    def close(self) -> None:
        """Close the pidfd and any pipes.  Idempotent.

        Closing does not wait.  A child spawned by pidsafe that has not been
        reaped yet is reaped now if it has exited, else by a later
        ``spawn()`` once it exits (as ``subprocess`` does with dropped
        ``Popen`` objects): it never stays a zombie.  Use the context
        manager, or ``wait()`` first, to get its status.
        """
        self._close_pipes()
        if self._generation != _generation:
            # The parent's handle: close this process's copy of the pidfd,
            # without its lock (a thread of the parent may have held it).
            with critical:
                self._closing = True
                fd, self._fd = self._fd, -1
                if fd >= 0:
                    os.close(fd)
            return
        with critical, self._lock:
            self._closing = True
            self._close_if_unused()

    def release(self) -> None:
        """Close like :meth:`close`, but never reap the child: its exit is left alone.

        The exited child stays a zombie for whoever inherits it once this
        process exits (the nearest subreaper, else init), who collects the
        status.  A runtime CLI does this with a detached container process,
        whose exit a shim waits for.
        """
        with critical, self._lock:
            self._spawned = False
        self.close()

    def _discard(self) -> None:
        """Undo a spawn whose caller never got the handle: kill, reap, close."""
        with critical:
            self._close_pipes()
            with self._lock:
                self._closing = True
                fd, self._fd = self._fd, -1
                if fd >= 0:
                    _unindex_pidfd(fd)   # lease section; _end_child may re-index it
                    _end_child(fd, self.pid)

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        """Close the pipes, wait for the process if it is our child (like
        Popen), close the pidfd."""
        try:
            self._close_pipes((self.stdout, self.stderr, self.stdin))
            if not self._closing and self._is_our_child():
                self.wait()
        finally:
            self.close()

    def _is_our_child(self) -> bool:
        """Whether waiting would reap (adopted: asks the kernel, reaps nothing)."""
        if self._child is None and self.returncode is None:
            self._check_owner()
            with critical, self._lock:
                if self._child is None and not self._closing:
                    try:
                        _sys.waitid_pidfd(self._fd,
                                          _sys.WEXITED | _sys.WNOHANG | _sys.WNOWAIT)
                    except ChildProcessError:
                        self._child = False
                    else:
                        self._child = True
        return bool(self._child)

    def __del__(self) -> None:
        # No thread can be borrowing the fd: a borrower holds a reference.
        if getattr(self, "_fd", -1) < 0:
            return
        if self._generation != _generation:
            fd, self._fd = self._fd, -1   # the parent's handle: close our copy quietly
            os.close(fd)
            return
        self._close_pipes()  # (the registry may keep this object alive)
        with critical:
            was_closed, self._closing, self._borrowers = self._closing, True, 0
            abandoned = self._close_if_unused()
        if was_closed:
            return
        if abandoned:
            warnings.warn(f"pidsafe child {self.pid} is still running",
                          ResourceWarning, stacklevel=2)
        else:
            warnings.warn(f"unclosed pidsafe.Process {self.pid}", ResourceWarning,
                          stacklevel=2)


# Handles of children we spawned, closed or dropped while the child ran, by
# their (still open) pidfd; see Process._close_if_unused().
_abandoned: Dict[int, Process] = {}
_abandoned_lock = threading.Lock()


def reap_abandoned() -> None:
    """Reap, without blocking, the children whose handles were closed running.

    ``spawn()`` calls it, as ``Popen`` cleans up its dropped children.  One
    caller at a time: another thread, or a signal handler that spawns while
    the main thread is in here, skips it, and the next call catches up.
    """
    with critical:
        if not _abandoned_lock.acquire(blocking=False):
            return
        try:
            for p in list(_abandoned.values()):
                with p._lock:
                    p._close_if_unused()
        finally:
            _abandoned_lock.release()


def _after_fork_in_child() -> None:
    global _generation, _abandoned_lock
    _generation += 1
    _abandoned_lock = threading.Lock()
    # The parent's children: not ours to reap.  Only this thread exists here.
    handles = list(_abandoned.values())
    _abandoned.clear()
    for p in handles:
        fd, p._fd = p._fd, -1
        if fd >= 0:
            os.close(fd)


os.register_at_fork(after_in_child=_after_fork_in_child)


def waitid_returncode(code: int, status: int) -> int:
    """``Popen``'s return code from a ``waitid`` ``(si_code, si_status)``."""
    return _returncode(code, status)


__all__ = ["LEASE_BUSY", "LEASE_REAPED", "LEASE_RUNNING", "Process", "hand_out",
           "handle_fds", "handle_holds", "reap_abandoned", "waitid_returncode"]
