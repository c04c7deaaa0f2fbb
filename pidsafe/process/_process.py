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

Asynchronous exceptions.  A signal handler may raise between bytecodes.
A sequence in which an fd or an exit status changes hands (created ->
owned, reaped -> recorded, owned -> closed) runs inside one
``pidsafe._sigsafe.critical`` section (nothing blocks inside one), or
makes no call from its first step to its last, where no handler can run
(``_sigsafe``, "Sequences that make no call").  The hot path does the
latter twice, to spare a section: ``close()`` of a reaped process, and the
borrow with which ``wait()`` begins (``_wait``).  Its reap needs none
either: the C call that reaps stores the status in the handle's record
(``_status``) before it returns; ``returncode`` reads it from there until
the status is recorded (``_returncode``; see ``_wait``).  How waits block
without reaping: ``_wait``.

Letting go of the pidfd (``_lifetime``): ``close()``, a borrowed fd, a
handle dropped unclosed (its running child is reaped later, never left a
zombie), and a handle that came through ``fork()`` (the parent's: in the
child only ``close()`` works).

The reaper.  ``pidsafe.Reaper`` holds a :class:`~pidsafe.process.PidfdLease`
on a process it watches (``_lease``); its thread never waits on a handle's
lock or on a blocking waiter.
"""

from __future__ import annotations


from .. import _lite, _sys
from .._lite import RLock
from .._owned import Closable
from .._sigsafe import critical, hand_out
from . import _lifetime, _wait
from ._lease import forget_reaped, index_pidfd
from ._pipes import Communication, close_pipes

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from types import TracebackType
    from typing import IO, Any, Optional, Tuple, Type


class Process(Closable):
    """A process held by a pidfd from birth (:func:`pidsafe.spawn`) or adoption.

    Mirrors ``subprocess.Popen`` where it can: ``pid``, ``args``,
    ``returncode``, ``stdin``/``stdout``/``stderr``, ``poll()``,
    ``wait(timeout)``, ``communicate()``, ``send_signal()``, ``terminate()``,
    ``kill()`` and the context manager.  Adds ``fileno()`` (the pidfd),
    ``is_alive()``, ``close()`` and ``await wait_async()``.
    """

    def __init__(self, pid: int, pidfd: int, *, args: Any = None,
                 stdin: Optional[IO[Any]] = None, stdout: Optional[IO[Any]] = None,
                 stderr: Optional[IO[Any]] = None, child: Optional[bool] = True) -> None:
        # The status, once recorded (``returncode`` reads it), and the
        # record a reap stores it in as it takes it from the kernel (see
        # _wait.reap_locked), made by the first reap: a handle that never
        # reaps (a pidsafe-runc command's) never loads the compiled module.
        # First, so that every handle has both.
        self._returncode: Optional[int] = None
        self._status: Any = None
        self.pid = pid
        self.args = args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._fd = pidfd
        self._closing = False     # close() called; the fd may still be borrowed
        self._borrowers = 0
        self._stolen_since: Optional[float] = None
        self._lock = RLock()   # _thread's: threading.RLock() is a Python call returning this
        # True: our child.  None: adopted, not known yet.  False: not ours.
        self._child = child
        # Spawned by us: reaped later if closed or dropped while it runs.
        self._spawned = child is True
        self._generation = _lifetime.generation
        self._communication: Optional[Communication] = None
        index_pidfd(pidfd, pid)   # who holds which child (see _lease)

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

    # Letting go of the pidfd (_lifetime): methods, so that the modules
    # below the handle (_wait, _lease, _abandoned) reach them through it.
    _check_owner = _lifetime.check_owner
    _borrow_fd = _lifetime.borrow_fd
    _close_if_unused = _lifetime.close_if_unused
    _release_dropped = _lifetime.release_dropped

    # -- reaping --------------------------------------------------------------

    @property
    def returncode(self) -> Optional[int]:
        """The return code once the process has been reaped, else ``None``:
        the exit status, or ``-N`` for signal ``N`` (as ``Popen``'s)."""
        returncode = self._returncode
        if returncode is None:
            # Reaped, and the status in the handle's record, but a signal
            # handler raised before the reap recorded it here (_wait).
            record = self._status
            if record is not None and record[0]:
                return _sys.status_returncode(record[0])
        return returncode

    @returncode.setter
    def returncode(self, value: Optional[int]) -> None:
        self._returncode = value   # as Popen's, which a caller may set

    def _reaped(self, returncode: int) -> None:
        """With ``_lock`` held: record the status of a process that is gone.

        Its pid is free from here on, and may be given to another process:
        the handle index stops answering for it (else a subreaper would take
        a recycled orphan with that pid for this handle's, and never reap it).
        """
        # The index first: once ``_returncode`` is set, nothing will reap
        # again (close() then takes its path with no section), so a handler
        # raising between the two must leave the index done and
        # ``_returncode`` unset (the status stays in ``_status`` when the
        # reap put it there; the kernel keeps the other kind).
        forget_reaped(self)
        self._returncode = returncode

    def poll(self) -> Optional[int]:
        """Reap the process if it has exited; its return code, else ``None``."""
        if self._returncode is None:
            self._check_owner()
            with critical, self._lock:
                _wait.reap_locked(self)
        return self._returncode

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
        if self._returncode is not None:
            return self._returncode
        if self._generation != _lifetime.generation:
            self._check_owner()
        if timeout is None and self._child and _wait._block_and_reap(self):
            assert self._returncode is not None   # the hot path, one frame less
            return self._returncode
        return _wait.wait(self, timeout)

    def communicate(self, input: Any = None,
                    timeout: Optional[float] = None) -> Tuple[Any, Any]:
        """Send ``input``, read stdout/stderr to EOF, wait; like ``Popen``'s.

        After a :class:`pidsafe.TimeoutExpired`, or an exception a signal
        handler raised, call again (without ``input``) to go on: nothing
        sent or read so far is lost.  In text mode (``spawn(text=True)``)
        ``input`` is a str and so are the outputs, newlines translated; the
        output a ``TimeoutExpired`` carries is bytes, as with ``Popen``.

        Returns:
            ``(stdout, stderr)``: bytes (str in text mode) for each stream
            that is a pipe, ``None`` for the others.

        Raises:
            pidsafe.TimeoutExpired: not done within ``timeout`` seconds.
            ValueError: ``input`` again after communication began; a closed
                handle, or one that came through fork().
        """
        self._check_owner()
        if self._communication is None:
            self._communication = Communication()
        return self._communication.communicate(self, input, timeout)

    async def wait_async(self) -> int:
        """``await`` the exit without blocking the event loop.

        Watches a duplicate of the pidfd with the running loop's
        ``add_reader`` (no thread per wait).  Any number of coroutines may
        await the same process.
        """
        if self.returncode is not None:
            return self.returncode
        self._check_owner()
        return await _wait.wait_async(self)

    def is_alive(self) -> bool:
        """Whether the process is still running (a zombie is not alive)."""
        if self.returncode is not None:
            return False
        self._check_owner()
        with critical, self._lock:
            if self._closing:
                raise ValueError(f"Process {self.pid} is closed")
            if not _wait._readable(self._fd, 0):
                return True
            _wait.reap_locked(self)
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
        self.send_signal(_lite.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL`` through the pidfd."""
        self.send_signal(_lite.SIGKILL)

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the pidfd and any pipes.  Idempotent.

        Closing does not wait.  A child spawned by pidsafe that has not been
        reaped yet is reaped now if it has exited, else by a later
        ``spawn()`` once it exits (as ``subprocess`` does with dropped
        ``Popen`` objects): it never stays a zombie.  Use the context
        manager, or ``wait()`` first, to get its status.
        """
        _lifetime.close(self)

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

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        """Close the pipes, wait for the process if it is our child (like
        Popen), close the pidfd."""
        try:
            close_pipes((self.stdout, self.stderr, self.stdin))
            if not self._closing and _wait.is_our_child(self):
                self.wait()
        finally:
            try:
                self.close()
            except BaseException:
                # A handler raised as close() began (its first bytecode is
                # a point where Python runs them): close all the same.
                self.close()
                raise


__all__ = ["Process"]
