"""Children whose handles were closed, or dropped, while they ran: reaped later.

A child we spawned must not stay a zombie because its :class:`Process` was
closed or garbage-collected before it exited.  Its handle goes here, pidfd
still open (a closed pidfd could no longer reap it), and
:func:`reap_abandoned`, which every ``spawn()`` calls as ``subprocess``
cleans up the ``Popen`` objects it drops, reaps without blocking those that
have exited.  Whoever reaps one (a waiter in another thread, or
reap_abandoned) closes its fd and takes it out.

After ``fork()`` the parent's children are not the child's to reap: there
the registry starts empty and unlocked, and its copies of the pidfds are
closed.
"""

from __future__ import annotations

import os

from .. import _lite
from .._sigsafe import critical

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict

    from ._process import Process

#: The handles, by their (still open) pidfd.
registry: Dict[int, Process] = {}
_lock = _lite.Lock()


def abandon(fd: int, process: Process) -> None:
    """With ``process``'s lock held: its child runs on, and nobody holds the handle."""
    registry[fd] = process


def forget(fd: int, process: Process) -> None:
    """With ``process``'s lock held: it has been reaped (or will never be), ``fd`` closes."""
    if registry.get(fd) is process:
        del registry[fd]


def reap_abandoned() -> None:
    """Reap, without blocking, the children whose handles were closed running.

    ``spawn()`` calls it, as ``Popen`` cleans up its dropped children.  One
    caller at a time: another thread, or a signal handler that spawns while
    the main thread is in here, skips it, and the next call catches up.
    """
    with critical:
        if not _lock.acquire(blocking=False):
            return
        try:
            for p in list(registry.values()):
                with p._lock:
                    p._close_if_unused()
        finally:
            _lock.release()


def _after_fork_in_child() -> None:
    global _lock
    _lock = _lite.Lock()
    # The parent's children: not ours to reap.  Only this thread exists here.
    handles = list(registry.values())
    registry.clear()
    for p in handles:
        fd, p._fd = p._fd, -1
        if fd >= 0:
            os.close(fd)


os.register_at_fork(after_in_child=_after_fork_in_child)
