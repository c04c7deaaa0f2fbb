"""The fds and children that session-scoped fixtures own, which no test leaks.

A session fixture (the private containerd of tests/containerd.py, its event
stream, gRPC's own fds) starts while the first test that needs it runs, and
may replace a process or a pipe during a later test (a containerd restart
reconnects the event stream).  It registers each such fd and child here, and
``no_leaks`` (tests/conftest.py) leaves exactly those alone: an fd only while
it still points at what was registered (same number *and* same target), a
child only by its pid (an unreaped child's pid cannot be reused).  Nothing
else is exempt.
"""

from __future__ import annotations

import os
from typing import Dict, Iterable, Set

_fds: Dict[int, str] = {}
_pids: Set[int] = set()


def fd_numbers() -> Set[int]:
    """This process's open fds."""
    return {int(name) for name in os.listdir("/proc/self/fd")}


def own_fd(fd: int) -> None:
    """Exempt the open ``fd`` (as it points now) from the per-test leak check."""
    _fds[fd] = os.readlink(f"/proc/self/fd/{fd}")


def own_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            own_fd(fd)
        except FileNotFoundError:
            continue   # closed meanwhile: nothing to exempt


def disown_fd(fd: int) -> None:
    _fds.pop(fd, None)


def own_pid(pid: int) -> None:
    """Exempt the child ``pid`` (not yet reaped) from the per-test leak check."""
    _pids.add(pid)


def disown_pid(pid: int) -> None:
    _pids.discard(pid)


def owns_fd(fd: int, target: str) -> bool:
    """Whether ``fd``, now pointing at ``target``, is a session fixture's."""
    return _fds.get(fd) == target


def owns_pid(pid: int) -> bool:
    return pid in _pids
