"""Reaping a :class:`Process` through its pidfd, and waiting for it without reaping.

Asynchronous exceptions.  A signal handler may raise at any bytecode.  A
wait blocks *without reaping* (``waitid(WEXITED|WNOWAIT)`` for our child,
``poll(2)`` on the pidfd otherwise), outside any section and outside the
handle's lock, then reaps with ``WNOHANG``.  The exit status changes hands
(reaped -> recorded) inside the C call that reaps: it stores the status in
the handle's own record (``Process._status``, a C int) before it returns,
so no handler can come between the kernel giving the status up and the
handle holding it.  ``returncode`` reads the record; :func:`reap_locked`,
under the lock, records it for good (``_returncode``; the handle index
forgets the pid) on its next call if a handler cut the first one short.  So
an exception can interrupt the wait, never lose the status, and the reap
needs no critical section (the hot path's wait has none).

Blocking on a duplicate.  The blocking call works on a private duplicate
of the pidfd made under the lock, so ``close()`` in another thread may
close the handle's own fd meanwhile without the number being reused under
us, and the status is then still reaped through the duplicate.  The
duplicate is closed by the first call of a ``finally`` clause: a handler can
only run after a call returns, so no exception can come between.

A process that is not our child (adopted with ``Process.from_pid``), or
our child that another waiter reaped: the kernel keeps the status on the
pidfd once its real parent has reaped it (``PIDFD_INFO_EXIT``, Linux 6.15).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import time

from .. import _sys, errors   # errors.TimeoutExpired: made on first use (subprocess)
from .._sigsafe import critical, interruptibly
from ..errors import UnsupportedError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional

    import asyncio

    from ._process import Process


#: How long a child another waiter took may go without the kernel's record
#: of its status before we call the status lost (see reap_locked).
_STOLEN_GRACE = 1.0

#: waitid() options of the blocking wait for our child's exit, which reaps nothing.
#: os's constants (the system headers', as _sys's): _sys's would load the
#: compiled module when this is imported, which a command that only holds
#: a saved container's init never needs (pidsafe/_sys/__init__.py).
_WAIT_EXIT = os.WEXITED | os.WNOWAIT

#: poll(2) takes an int of milliseconds: longer timeouts are waited in turns.
_POLL_MAX_MS = 2**31 - 1


def waitid_returncode(code: int, status: int) -> int:
    """``Popen``'s return code from a ``waitid`` ``(si_code, si_status)``:
    the exit status, or minus the signal number (one decoder:
    :func:`pidsafe._sys.status_returncode`, of the two packed as one int)."""
    return _sys.status_returncode(code << 8 | status & 0xFF)


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


def reap_locked(p: Process, borrowed: bool = False, fd: int = -1) -> bool:
    """With ``p``'s lock held: reap if exited; True once returncode is known.

    ``borrowed``: the caller holds a borrow of the fd (``_borrow_fd``),
    so it is still open even if the handle has been closed meanwhile.
    ``fd``: reap through this duplicate of the pidfd instead (open even
    if the handle has been closed meanwhile).
    """
    if p._returncode is not None:
        return True
    record = p._status
    if record is not None and record[0]:
        # Reaped (below, by an earlier call) and in the record, but a
        # handler raised before that call recorded it: record it now.
        p._reaped(_sys.status_returncode(record[0]))
        return True
    if fd < 0:
        if p._closing and not borrowed:
            raise ValueError(f"Process {p.pid} is closed")
        fd = p._fd
    stolen = False
    if p._child is not False:
        try:
            # The status goes to p's record in the call that reaps (see
            # the module docstring).
            if record is None:
                record = p._status = _sys.status_record()
            status = _sys.waitid_status(fd, _sys.WEXITED | _sys.WNOHANG, record)
        except ChildProcessError:
            if p._child is None:
                p._child = False   # adopted, and not ours
            else:
                stolen = True      # a foreign reaper (exec made it SIGCHLD)
        else:
            p._child = True
            if not status:
                return False
            p._reaped(_sys.status_returncode(status))
            return True
    # The kernel keeps the exit status of a reaped process on its pidfd
    # (PIDFD_INFO_EXIT, Linux 6.15), whoever reaped it.
    try:
        wstatus = _sys.pidfd_exit_info(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EINVAL):
            raise UnsupportedError(
                "pidfd_info_exit",
                f"needed for the status of process {p.pid}, "
                + ("which another waiter reaped" if stolen else "which is not our child"),
                exc.errno) from None
        if exc.errno != errno.ESRCH:
            raise
        # Reaped by another, its status not yet filed on the pidfd: in
        # that moment Linux 6.18 says ESRCH, not "no exit information"
        # (about 1 foreign reap in 100 here).  Not known yet, as below.
        wstatus = None
    if wstatus is not None:
        p._reaped(os.waitstatus_to_exitcode(wstatus))
        return True
    if stolen:
        # A foreign waiter marks the zombie dead (from then on our waitid
        # says ECHILD) a moment before the kernel files its status on the
        # pidfd (in release_task()).  Give it that moment before calling
        # the status lost; callers that wait back off meanwhile.
        now = time.monotonic()
        if p._stolen_since is None:
            p._stolen_since = now
        if now - p._stolen_since < _STOLEN_GRACE:
            return False
        raise _sys.make_oserror(
            errno.ECHILD, f"child {p.pid} was reaped by another waiter and the "
            "kernel kept no exit status")
    return False


def is_our_child(p: Process) -> bool:
    """Whether waiting for ``p`` would reap (adopted: asks the kernel, reaps nothing)."""
    if p._child is None and p._returncode is None:
        p._check_owner()
        with critical, p._lock:
            if p._child is None and not p._closing:
                p._child = _sys.unreaped_child(p._fd)
    return bool(p._child)


def _wait_step(p: Process, timeout: Optional[float]) -> bool:
    """Reap if exited, else block up to ``timeout`` (``None``: until exit)
    and try again.  True once ``returncode`` is known.

    Blocks outside any critical section and outside the lock, on a
    duplicate of the pidfd (see the module docstring), and reaps nothing
    while blocked.
    """
    if timeout is None and p._child:
        return _block_and_reap(p)
    dup = -1
    try:
        with critical, p._lock:
            if reap_locked(p):
                return True
            if timeout is not None and timeout <= 0:
                return False
            dup = _dup(p._fd)
        if timeout is None and p._child:
            try:
                # Sleeps until exit with the GIL released; reaps nothing.
                with interruptibly:
                    _sys.waitid_pidfd(dup, _sys.WEXITED | _sys.WNOWAIT)
            except ChildProcessError:
                pass  # a foreign waiter took it: reap_locked says what is left
        else:
            with interruptibly:
                ready = _readable(dup, timeout)
            if not ready:
                return False
        with critical, p._lock:
            done = reap_locked(p, fd=dup)
            if done:
                p._close_if_unused()  # closed meanwhile: the fd can go now
            return done
    finally:
        if dup >= 0:
            os.close(dup)


def _block_and_reap(p: Process) -> bool:
    """:func:`_wait_step` without a timeout, for our child: the hot path.

    No ``WNOHANG`` first: the blocking ``waitid(WNOWAIT)`` returns at once
    for a child that has exited already.  It blocks on the handle's own
    pidfd, borrowed (as ``_borrow_fd`` does) rather than duplicated: a
    ``close()`` meanwhile only marks the handle closed, and the fd closes
    when the borrow ends, in the section that reaps.  Two syscalls fewer
    than with a duplicate (fcntl, close), and no section: the reap records
    the status in the handle as it takes it (module docstring), and the
    borrow begins and ends with sequences that make no call.
    """
    borrowed = False
    try:
        # No section: nothing changes hands here until the borrow, and from
        # the borrow to its record below nothing is called, so no handler
        # can run in between (_sigsafe, "Sequences that make no call").
        with p._lock:
            if p._returncode is not None or p._status is not None and p._status[0]:
                return reap_locked(p)   # (records a status left in the record)
            if p._closing:
                raise ValueError(f"Process {p.pid} is closed")   # as reap_locked()
            fd = p._fd
            p._borrowers += 1
            borrowed = True
        try:
            # Sleeps until exit with the GIL released; reaps nothing.
            with interruptibly:
                _sys.waitid_status(fd, _WAIT_EXIT)
        except ChildProcessError:
            pass  # a foreign waiter took it: reap_locked says what is left
        with p._lock:
            try:
                return reap_locked(p, False, fd)
            finally:
                # The borrow ends with no call in between.
                borrowed = False
                p._borrowers -= 1
                if p._closing:
                    # Closed meanwhile: the fd can go now (in a section, as
                    # it may reap or abandon a child that still runs).
                    with critical:
                        p._close_if_unused()
    finally:
        if borrowed:
            with critical, p._lock:
                p._borrowers -= 1
                p._close_if_unused()


def wait(p: Process, timeout: Optional[float]) -> int:
    """:meth:`Process.wait` (see there), once the handle is known to be ours
    (which tries :func:`_block_and_reap` itself first: the hot path, flat)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    backoff = 0.001
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if _wait_step(p, remaining):
            assert p.returncode is not None
            return p.returncode
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.TimeoutExpired(p.args, timeout if timeout is not None else 0)
        if p._child is False or p._stolen_since is not None:
            # Exited, but its parent (or the foreign waiter that took
            # it) has not finished reaping it: the kernel has no status
            # to give us yet, and nothing to poll for that, so back off.
            with interruptibly:
                time.sleep(backoff if remaining is None else min(backoff, remaining))
            backoff = min(backoff * 2, 0.05)


def _set_done(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


async def wait_async(p: Process) -> int:
    """:meth:`Process.wait_async` (see there), once the handle is known to be ours."""
    import asyncio   # here: the CLI and most callers never load it

    loop = asyncio.get_running_loop()
    backoff = 0.001
    while True:
        # A private dup: add_reader() allows one callback per fd, and
        # several coroutines may be waiting on this process.
        dup = -1
        try:
            with critical, p._lock:
                if reap_locked(p):
                    break
                dup = _dup(p._fd)
            fut: "asyncio.Future[None]" = loop.create_future()
            loop.add_reader(dup, _set_done, fut)
            try:
                await fut
            finally:
                loop.remove_reader(dup)
            with critical, p._lock:
                if reap_locked(p, fd=dup):
                    p._close_if_unused()  # closed meanwhile: the fd can go now
                    break
        finally:
            if dup >= 0:
                os.close(dup)
        await asyncio.sleep(backoff)  # exited, no status yet: see wait()
        backoff = min(backoff * 2, 0.05)
    assert p.returncode is not None
    return p.returncode
