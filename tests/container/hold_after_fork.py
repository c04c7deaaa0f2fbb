"""Holding a child of ours stopped right after its next clone, by ptrace.

For tests of the window no signal can be timed into: between the
``clone3`` by which pidsafe-init forks a process into a container and its
sending of that process's pidfd.  A thread of ours seizes pidsafe-init
(``PTRACE_SEIZE`` with ``PTRACE_O_TRACECLONE``); at the clone's event stop
(the new process exists, its pidfd is in pidsafe-init's fd table) it queues
a SIGSTOP and detaches, so pidsafe-init stops as it returns from the clone,
before its next instruction: as if the container had frozen it there.
The new process, auto-attached, is detached at its first stop with that
stop suppressed, so that nothing of ptrace is left for the code under test
to see in its waits.  ptrace requests come from the tracer's own thread.

:class:`HoldForked` holds the other side instead: pidsafe-init goes on at
once, and the process its clone made stays stopped before its first
instruction (as the container first sees it) until the test lets it go.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import threading
from typing import Callable, Optional

PTRACE_CONT = 7
PTRACE_DETACH = 17
PTRACE_GETEVENTMSG = 0x4201
PTRACE_SEIZE = 0x4206
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_TRACEVFORK = 0x4
PTRACE_O_TRACECLONE = 0x8
#: Every kind of clone (clone3, or clone under a filter that refuses clone3).
PTRACE_O_TRACEFORKS = PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK
#: fork, vfork, clone: which one a clone is reported as depends on its flags
PTRACE_EVENT_FORKS = (1, 2, 3)
WALL = 0x40000000
CLD_TRAPPED = 4
SYS_KCMP = 312   # x86_64
KCMP_VM = 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_libc.ptrace.restype = ctypes.c_long
_libc.syscall.restype = ctypes.c_long


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> None:
    if _libc.ptrace(request, pid, addr, data) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request:#x}, {pid}): {os.strerror(err)}")


def _let_go(child: int) -> None:
    """Take the first stop of ``child`` (a clone's process, auto-attached),
    ptrace's, and detach it without that SIGSTOP: as if never traced."""
    os.waitpid(child, WALL)
    _ptrace(PTRACE_DETACH, child)


def _next_clone(pid: int) -> int:
    """Run the seized ``pid`` (its other stops delivered) up to the event
    stop of its next clone the tracer's options report, where it is left;
    the new process's pid."""
    while True:
        # Peek (WNOWAIT): an exit is the code under test's to reap.
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WSTOPPED | os.WNOWAIT | WALL)
        if info is None or info.si_code != CLD_TRAPPED:
            raise AssertionError(f"pidsafe-init ended before it forked: {info}")
        _, status = os.waitpid(pid, WALL)   # takes that stop, not an exit
        if status >> 16 in PTRACE_EVENT_FORKS:
            break
        _ptrace(PTRACE_CONT, pid, 0, os.WSTOPSIG(status))   # not ours: deliver it
    msg = ctypes.c_ulong()
    _ptrace(PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(msg))
    return int(msg.value)


class _Tracer:
    """A tracer thread: :meth:`seize` a child of ours; at its next clone
    (of those ``options`` report) :meth:`_held` runs on the tracer's thread
    with the seized pid and the new process's, both stopped.  ``error`` is
    whatever went wrong."""

    def __init__(self, name: str, options: int) -> None:
        self._options = options
        self._pids: queue.Queue[int] = queue.Queue()
        self._seized = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def seize(self, pid: int) -> None:
        """Trace ``pid`` (an unreaped child of ours) from now on."""
        self._pids.put(pid)
        self._seized.wait()
        if self.error is not None:
            raise self.error

    def join(self) -> None:
        """Wait for the tracer: it ends once :meth:`_held` has (or it failed)."""
        self._thread.join()

    def _run(self) -> None:
        try:
            pid = self._pids.get()
            try:
                _ptrace(PTRACE_SEIZE, pid, 0, self._options)
            finally:
                self._seized.set()
            self._held(pid, _next_clone(pid))
        except BaseException as exc:   # noqa: B036 - reported to the test's thread
            self.error = exc

    def _held(self, pid: int, child: int) -> None:
        raise NotImplementedError


class HoldAfterFork(_Tracer):
    """Leaves the seized process stopped just after its next clone.
    ``forked`` is then a pidfd of the process that clone made (ours to
    close), ``cgroups`` the held process's ``/proc/PID/cgroup`` then."""

    def __init__(self) -> None:
        self.forked: Optional[int] = None
        self.cgroups = ""
        super().__init__("hold-after-fork", PTRACE_O_TRACECLONE)

    def _held(self, pid: int, child: int) -> None:
        self.forked = os.pidfd_open(child)   # ours (CLONE_PARENT), unreaped
        with open(f"/proc/{pid}/cgroup") as f:
            self.cgroups = f.read()
        os.kill(pid, signal.SIGSTOP)   # taken as it returns from the clone
        _ptrace(PTRACE_DETACH, pid)
        _let_go(child)


class SharesMemory(_Tracer):
    """At the seized process's next clone (both stopped), whether the
    process it made shares its memory (``kcmp(KCMP_VM)``); then lets both
    go as if never traced.  ``shared`` is the answer once :meth:`join` has
    returned."""

    def __init__(self) -> None:
        self.shared: Optional[bool] = None
        super().__init__("shares-memory", PTRACE_O_TRACEFORKS)

    def _held(self, pid: int, child: int) -> None:
        try:
            res = _libc.syscall(SYS_KCMP, pid, child, KCMP_VM, 0, 0)
            if res < 0:
                err = ctypes.get_errno()
                raise OSError(err, f"kcmp({pid}, {child}, KCMP_VM): {os.strerror(err)}")
            self.shared = res == 0
        finally:
            _ptrace(PTRACE_DETACH, pid)
            _let_go(child)


class HoldForked(_Tracer):
    """Lets the seized process go on at its next clone, and holds the
    process that clone made stopped before its first instruction until
    ``until(pid)`` (called on the tracer's thread with that process's pid)
    returns; then lets it go as if never traced, even if ``until``
    raised.  ``forked`` is that pid once held."""

    def __init__(self, until: Callable[[int], None]) -> None:
        self._until = until
        self.forked: Optional[int] = None
        super().__init__("hold-forked", PTRACE_O_TRACEFORKS)

    def _held(self, pid: int, child: int) -> None:
        _ptrace(PTRACE_DETACH, pid)   # pidsafe-init goes on, untraced
        os.waitpid(child, WALL)   # the new process's first stop, ptrace's
        self.forked = child
        try:
            self._until(child)
        finally:
            _ptrace(PTRACE_DETACH, child)   # without that stop's SIGSTOP
