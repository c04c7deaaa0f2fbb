"""The reaper's epoll set: a pidfd per watched process, and a wake eventfd.

Kernel behaviour relied on:

- A pidfd polls readable once its process has exited (zombie or reaped),
  and epoll readiness is level-triggered: a child that exited before it was
  added is reported at once, so registering after ``spawn()`` loses nothing.
- Registrations are one-shot (``EPOLLONESHOT``): each fires once, and is
  then disarmed: it never reports again.  The reaper re-arms one only in the
  never-expected case that its process could not be reaped yet.
- An epoll entry is keyed by (open file, fd number) and is freed when the
  *last* fd of that file is closed, or with the epoll instance.  A fired,
  disarmed entry is therefore harmless, and the reaper never spends a
  syscall on ``EPOLL_CTL_DEL``: under GIL contention every syscall is a
  chance to lose the GIL for milliseconds.

The fd registered for an owned child is the ``Process``'s own pidfd,
leased (``PidfdLease.take``): while leased, ``Process.close()`` defers
the real close, so the number can be neither closed under epoll nor reused,
and the exit is never lost when the caller closes its ``Process`` early.
The lease ends (``PidfdLease.end``) once the exit has been reaped.
Orphans are registered with the reaper's own pidfds (see ``_orphans``).

Registration takes no lock: it is a few dict operations (atomic under the
GIL) and one ``epoll_ctl``.  A lock held across ``epoll_ctl`` would be a big
lock in disguise: ``epoll_ctl`` releases the GIL, and under contention the
holder waits milliseconds to get it back while every other registrant queues
behind it.  What a lock would protect is done instead with an "in flight"
list: a registrant appends itself *before* it checks ``accepting``, and
``close()`` clears ``accepting`` and waits for the list to empty before it
closes the epoll fd, so no ``epoll_ctl`` can hit a closed (or reused) number.
The reaper thread reads ``regs`` as it goes, so an entry is inserted *before*
its fd enters the epoll set: an event for an fd the thread cannot find would
disarm the one-shot registration.
"""

from __future__ import annotations

import errno
import os
import select
import threading
import time
import weakref
from typing import Dict, List, Optional, Set, Tuple

from .._sigsafe import critical
from ..process import PidfdLease, Process
from ..errors import ReaperError

_EVENTS = select.EPOLLIN | select.EPOLLONESHOT


class Reg:
    """One pidfd in the set: an owned child (its ``lease``) or a pinned orphan."""

    __slots__ = ("fd", "pid", "lease")

    def __init__(self, fd: int, pid: int, lease: Optional[PidfdLease]) -> None:
        self.fd = fd
        self.pid = pid
        self.lease = lease


class PidfdSet:
    """The fds the reaper thread sleeps on and what each one stands for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()            # wake() against close() only
        self.accepting = False
        self._in_flight: List[Reg] = []         # registrations under way
        self.regs: Dict[int, Reg] = {}          # by fd: everything in the epoll set
        # By pid: a hint for the orphan scan (whose pidfd-holder check is what
        # keeps an owned child from being taken if a recycled pid slips by).
        self.owned_pids: Dict[int, Reg] = {}
        # Every Process ever watched (weakly: gone when its owner drops it),
        # so watching one twice cannot publish its exit twice.  The values
        # are tokens: setdefault() makes check-and-add one atomic step.
        self.watched: "weakref.WeakKeyDictionary[Process, object]" = (
            weakref.WeakKeyDictionary())
        self._epoll: Optional[select.epoll] = None
        self.wake_fd = -1

    def open(self) -> None:
        """Create the epoll instance and the wake eventfd (both close-on-exec)."""
        with critical:   # each fd is recorded the moment it exists
            self._epoll = select.epoll()
            self.wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self.wake_fd, select.EPOLLIN)
        with self.lock:
            self.accepting = True

    def owns_pid(self, pid: int) -> bool:
        """Whether an owned child with this pid is registered (a hint; see ``owned_pids``)."""
        return pid in self.owned_pids

    def known_fds(self) -> Set[int]:
        """Our fds (a snapshot): the registered pidfds, the epoll and wake fds."""
        fds = set(self.regs)
        fds.add(self.wake_fd)
        epoll = self._epoll
        if epoll is not None:
            fds.add(epoll.fileno())
        return fds

    # -- registration (any thread) -----------------------------------------------

    def add_owned(self, process: Process) -> None:
        """Watch ``process`` through its pidfd, leased until it is reaped.

        Raises:
            ValueError: closed, or watched before.
            ReaperError: the set no longer accepts registrations.
        """
        # Leased -> registered (or the lease ended) as one step for signal
        # handlers: a KeyboardInterrupt in between would leak the lease.
        with critical:
            lease = PidfdLease.take(process)
            reg = Reg(lease.fd, process.pid, lease)
            token = object()
            self._in_flight.append(reg)
            try:
                if not self.accepting:
                    raise ReaperError("the reaper is not running")
                if self.watched.setdefault(process, token) is not token:
                    raise ValueError(f"process {process.pid} is already watched by this reaper")
                try:
                    self.owned_pids[process.pid] = reg
                    self._add(reg)
                except BaseException:
                    if self.owned_pids.get(process.pid) is reg:
                        del self.owned_pids[process.pid]
                    del self.watched[process]
                    raise
            except BaseException:
                _end_lease_blocking(lease)
                raise
            finally:
                self._in_flight.remove(reg)

    def add_pinned(self, fd: int, pid: int) -> None:
        """Watch a pinned orphan (reaper thread; the set owns ``fd`` from now on)."""
        self._add(Reg(fd, pid, None))

    def _add(self, reg: Reg) -> None:
        self.regs[reg.fd] = reg
        try:
            assert self._epoll is not None
            self._epoll.register(reg.fd, _EVENTS)
        except BaseException:
            del self.regs[reg.fd]
            raise

    def drop(self, reg: Reg) -> None:
        """Forget a registration that has fired (reaper thread).

        No ``EPOLL_CTL_DEL``: the entry is disarmed (see the module
        docstring).  An owned child's lease is *not* ended here: the caller
        ends it (``end_lease``) when it has time; an orphan's pidfd now
        belongs to the caller.
        """
        del self.regs[reg.fd]
        if reg.lease is not None and self.owned_pids.get(reg.pid) is reg:
            del self.owned_pids[reg.pid]

    def wake(self, force: bool = False) -> None:
        """Wake the reaper thread (while accepting, or always with ``force``)."""
        with self.lock:
            if (self.accepting or force) and self.wake_fd >= 0:
                os.eventfd_write(self.wake_fd, 1)

    # -- the reaper thread -------------------------------------------------------

    def poll(self, timeout: float) -> List[Tuple[int, int]]:
        assert self._epoll is not None
        return self._epoll.poll(timeout)

    def read_wake(self) -> None:
        os.eventfd_read(self.wake_fd)

    def rearm(self, reg: Reg) -> None:
        assert self._epoll is not None
        self._epoll.modify(reg.fd, _EVENTS)

    # -- teardown ------------------------------------------------------------------

    def stop_accepting(self) -> None:
        """Refuse new registrations; return once none is under way."""
        with self.lock:
            self.accepting = False
        # A registration that saw ``accepting`` is in the list until its
        # epoll_ctl has returned; they are a few syscalls long.
        while self._in_flight:
            time.sleep(0.0005)

    def close(self) -> None:
        """Close our fds, end the leases (after the thread is joined)."""
        self.stop_accepting()
        regs = list(self.regs.values())
        self.regs.clear()
        self.owned_pids.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for reg in regs:
            if reg.lease is not None:
                _end_lease_blocking(reg.lease)
            else:
                os.close(reg.fd)
        if self.wake_fd >= 0:
            os.close(self.wake_fd)
            self.wake_fd = -1

    def forget_after_fork(self) -> None:
        """In a forked child: no thread, maybe a lock held by a vanished one."""
        self.lock = threading.Lock()
        self.accepting = False
        self._in_flight.clear()
        fds = [reg.fd for reg in self.regs.values() if reg.lease is None]
        for reg in self.regs.values():
            if reg.lease is not None:
                # Only this thread exists here, and the Process's lock may
                # have been held by one that does not (the reaper thread).
                reg.lease.after_fork()
        if self.wake_fd >= 0:
            fds.append(self.wake_fd)
        if self._epoll is not None:
            self._epoll.close()   # the object, or its __del__ would close a reused number
            self._epoll = None
        close_copies(fds)
        self.regs.clear()
        self.owned_pids.clear()
        self.wake_fd = -1


def _end_lease_blocking(lease: PidfdLease) -> None:
    """End a lease from a thread that may wait (not the reaper thread)."""
    fd = lease.end(wait=True)
    if fd is not None and fd >= 0:
        os.close(fd)


def close_copies(fds: List[int]) -> None:
    """In a forked child: close our copies of ``fds`` (one already gone is no error)."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise
