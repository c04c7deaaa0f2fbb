"""Undoing a start that is failing: kill the child, reap it, close what we hold.

For error paths (a spawn whose caller never got the handle, a container
process whose set-up failed): nothing here raises, so the error being
handled is the one reported, and a child that cannot be killed or reaped
now goes to the abandoned registry (``_abandoned``) instead of staying a
zombie.
"""

from __future__ import annotations

import os

from .. import _lite, _log, _sys
from .._sigsafe import critical
from . import _abandoned
from ._lease import unindex_pidfd
from ._pipes import close_pipes
from ._process import Process
from ._wait import _readable


#: How long an error path waits for a child it killed to die (normally
#: at once) before leaving it to the abandoned registry: a v1 freezer
#: holds a killed task until its cgroup is thawed, and a container with a
#: writable cgroup may freeze a process of ours that has joined it.
KILLED_WAIT = 5.0


def end_child(pidfd: int, pid: int) -> None:
    """Kill a child nobody will own, reap it through ``pidfd``, close ``pidfd``.

    Inside a critical section.  If the child cannot be killed or reaped
    within :data:`KILLED_WAIT`, its pidfd goes to the abandoned registry
    instead: never blocked on for good.
    """
    _log.debug("process", "ending child %d on an error path: SIGKILL through its pidfd, "
               "then reaped", pid)
    try:
        _sys.pidfd_send_signal(pidfd, _lite.SIGKILL)
        if not _readable(pidfd, KILLED_WAIT):
            raise TimeoutError(f"child {pid} did not die within {KILLED_WAIT:g} s")
        _sys.waitid_pidfd(pidfd, _sys.WEXITED)
    except ChildProcessError:
        pass  # a foreign waiter reaped it: gone all the same
    except ProcessLookupError:
        pass  # reaped already, by a foreign waiter
    except OSError:
        # Not killed or not reaped: never block on it here.
        p = Process(pid, pidfd, child=True)
        p._closing = True
        _abandoned.abandon(pidfd, p)
        return
    os.close(pidfd)


def discard(p: Process) -> None:
    """Undo a start whose caller never got the handle: kill ``p``, reap it,
    close the handle.  A handle already reaped or closed is only closed."""
    with critical:
        close_pipes((p.stdin, p.stdout, p.stderr))
        with p._lock:
            p._closing = True
            fd, p._fd = p._fd, -1
            if fd >= 0:
                unindex_pidfd(fd)   # end_child may index it again
                end_child(fd, p.pid)
