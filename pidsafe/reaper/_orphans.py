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
pidfd in this process: an open ``Process`` handle (an O(1) look-up in the
handles' index, ``Process`` lease section), or any other pidfd (a spawn
between clone3 and its ``Process``, an asyncio pidfd child watcher), found
by reading ``/proc/self/fd`` *skipping* every fd we already know (the
handles', the reaper's), so an exit costs O(other fds), not O(handles).
Those are left to their owner.  Checking at exit, not at discovery, matters:
clone3 lists the child before it installs the parent's pidfd, but the child
cannot run (let alone exit) before both are done.  While a claim is pending
the exit is not reaped at all (see ``_claim``).

Failures (``EMFILE`` while opening a pidfd or a ``/proc`` file) are never
fatal: the child stays pinned or held, and the next scan tries again.

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
from typing import Callable, Dict, List, Optional, Protocol, Set, Tuple

from .. import _sys
from ..errors import ReaperError
from ..process import handle_fds, handle_holds, waitid_returncode
from ._claim import ClaimBook
from ._pidfdset import close_copies
from ._subscription import Exit


def list_children() -> Set[int]:
    """Pids of this process's children (zombies included), of every thread.

    Raises:
        ReaperError: the kernel has no ``/proc/PID/task/TID/children``
            (``CONFIG_PROC_CHILDREN``).
        OSError: e.g. ``EMFILE``; the caller retries later.
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


def other_pidfd_holds(pid: int, known: Callable[[int], bool]) -> bool:
    """Whether a pidfd in our fd table that is not ``known`` refers to ``pid``.

    A pidfd's fdinfo says ``Pid: N`` while its process exists, zombie
    included, and ``Pid: -1`` once it has been reaped.  Only fds that
    ``known`` does not claim are read (two syscalls each).

    Raises:
        OSError: e.g. ``EMFILE``; the caller keeps the child and retries.
    """
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if known(fd):
            continue
        try:
            if "pidfd" not in os.readlink(f"/proc/self/fd/{name}"):
                continue
            if _sys.fdinfo_pid(fd) == pid:
                return True
        except FileNotFoundError:
            continue  # closed meanwhile, or the fd listdir() itself used
    return False


def pin_child(pid: int) -> Optional[int]:
    """A pidfd for ``pid`` if it is an unreaped child of ours, else ``None``.

    Raises:
        OSError: e.g. ``EMFILE`` from ``pidfd_open``; nothing is left open.
    """
    try:
        fd = _sys.pidfd_open(pid)
    except ProcessLookupError:
        return None
    try:
        # Proves the pidfd (not just the pid) is our child and unreaped.
        ours = _sys.unreaped_child(fd)
    except BaseException:
        os.close(fd)
        raise
    if not ours:
        os.close(fd)
        return None
    return fd


class ScanHost(Protocol):
    """What the scanner needs from its reaper's pidfd set (``PidfdSet``),
    called in the reaper thread."""

    def owns_pid(self, pid: int) -> bool:
        """Whether the reaper watches ``pid`` as an owned child."""

    def known_fds(self) -> Set[int]:
        """The reaper's own fds (a snapshot)."""

    def add_pinned(self, fd: int, pid: int) -> None:
        """Watch a pinned orphan through ``fd`` (the set owns it from now on)."""


class OrphanScanner:
    """The subreaper half of the reaper thread: pins unknown children, reaps them.

    Only the reaper thread calls it.  ``pinned`` maps pid to the pidfd in the
    reaper's epoll set; ``held`` maps pid to our pidfd for a child that has
    exited but that another pidfd in this process owns (its owner reaps it);
    ``deferred`` maps pid to our pidfd for a child that has exited while a
    claim was pending (reaped once none is).  ``retry`` says that a failure
    (``EMFILE``...) left work for the next scan.
    """

    def __init__(self, host: ScanHost, book: ClaimBook) -> None:
        self._host = host
        self._book = book
        self.pinned: Dict[int, int] = {}
        self.held: Dict[int, int] = {}
        self.deferred: Dict[int, int] = {}
        self.retry = False

    def _held_elsewhere(self, pid: int, ours: int) -> bool:
        # Snapshots of the fds we know first, the look-ups second: a handle
        # made, or a registration done, in between (a spawn that had not
        # finished) is then either found by the look-ups or not skipped by
        # the fd scan.
        known = handle_fds() | self._host.known_fds()
        known.update(self.held.values())
        known.update(self.deferred.values())
        known.add(ours)
        if handle_holds(pid) or self._host.owns_pid(pid):
            return True
        try:
            return other_pidfd_holds(pid, known.__contains__)
        except OSError:
            self.retry = True
            return True   # cannot tell now: keep it, decide at the next scan

    def scan(self) -> List[Exit]:
        """Pin every child nobody we know of owns; returns exits to publish.

        Raises:
            OSError: listing the children failed (``EMFILE``...): retry later.
        """
        self.retry = False
        kids = list_children()
        out: List[Exit] = []
        if self.held:
            out += self._recheck_held(kids)
        known = self.pinned.keys() | self.held.keys() | self.deferred.keys()
        for pid in kids - known:
            if self._host.owns_pid(pid):
                continue
            try:
                fd = pin_child(pid)
            except OSError:
                self.retry = True   # EMFILE...: the next scan pins it
                continue
            if fd is None:
                continue
            try:
                self._host.add_pinned(fd, pid)
            except OSError:
                os.close(fd)
                self.retry = True
                continue
            except BaseException:
                os.close(fd)
                raise
            self.pinned[pid] = fd
        return out

    def exited(self, pid: int, fd: int) -> List[Exit]:
        """A pinned child's pidfd (now ours, out of epoll) is readable."""
        if self.pinned.get(pid) == fd:
            del self.pinned[pid]
        return self._settle(pid, fd)

    def _settle(self, pid: int, fd: int) -> List[Exit]:
        """Decide about an exited child whose pidfd ``fd`` we own."""
        if self._host.owns_pid(pid):
            os.close(fd)
            return []   # a reaper spawn() registered it meanwhile
        if not self._book.is_claimed(pid) and self._held_elsewhere(pid, fd):
            self.held[pid] = fd   # a pidsafe Process (or spawn) elsewhere owns it
            return []
        try:
            out = self._book.reap(pid, functools.partial(_reap_pinned, fd))
        except OSError:
            self.held[pid] = fd   # waitid failed (transiently): the next scan retries
            self.retry = True
            return []
        if out is None:
            self.deferred[pid] = fd   # a claim is pending: keep the zombie
            return []
        os.close(fd)
        return out

    def flush_deferred(self) -> List[Exit]:
        """Reap the zombies held back for pending claims, if none is pending now."""
        if not self.deferred or self._book.pending:
            return []
        out: List[Exit] = []
        for pid, fd in list(self.deferred.items()):
            del self.deferred[pid]
            out += self._settle(pid, fd)
        return out

    def _recheck_held(self, kids: Set[int]) -> List[Exit]:
        """Forget held zombies their owner reaped; settle those it abandoned."""
        out: List[Exit] = []
        for pid, fd in list(self.held.items()):
            del self.held[pid]
            # Registered by a reaper spawn()/watch() since it was held: its
            # reaping is the owned path's (_settle leaves it).
            try:
                alive = pid in kids and _sys.unreaped_child(fd)   # pinned, unreaped
            except OSError:
                self.held[pid] = fd
                self.retry = True
                continue
            if alive:
                out += self._settle(pid, fd)
            else:
                os.close(fd)
        return out

    def _forget(self) -> List[int]:
        """Forget every child; the pidfds we own (the pinned ones belong to the
        epoll set) are the caller's to close."""
        fds = list(self.held.values()) + list(self.deferred.values())
        self.held.clear()
        self.deferred.clear()
        self.pinned.clear()
        return fds

    def close(self) -> None:
        """Close the held pidfds (the pinned ones belong to the epoll set)."""
        for fd in self._forget():
            os.close(fd)

    def forget_after_fork(self) -> None:
        """In a forked child: close our copies of the held pidfds."""
        close_copies(self._forget())


def _reap_pinned(fd: int) -> Tuple[bool, Optional[int]]:
    try:
        res = _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
    except ChildProcessError:
        return False, None   # its own waiter (e.g. Popen.wait) got there first
    if res is None:
        return False, None   # not exited after all: the next scan pins it again
    return True, waitid_returncode(res[1], res[2])
