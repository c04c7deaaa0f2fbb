"""Subreaper mode: finding orphans without stealing, and claims.

Why not ``waitid(P_ALL)``: a pidsafe child is cloned with exit signal 0, but
``execve`` resets the exit signal to ``SIGCHLD`` (``de_thread()`` in
fs/exec.c).  So after exec every child, pidsafe's included, is visible to
``waitid(P_ALL)`` and ``waitpid(-1)``; a ``P_ALL`` reaper would steal
statuses, and even a ``WNOWAIT`` peek returns the oldest zombie for ever
while its owner has not reaped it.

What we do instead: every process this process must reap is a child of
ours, listed in ``/proc/self/task/*/children``.  A child that no one we know
of owns (not watched by the reaper, not held by a pidfd elsewhere in the
process) is *pinned*: ``pidfd_open(pid)``, then ``waitid(P_PIDFD, WNOWAIT)``
proves the pidfd names an unreaped child of ours (so the pid was not
recycled between the listing and the open).  From then on the reaper
watches it through that pidfd like an owned child and reaps it only through
it, so every decision applies to the very process it reaps.

When it exits, the reaper reaps it unless it is owned after all: watched by
the reaper (a ``spawn()`` that had not registered yet), or held by another
pidfd in this process (``pidfd`` fdinfo names its pid; a pidsafe
``Process`` spawned outside the reaper, or an asyncio pidfd child watcher).
Those are left to their owner.  Checking at exit, not at discovery, matters:
clone3 lists the child before it installs the parent's pidfd, but the child
cannot run (let alone exit) before both are done.

When to look: orphans are reparented to us when their parent dies, before
that parent's exit becomes visible.  So the reaper scans after every exit it
reaps (an owned child or an orphan whose children become ours), when a claim
names its pid, and every ``scan_interval`` seconds.  The timer is the bound
for the one case nothing announces: a descendant that is *not* our child
dies and leaves us its children, which then exit before the next scan.  A
``SIGCHLD`` handler cannot replace it: Python runs handlers only in the main
thread and only between bytecodes, and ``signalfd`` needs ``SIGCHLD``
blocked in every thread.

Foreign children (``subprocess``, ``os.fork``, ``os.posix_spawn``) hold no
pidfd, so they cannot be told from orphans and are reaped like them unless
claimed: see ``_claim``.
"""

from __future__ import annotations

import functools
import os
from typing import Collection, Dict, List, Optional, Protocol, Set, Tuple

from .. import _sys
from ._claim import ClaimBook
from ..process._process import _returncode
from ._subscription import Exit
from ..errors import ReaperError


def list_children() -> Set[int]:
    """Pids of this process's children (zombies included), of every thread.

    Raises:
        ReaperError: the kernel has no ``/proc/PID/task/TID/children``
            (``CONFIG_PROC_CHILDREN``).
    """
    kids: Set[int] = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                kids.update(int(p) for p in f.read().split())
        except FileNotFoundError:
            if not os.path.exists(f"/proc/self/task/{tid}"):
                continue  # that thread has exited
            raise ReaperError("subreaper mode needs /proc/self/task/*/children "
                              "(a kernel built with CONFIG_PROC_CHILDREN)") from None
        except ProcessLookupError:
            continue  # that thread has exited
    return kids


def pidfd_pids(exclude: Collection[int]) -> Set[int]:
    """Pids that pidfds in our fd table (other than ``exclude``) refer to.

    A pidfd's fdinfo says ``Pid: N`` while its process exists, zombie
    included, and ``Pid: -1`` once it has been reaped.
    """
    out: Set[int] = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd in exclude:
            continue
        try:
            if "pidfd" not in os.readlink(f"/proc/self/fd/{name}"):
                continue
            with open(f"/proc/self/fdinfo/{name}", "rb") as f:
                info = f.read()
        except FileNotFoundError:
            continue  # closed meanwhile, or the fd listdir() itself used
        for line in info.splitlines():
            if line.startswith(b"Pid:"):
                pid = int(line.split()[1])
                if pid > 0:
                    out.add(pid)
                break
    return out


def pin_child(pid: int) -> Optional[int]:
    """A pidfd for ``pid`` if it is an unreaped child of ours, else ``None``."""
    try:
        fd = _sys.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        # Proves the pidfd (not just the pid) is our child and unreaped.
        _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def pinned_unreaped(fd: int) -> bool:
    """Whether the pinned child is still there to be reaped (by anyone)."""
    try:
        _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return True


class ScanHost(Protocol):
    """What the scanner needs from its reaper (called in the reaper thread)."""

    def _owns_pid(self, pid: int) -> bool: ...

    def _own_fds(self) -> Set[int]: ...

    def _add_pinned(self, fd: int, pid: int) -> None: ...

    def _publish(self, exits: List[Exit]) -> None: ...


class OrphanScanner:
    """The subreaper half of the reaper thread: pins unknown children, reaps them.

    Only the reaper thread calls it.  ``pinned`` maps pid to the pidfd in the
    reaper's epoll set; ``held`` maps pid to our pidfd for a child that has
    exited but that another pidfd in this process owns (its owner reaps it).
    """

    def __init__(self, host: ScanHost, book: ClaimBook) -> None:
        self._host = host
        self._book = book
        self.pinned: Dict[int, int] = {}
        self.held: Dict[int, int] = {}

    def _others(self, *also: int) -> Set[int]:
        return self._host._own_fds() | set(self.held.values()) | set(also)

    def scan(self) -> None:
        """Pin every child nobody we know of owns."""
        kids = list_children()
        if self.held:
            self._recheck_held(kids)
        for pid in kids - self.pinned.keys() - self.held.keys():
            if self._host._owns_pid(pid):
                continue
            fd = pin_child(pid)
            if fd is None:
                continue
            try:
                self._host._add_pinned(fd, pid)
            except BaseException:
                os.close(fd)
                raise
            self.pinned[pid] = fd

    def exited(self, pid: int, fd: int) -> List[Exit]:
        """A pinned child's pidfd (now ours, out of epoll) is readable."""
        if self.pinned.get(pid) == fd:
            del self.pinned[pid]
        keep = False
        try:
            if self._host._owns_pid(pid):
                return []   # a reaper spawn() registered it meanwhile
            if not self._book.is_claimed(pid) and pid in pidfd_pids(self._others(fd)):
                self.held[pid] = fd   # a pidsafe Process elsewhere owns it
                keep = True
                return []
            return self._book.reap(pid, functools.partial(_reap_pinned, fd))
        finally:
            if not keep:
                os.close(fd)

    def _recheck_held(self, kids: Set[int]) -> None:
        """Forget held zombies their owner reaped; reap those it abandoned."""
        holders: Optional[Set[int]] = None
        out: List[Exit] = []
        for pid, fd in list(self.held.items()):
            # Registered by a reaper spawn()/watch() since it was held (the
            # pidfd it was held by is then one of our own fds, which the
            # holder check below excludes): its reaping is the owned path's.
            if pid in kids and not self._host._owns_pid(pid) and pinned_unreaped(fd):
                if holders is None:
                    holders = pidfd_pids(self._others())
                if pid in holders:
                    continue
                out += self._book.reap(pid, functools.partial(_reap_pinned, fd))
            del self.held[pid]
            os.close(fd)
        self._host._publish(out)

    def close(self) -> None:
        """Close the held pidfds (the pinned ones belong to the epoll set)."""
        held = list(self.held.values())
        self.held.clear()
        self.pinned.clear()
        for fd in held:
            os.close(fd)


def _reap_pinned(fd: int) -> Tuple[bool, Optional[int]]:
    try:
        res = _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
    except ChildProcessError:
        return False, None   # its own waiter (e.g. Popen.wait) got there first
    if res is None:
        return False, None   # not exited after all: the next scan pins it again
    return True, _returncode(res[1], res[2])
