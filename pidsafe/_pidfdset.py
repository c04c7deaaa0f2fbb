"""The reaper's epoll set: a pidfd per watched process, and a wake eventfd.

Kernel behaviour relied on:

- A pidfd polls readable once its process has exited (zombie or reaped),
  and epoll readiness is level-triggered: a child that exited before it was
  added is reported at once, so registering after ``spawn()`` loses nothing.
- Registrations are one-shot (``EPOLLONESHOT``): each fires once; the reaper
  re-arms one only in the never-expected case that its process could not be
  reaped yet.
- epoll forgets a registration only when the *last* fd of the open file is
  closed, and closing our number while another fd keeps the file open would
  leave a stale entry that reports a number since reused.  So the set holds
  its own duplicate of each pidfd (the caller may ``close()`` its Process at
  any time), removes it from epoll explicitly, then closes it.

``lock`` is the reaper's whole registration critical section: a dict insert
and one ``epoll_ctl``.  It is never held across clone3, exec or a wait.  The
reaper thread reads ``regs`` without it, so an entry is inserted *before*
its fd enters the epoll set (``epoll_ctl`` releases the GIL, and an event
for an fd the thread cannot find would disarm the one-shot registration).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import threading
import weakref
from typing import Dict, List, Optional, Set, Tuple

from . import _sys
from ._process import Process, _returncode
from ._subscription import ReaperError

_EVENTS = select.EPOLLIN | select.EPOLLONESHOT


class Reg:
    """One pidfd in the set: an owned child (``process``) or a pinned orphan."""

    __slots__ = ("fd", "pid", "process")

    def __init__(self, fd: int, pid: int, process: Optional[Process]) -> None:
        self.fd = fd
        self.pid = pid
        self.process = process


class PidfdSet:
    """The fds the reaper thread sleeps on and what each one stands for."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepting = False
        self.regs: Dict[int, Reg] = {}          # by fd: everything in the epoll set
        self.owned_pids: Dict[int, Reg] = {}    # by pid, for the orphan scan
        # Every Process ever watched (weakly: gone when its owner drops it),
        # so watching one twice cannot publish its exit twice.
        self.watched: "weakref.WeakSet[Process]" = weakref.WeakSet()
        self._epoll: Optional[select.epoll] = None
        self.wake_fd = -1

    def open(self) -> None:
        """Create the epoll instance and the wake eventfd (both close-on-exec)."""
        self._epoll = select.epoll()
        self.wake_fd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._epoll.register(self.wake_fd, select.EPOLLIN)
        with self.lock:
            self.accepting = True

    def own_fds(self) -> Set[int]:
        fds = set(self.regs)
        if self.wake_fd >= 0:
            fds.add(self.wake_fd)
        if self._epoll is not None:
            fds.add(self._epoll.fileno())
        return fds

    # -- registration (any thread) -----------------------------------------------

    def add_owned(self, process: Process) -> None:
        """Watch ``process`` through a duplicate of its pidfd.

        Raises:
            ValueError: closed, or watched before.
            ReaperError: the set no longer accepts registrations.
        """
        with process._lock:   # borrowed: a racing close() cannot recycle the number
            borrowed = process._borrow_fd()
            try:
                fd = fcntl.fcntl(borrowed, fcntl.F_DUPFD_CLOEXEC, 0)
            finally:
                process._return_fd()
        reg = Reg(fd, process.pid, process)
        try:
            with self.lock:
                if not self.accepting:
                    raise ReaperError("the reaper is not running")
                if process in self.watched:
                    raise ValueError(f"process {process.pid} is already watched by this reaper")
                self._add_locked(reg)
                self.watched.add(process)
                self.owned_pids[process.pid] = reg
        except BaseException:
            os.close(fd)
            raise

    def add_pinned(self, fd: int, pid: int) -> None:
        """Watch a pinned orphan (the set owns ``fd`` from now on)."""
        with self.lock:
            self._add_locked(Reg(fd, pid, None))

    def _add_locked(self, reg: Reg) -> None:
        self.regs[reg.fd] = reg
        try:
            assert self._epoll is not None
            self._epoll.register(reg.fd, _EVENTS)
        except BaseException:
            del self.regs[reg.fd]
            raise

    def drop(self, reg: Reg, close: bool = True) -> bool:
        """Remove ``reg``; close its fd unless ``close`` is False.  False if gone."""
        with self.lock:
            if self.regs.pop(reg.fd, None) is None:
                return False
            if reg.process is not None and self.owned_pids.get(reg.pid) is reg:
                del self.owned_pids[reg.pid]
            assert self._epoll is not None
            self._epoll.unregister(reg.fd)
        if close:
            os.close(reg.fd)
        return True

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
        with self.lock:
            self.accepting = False

    def close(self) -> None:
        """Close every fd (after the reaper thread has been joined)."""
        with self.lock:
            self.accepting = False
            regs = list(self.regs.values())
            self.regs.clear()
            self.owned_pids.clear()
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None
        for reg in regs:
            os.close(reg.fd)
        if self.wake_fd >= 0:
            os.close(self.wake_fd)
            self.wake_fd = -1

    def forget_after_fork(self) -> None:
        """In a forked child: no thread, maybe a lock held by a vanished one."""
        self.lock = threading.Lock()
        self.accepting = False
        fds = list(self.regs)
        if self.wake_fd >= 0:
            fds.append(self.wake_fd)
        if self._epoll is not None:
            self._epoll.close()   # the object, or its __del__ would close a reused number
            self._epoll = None
        for fd in fds:
            try:
                os.close(fd)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
        self.regs.clear()
        self.owned_pids.clear()
        self.wake_fd = -1


def reap_owned(reg: Reg) -> Tuple[bool, Optional[int]]:
    """Reap an owned child whose pidfd is readable: ``(done, returncode)``.

    Through ``Process.poll()``, thread-safe and idempotent: whoever reaps
    first (the reaper, or a ``wait()`` in the caller's thread) sets
    ``returncode`` and the other sees it.  ``returncode`` is ``None`` with
    ``done`` only when another waiter in this process took the status and
    the kernel kept none (``PIDFD_INFO_EXIT`` needs Linux 6.15).
    """
    proc = reg.process
    assert proc is not None
    try:
        returncode = proc.poll()
    except ValueError:
        # The owner closed the Process: reap through our duplicate.
        return _reap_closed(proc, reg.fd)
    except OSError:
        return True, None
    return returncode is not None, returncode


def _reap_closed(proc: Process, fd: int) -> Tuple[bool, Optional[int]]:
    # Process._lock serialises us with reaping through the Process: a wait()
    # that was blocking in waitid() when close() came may still reap it, and
    # then publishes the status as in Process._reap_locked.
    with proc._lock:
        if proc.returncode is not None:
            return True, proc.returncode
        try:
            res = _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
        except ChildProcessError:
            while proc.returncode is None and proc._blocking:
                proc._published.wait()
            if proc.returncode is not None:
                return True, proc.returncode
            try:
                status = _sys.pidfd_exit_info(fd)
            except OSError as exc:
                if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                    raise
                return True, None
            if status is None:
                return True, None
            proc.returncode = os.waitstatus_to_exitcode(status)
            return True, proc.returncode
        if res is None:
            return False, None
        proc.returncode = _returncode(res[1], res[2])
        return True, proc.returncode
