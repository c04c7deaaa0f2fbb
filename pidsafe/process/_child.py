"""Start a child from a :class:`pidsafe._sys.ChildSpec`, through the helper if any.

Without a helper this is ``_sys.spawn(spec)``.  With one (csrc/shared/helper_protocol.h has
the protocol), the CLONE_VM|CLONE_VFORK child execs the static helper at
once, and we:

1. make the ctl socketpair and hand the helper its end;
2. clone (the helper exists, in memory of its own, when clone3 returns);
3. wait for its READY byte (EOF instead: the child failed before it could
   exec the helper, and its ``{stage, errno}`` record is in the error pipe);
4. write the maps of a new user namespace (open, prove, write);
5. send the go (``struct pidsafe_helper_go``);
6. read ctl to EOF: the helper has exec'd the program or exited after
   writing its record.  So when we return, as when a CLONE_VFORK clone3
   returns, the record, if any, is already in the error pipe.

Without a helper, only the clone.  If anything fails after the clone (or a
signal handler raises), the child
is killed and reaped through its pidfd before the error propagates.  The
waits of steps 3 and 6 are as long as the helper's own work (an exec,
setns, setuid), like clone3's wait for a vfork child; they run outside any
critical section, so Ctrl-C stays prompt and still leaves nothing behind.
"""

from __future__ import annotations

import socket
from typing import List, Optional, Tuple

from .. import _sys
from .._sigsafe import critical
from ..userns import IDMap, write_child_maps


def start_child(spec: _sys.ChildSpec, maps: Optional[Tuple[IDMap, IDMap]] = None,
                failed: Optional[List[Tuple[int, int]]] = None) -> Tuple[int, int]:
    """Clone the child ``spec`` describes; returns ``(pid, pidfd)``.

    ``maps`` (uid, gid) are written for a child made with CLONE_NEWUSER.
    On return the child has exec'd the program or exited, its error record
    (if any) in ``failed`` (see :func:`pidsafe._sys.spawn`) and, if ``spec``
    has one, in the error pipe (with a helper, only there).

    Raises:
        OSError: clone3 failed (nothing was created).
        HelperDiedError: the child was killed and reaped before the maps of
            its new user namespace could be written.
        PermissionError, OSError: a map was refused.
    """
    ours: Optional[socket.socket] = None
    theirs: Optional[socket.socket] = None
    pidfd = -1
    try:
        with critical:
            if spec.helper is not None:
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                helper = spec.helper.replace(ctl_fd=theirs.fileno())
                extra = {theirs.fileno()}
                if helper.userns_fd >= 0:
                    extra.add(helper.userns_fd)
                spec = spec.replace(helper=helper,
                                    keep_fds=tuple(sorted(set(spec.keep_fds) | extra)))
            pid, pidfd = _sys.spawn(spec, failed)
        # A signal handler that raised inside the section raises here, with
        # pidfd recorded: the except below ends the child.
        if ours is not None and theirs is not None:
            theirs.close()
            _run_helper(ours, spec, pid, pidfd, maps)
        return pid, pidfd
    except BaseException:
        if pidfd >= 0:
            with critical:
                _sys.end_child(pidfd)
        raise
    finally:
        if ours is not None:
            with critical:
                for sock in (ours, theirs):
                    if sock is not None:
                        sock.close()


def _recv(sock: socket.socket) -> bytes:
    """Up to 64 bytes, or b"" at EOF (a peer gone with data unread: ECONNRESET)."""
    try:
        return sock.recv(64)
    except ConnectionResetError:
        return b""


def _run_helper(ours: socket.socket, spec: _sys.ChildSpec, pid: int, pidfd: int,
                maps: Optional[Tuple[IDMap, IDMap]]) -> None:
    """Steps 3-6 of the module docstring."""
    if _recv(ours) != _sys.HELPER_READY:
        return  # the child exited before the helper ran: the error pipe says why
    if maps is not None:
        # Short and non-blocking (open, prove, write /proc files): atomic
        # with respect to signal handlers, so no /proc fd can leak.
        with critical:
            write_child_maps(pid, pidfd, maps[0], maps[1])
    go = _sys.helper_go(spec)
    try:
        # MSG_NOSIGNAL: EPIPE, never SIGPIPE, whatever the caller did with it.
        # The go is a few dozen bytes: one send into an empty socket buffer.
        ours.send(go, socket.MSG_NOSIGNAL)
    except (BrokenPipeError, ConnectionResetError):
        # Killed since it said READY.  As for a child killed right after
        # exec, the Process we return reports the signal.
        return
    while _recv(ours):
        pass
