"""The process pidsafe-init forks into a running container, and bounded waits for it.

Entering a running container (exec, a hook in its namespaces), the
pidsafe-init we clone stays in our pid namespace, where the container
cannot see it, until it holds nothing of the host's; then it forks the
process that runs the program into the container's pid namespace
(csrc/init/main.c, ``PSI_OP_FORK``).  That child is ours
(``CLONE_PARENT``): pidsafe-init sends us its pidfd, made by the same
``clone3`` (``CLONE_PIDFD``), over a socket, so it is held by a pidfd from
birth (README's invariant 1) and its pid is never looked up.

Once it exists the container can see it and, as its uid, stop it
(SIGSTOP) or freeze it (its cgroup) before it reaches its execve: every
wait for it is bounded by a :class:`Deadline`, after which it is killed
and the caller gets ``ETIMEDOUT`` instead of waiting for ever.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import time

from ... import _sys
from ..._sigsafe import critical, hand_out, interruptibly
from ...errors import ContainerError, container_error
from ...process import Process, discard
from ._enter import Entry, forks
from ._protocol import StatusRecord
from ._protocol import read_record as read_status

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

    from ..config import Spec

_PID = struct.Struct("=i")

#: How long a process of ours entering a running container (exec, a hook in
#: its namespaces) may take to reach its program's execve.  The container
#: sees it and, as its uid, can stop or freeze it on the way: the caller
#: then gets ETIMEDOUT, not a hang.  (Normally it takes milliseconds.)
ENTER_TIMEOUT = 60.0


class Deadline:
    """When waiting for a process of ours in a container must give up.

    Args:
        seconds: from now.
        what: the process, for the message ("exec", "hook ...").
    """

    def __init__(self, seconds: float, what: str) -> None:
        self.seconds = seconds
        self.what = what
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left.

        Raises:
            ContainerError: none are left (ETIMEDOUT).
        """
        left = self._at - time.monotonic()
        if left <= 0:
            raise self.expired()
        return left

    def remaining_ms(self) -> int:
        """Milliseconds left, for poll(2).

        Raises:
            ContainerError: none are left (ETIMEDOUT).
        """
        return max(1, int(self.remaining() * 1000))

    def expired(self) -> ContainerError:
        """The error of a wait that reached the deadline (ETIMEDOUT)."""
        return container_error(
            errno.ETIMEDOUT, f"{self.what}: the process did not start within "
            f"{self.seconds:g} s (stopped or frozen inside the container?)")

    def again(self) -> Deadline:
        """The same bound from now: after a wait that was not the process's
        (create's hooks, which have timeouts of their own)."""
        return Deadline(self.seconds, self.what)


def enter_deadline(what: str, timeout: Optional[float] = None) -> Deadline:
    """The deadline of a process of ours entering a container: ``timeout``
    seconds, at most :data:`ENTER_TIMEOUT` (read now: tests lower it)."""
    limit = ENTER_TIMEOUT
    return Deadline(limit if timeout is None else min(timeout, limit), what)


def wait_readable(fds: Sequence[int], deadline: Optional[Deadline]) -> List[int]:
    """Those of ``fds`` readable (or at EOF) once one is.

    Raises:
        ContainerError: the deadline passed first (ETIMEDOUT).
    """
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    while True:
        with interruptibly:   # a wait: Ctrl-C may end it (_sigsafe)
            ready = poller.poll(None if deadline is None else deadline.remaining_ms())
        if ready:
            return [fd for fd, _ in ready]


def wait_exited(proc: Process, deadline: Optional[Deadline]) -> int:
    """``proc.wait()``, bounded by ``deadline``: a process the container can
    freeze (in its cgroups) or stop may never exit by itself.

    Raises:
        ContainerError: the deadline passed first (ETIMEDOUT); ``proc`` is
            still the caller's to kill and reap.
    """
    if deadline is None:
        return proc.wait()
    code = proc.poll()   # usually gone already (the pidsafe-init of an exec): no timed wait
    if code is not None:
        return code
    from ...errors import TimeoutExpired   # made on first use: it imports subprocess

    try:
        return proc.wait(timeout=deadline.remaining())
    except TimeoutExpired:
        raise deadline.expired() from None


def read_record(fd: int, deadline: Optional[Deadline] = None) -> Optional[StatusRecord]:
    """One status record from ``fd``, or ``None`` at EOF (a short read).

    EOF with no record means: init exec'd its program (the status pipe is
    close-on-exec), or init died.

    Raises:
        ContainerError: the deadline passed first (ETIMEDOUT).
    """
    if deadline is None:
        with interruptibly:   # a wait: Ctrl-C may end it (_sigsafe)
            return read_status(fd)

    def wait() -> None:
        wait_readable((fd,), deadline)

    return read_status(fd, wait)


def open_entry(init: Process, spec: Spec, owned: List[int]) -> Tuple[Entry, int]:
    """The fds pidsafe-init needs to enter ``init``'s container, and our end
    of its fork socket (-1 if it does not fork, see :func:`._enter.forks`).

    Every fd opened is appended to ``owned`` (the caller closes them) in the
    critical section that opens it.
    """
    with critical:
        pidfd = fcntl.fcntl(init.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
        owned.append(pidfd)
    if not forks(spec):
        return Entry(pidfd), -1
    # Only to enter a container (create does without); socket's C module:
    # socket.socketpair() wraps each end in a Python socket object, dropped here.
    import _socket as socket

    with critical:
        children = fcntl.fcntl(init.fileno(), fcntl.F_DUPFD_CLOEXEC, 3)
        owned.append(children)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        owned.append(ours.detach())
        owned.append(theirs.detach())
    return Entry(pidfd, children, owned[-1]), owned[-2]


def entry_fds(entry: Entry) -> List[int]:
    """The fds of ``entry`` pidsafe-init is given (at their numbers)."""
    return [fd for fd in (entry.pidfd, entry.children_pidfd, entry.fork_fd) if fd >= 0]


def take_forked(sock: int, args: Optional[List[str]]) -> Optional[Process]:
    """The child pidsafe-init forked into the container, owned, once that
    child has reported (a HOOKS or READY record): pidsafe-init lets it go
    only once it has sent its pidfd, and a message on a unix socket is
    queued on ours as the send returns, so it is there by now and taken
    without a wait (a poll) of its own.  ``None`` if nothing is there
    (pidsafe-init died first, or broke the protocol).

    Raises:
        OSError: the message is not pidsafe-init's (EPROTO).
    """
    # The pidfd is owned by a Process before a handler can raise, and a
    # handler raising at the section's end ends that process (hand_out):
    # the caller never got it.
    try:
        return hand_out(lambda: _receive(sock, args),
                        lambda proc: discard(proc) if proc is not None else None)
    except BlockingIOError:   # EAGAIN: nothing was sent
        return None


def end_forked(cloned: Process, sock: int, deadline: Optional[Deadline],
               passed: Sequence[int] = ()) -> None:
    """Undo an entry that failed once pidsafe-init (``cloned``) was cloned
    with the fork socket ``sock`` and our fds ``passed``: end it, and the
    child it may have forked.

    That child is ours (``CLONE_PARENT``) and only its pidfd can reap it:
    lost, it would leave a zombie for good (and keep the container's init
    from finishing its exit).  So pidsafe-init is let finish first: it
    exits as soon as it has sent the pidfd on ``sock``, or once it fails
    (its op stream, closed by the caller, ends early).  It is waited for
    until the entry's ``deadline``, the bound of every other wait for it.
    Not a shorter bound: an undo usually comes after the whole op stream
    was written (an interruptible section lets a signal act only at its
    waits), so pidsafe-init is on its way to the fork, and on a loaded
    machine that can take seconds.

    One still running then is held (stopped, or frozen in a cgroup; not
    by the container, which neither sees it nor has it in its cgroups),
    perhaps between its fork and its send: the child's pidfd is then in
    its fd table only, and would die with it.  So before it is killed
    its pidfds are copied (``pidfd_getfd``) and each that is a child of
    ours, not a process ``passed`` names, is ended with it.  Then
    whatever ``sock`` holds is received and ended.  A process killed
    here that does not die (a v1 freezer holds a killed task until it is
    thawed) goes to the abandoned registry (:func:`~pidsafe.process.discard`).
    Inside a critical section; raises nothing.
    """
    from ...errors import TimeoutExpired   # made on first use: it imports subprocess

    stuck: List[Process] = []
    if not cloned.closed and cloned.returncode is None:
        try:
            left = _UNDO_WAIT if deadline is None else deadline.remaining()
            cloned.wait(timeout=left)
        except (TimeoutExpired, ContainerError):
            stuck = _children_held(cloned, passed)
    discard(cloned)
    try:
        forked = _receive(sock, None)
    except OSError:   # nothing sent (EAGAIN), or not a child: nothing to end
        forked = None
    for proc in stuck if forked is None else [forked, *stuck]:
        discard(proc)


#: How long an undo without a deadline waits for pidsafe-init to finish by
#: itself (end_forked): milliseconds, unless the container froze it.
_UNDO_WAIT = 2.0


def _children_held(cloned: Process, passed: Sequence[int]) -> List[Process]:
    """Our children whose pidfds ``cloned`` (alive, unreaped: its pid is
    its own) holds, other than the processes of the pidfds in ``passed``:
    the child it forked, if it has not sent it yet.  Inside a critical
    section; raises nothing (what cannot be read is not there)."""
    known = set()
    for fd in passed:
        try:
            known.add(_sys.fdinfo_pid(fd))
        except OSError:
            pass
    held: List[Process] = []
    try:
        names = os.listdir(f"/proc/{cloned.pid}/fd")
    except OSError:
        return held
    for name in names:
        try:
            fd = _sys.pidfd_getfd(cloned.fileno(), int(name))
        except OSError:   # closed meanwhile
            continue
        try:
            pid = _sys.fdinfo_pid(fd)
            # A pidfd of a live process, and one of our children.
            if (pid is None or pid <= 0 or pid in known or any(p.pid == pid for p in held)
                    or not _sys.unreaped_child(fd)):
                raise ChildProcessError
        except OSError:
            os.close(fd)
            continue
        held.append(Process(pid, fd, child=True))
    return held


def _receive(sock: int, args: Optional[List[str]]) -> Optional[Process]:
    """The child pidsafe-init sent on ``sock`` (non-blocking), owned; None
    at EOF (it died before it sent one).

    Raises:
        OSError: nothing is there (EAGAIN); the message is not
            pidsafe-init's (EPROTO).
    """
    # socket's C module: its constants are plain ints, where socket's own
    # are IntFlags whose operators run Python code (on every exec's path).
    import _socket as socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, 0, sock)
    try:
        data, ancillary, flags, _ = s.recvmsg(
            _PID.size, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
    finally:
        s.detach()
    fds: List[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            n = len(payload) // _PID.size
            fds += struct.unpack(f"={n}i", payload[:n * _PID.size])
    if len(fds) != 1 or len(data) != _PID.size or flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        if not data and not fds:
            return None   # EOF: it died before it could send
        raise OSError(errno.EPROTO, "pidsafe-init sent no child")
    (pid,) = _PID.unpack(data)
    return Process(pid, fds[0], args=args, child=True)
