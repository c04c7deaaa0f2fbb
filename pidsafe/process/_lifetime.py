"""How a :class:`~pidsafe.Process` lets go of its pidfd: ``close()``, a
borrowed fd, a handle dropped unclosed, and one that came through ``fork()``.

Borrowing.  ``_borrow_fd()`` lends the fd itself to a long-lived watcher
(``pidsafe.Reaper``'s epoll set): ``close()`` while it is borrowed only
marks the handle closed, and the last borrower closes the fd.

Closed or dropped while running.  A child we spawned whose handle is closed
(or garbage-collected) before it has been reaped is not left a zombie: its
pidfd goes to a registry that the next ``spawn()`` reaps without blocking,
as ``subprocess`` does with the ``Popen`` objects it drops (``_abandoned``).

After fork().  A handle made before ``os.fork()`` belongs to the parent: in
the child every method raises ``ValueError`` (its lock may be held by a
thread that does not exist there, and the process is not the child's to
reap), except ``close()``, which closes the child's copy of the pidfd.

The functions here are :class:`~pidsafe.Process`'s methods of those names
(``Process._close_if_unused`` is :func:`close_if_unused`), so that the
modules below the handle (``_wait``, ``_lease``, ``_abandoned``) reach them
through the handle, as they reach the rest of it.
"""

from __future__ import annotations

import os

from .. import _sys
from .._sigsafe import critical
from . import _abandoned
from ._lease import unindex_pidfd
from ._pipes import close_pipes

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional

    from ._process import Process


#: Bumped in a forked child: a handle made before the fork is the parent's.
generation = 0


def check_owner(p: Process) -> None:
    """Raise ``ValueError`` in a forked child: the handle is the parent's."""
    if p._generation != generation:
        raise ValueError(
            f"pidsafe.Process {p.pid} came through fork() from the parent process, "
            f"whose handle it is: it cannot be used in the child (pid {os.getpid()}); "
            "only close() works here")


def borrow_fd(p: Process) -> int:
    """With ``_lock`` held: the fd, kept open until the borrow ends
    (:meth:`PidfdLease.end <pidsafe.process.PidfdLease.end>`)."""
    if p._closing:
        raise ValueError(f"Process {p.pid} is closed")
    p._borrowers += 1
    return p._fd


def close_if_unused(p: Process) -> bool:
    """With ``_lock`` held: once closed and not borrowed, close the fd.

    A child we spawned that nobody has reaped yet is reaped now if it
    has exited; if it still runs, the handle goes to the abandoned
    registry, fd open (a closed pidfd could no longer reap it), and this
    returns True.  Whoever reaps it later (a waiter in another thread, or
    ``reap_abandoned``) closes the fd.
    """
    if not (p._closing and p._borrowers == 0 and p._fd >= 0):
        return False
    if p._spawned and p._returncode is None and p._generation == generation:
        # Reaped already if a handler cut a wait's record short (_wait).
        record = p._status
        status = record[0] if record is not None else 0
        if not status:
            if record is None:
                record = p._status = _sys.status_record()
            try:
                status = _sys.waitid_status(p._fd, _sys.WEXITED | _sys.WNOHANG, record)
            except ChildProcessError:
                pass  # a foreign waiter took it: nothing left to reap
            except OSError:
                _abandoned.abandon(p._fd, p)  # reap_abandoned() tries again
                return True
            else:
                if not status:
                    _abandoned.abandon(p._fd, p)
                    return True
        if status:
            p._reaped(_sys.status_returncode(status))
    fd = p._fd
    _abandoned.forget(fd, p)
    unindex_pidfd(fd)
    p._fd = -1   # no call in between (_sigsafe, "Sequences that make no call")
    os.close(fd)
    return False


def close(p: Process) -> None:
    """:meth:`Process.close <pidsafe.Process.close>`."""
    if p.stdin is not None or p.stdout is not None or p.stderr is not None:
        close_pipes((p.stdin, p.stdout, p.stderr))
    if p._generation != generation:
        # The parent's handle: close this process's copy of the pidfd,
        # without its lock (a thread of the parent may have held it).
        with critical:
            p._closing = True
            fd, p._fd = p._fd, -1
            if fd >= 0:
                os.close(fd)
        return
    if p._returncode is not None:
        # Reaped: there is nothing to reap or abandon, only the fd to
        # close, and no section is needed for that (_sigsafe, "Sequences
        # that make no call").  Until the fd is dropped the handle owns it (a
        # handler raising sooner leaves it to the next close() or to
        # __del__), and the process was unindexed when it was reaped.
        # The fd is read after the last call: a handler that runs in
        # forget() and closes this very handle leaves -1 to read here.
        with p._lock:
            p._closing = True
            if p._borrowers == 0 and p._fd >= 0:
                if _abandoned.registry:   # it may be there only if abandoned
                    _abandoned.forget(p._fd, p)
                fd = p._fd
                if fd >= 0:
                    p._fd = -1
                    os.close(fd)
        return
    with critical, p._lock:
        p._closing = True
        close_if_unused(p)


def release_dropped(p: Process) -> Optional[str]:
    """From ``__del__`` (:class:`pidsafe._owned.Owned`): close, or abandon, a
    handle dropped unclosed; what to warn about."""
    # No thread can be borrowing the fd: a borrower holds a reference.
    if getattr(p, "_fd", -1) < 0:
        return None
    if p._generation != generation:
        fd, p._fd = p._fd, -1   # the parent's handle: close our copy quietly
        os.close(fd)
        return None
    close_pipes((p.stdin, p.stdout, p.stderr))  # (the registry may keep us alive)
    with critical:
        was_closed, p._closing, p._borrowers = p._closing, True, 0
        abandoned = close_if_unused(p)
    if was_closed:
        return None
    if abandoned:
        return f"pidsafe child {p.pid} is still running"
    return f"unclosed pidsafe.Process {p.pid}"


def _after_fork_in_child() -> None:
    global generation
    generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)
