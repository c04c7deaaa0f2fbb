"""The helper's protocol, for a child whose spec has a :class:`pidsafe._sys.HelperSpec`.

:func:`._start.start_child` runs it (csrc/shared/helper_protocol.h has the
protocol): the CLONE_VM|CLONE_VFORK child execs the static helper at once,
and we:

1. make the ctl socketpair and hand the helper its end (:meth:`HelperRun.prepare`);
2. clone (the helper exists, in memory of its own, when clone3 returns);
3. wait for its READY byte (EOF instead: the child failed before it could
   exec the helper, and its ``{stage, errno}`` record is in the error pipe);
4. write the maps of a new user namespace (open, prove, write);
5. send the go (``struct pidsafe_helper_go``);
6. read ctl to EOF: the helper has exec'd the program or exited after
   writing its record.  So when we return, as when a CLONE_VFORK clone3
   returns, the record, if any, is already in the error pipe.

The waits of steps 3 and 6 are as long as the helper's own work (an exec,
setns, setuid), like clone3's wait for a vfork child; they run outside any
critical section, so Ctrl-C stays prompt and still leaves nothing behind.
"""

from __future__ import annotations

import socket
from typing import Optional, Tuple

from .. import _sys
from .._sigsafe import critical
from ..userns import IDMap, write_child_maps


class HelperRun:
    """One run of the helper's protocol: the ctl socketpair and its steps."""

    __slots__ = ("ours", "theirs")

    def __init__(self) -> None:
        self.ours: Optional[socket.socket] = None
        self.theirs: Optional[socket.socket] = None

    def prepare(self, spec: _sys.ChildSpec) -> _sys.ChildSpec:
        """Step 1, inside the clone's critical section: ``spec`` with the
        helper's ctl fd (and userns fd) kept in the child."""
        assert spec.helper is not None
        self.ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        helper = spec.helper.replace(ctl_fd=self.theirs.fileno())
        extra = {self.theirs.fileno()}
        if helper.userns_fd >= 0:
            extra.add(helper.userns_fd)
        return spec.replace(helper=helper, keep_fds=tuple(sorted(set(spec.keep_fds) | extra)))

    def run(self, spec: _sys.ChildSpec, pid: int, pidfd: int,
            maps: Optional[Tuple[IDMap, IDMap]]) -> None:
        """Steps 3-6, once the child is cloned."""
        assert self.ours is not None and self.theirs is not None
        self.theirs.close()
        _run_helper(self.ours, spec, pid, pidfd, maps)

    def close(self) -> None:
        """Close both ends (inside a critical section)."""
        for sock in (self.ours, self.theirs):
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
