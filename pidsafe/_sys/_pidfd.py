"""pidfds: open, signal, wait, exit info; ending a child through its pidfd."""

from __future__ import annotations

import os

from .._lite import partial
from .._sigsafe import critical
from ._core import (CLD_DUMPED, CLD_EXITED, CLD_KILLED, WALL, WEXITED, WNOHANG, WNOWAIT, _retry,
                    ffi, lib)

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple


# cffi types resolved once: a type given as a string is parsed (then looked
# up in a cache) on every ffi.new(), and waitid is on every wait's path.
_WAITINFO_P = ffi.typeof("struct pidsafe_waitinfo *")
_INT32_P = ffi.typeof("int32_t *")
_INT_P = ffi.typeof("int *")
_NULL = ffi.NULL


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2) (Linux 5.3): a close-on-exec pidfd for ``pid``.

    Raises:
        ProcessLookupError: no process has that pid.
    """
    return _retry("pidfd_open", lib.pidsafe_pidfd_open, pid, flags)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """pidfd_send_signal(2) (Linux 5.1).

    A zombie still accepts any signal (and ignores it); once the process
    has been reaped the pidfd refers to no process and the call fails, even
    if the pid number has been reused.

    Raises:
        ProcessLookupError: the process has been reaped.
    """
    _retry("pidfd_send_signal", lib.pidsafe_pidfd_send_signal, pidfd, sig, 0)


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """pidfd_getfd(2) (Linux 5.6): duplicate another process's fd, cloexec."""
    return _retry("pidfd_getfd", lib.pidsafe_pidfd_getfd, pidfd, targetfd, 0)


def fdinfo_pid(fd: int) -> Optional[int]:
    """The ``Pid:`` of our ``fd``'s fdinfo: the pid a pidfd refers to, -1
    once its process was reaped, 0 if it is in another pid namespace;
    ``None`` if ``fd`` is not a pidfd.

    Raises:
        FileNotFoundError: ``fd`` is not open.
    """
    with critical:   # the fd is closed, whatever a signal handler raises
        info_fd = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            info = os.read(info_fd, 4096)   # Pid: is on the first lines
        finally:
            os.close(info_fd)
    for line in info.splitlines():
        if line.startswith(b"Pid:"):
            return int(line[4:])
    return None


def waitid_pidfd(pidfd: int, options: int) -> Optional[Tuple[int, int, int]]:
    """waitid(P_PIDFD) (Linux 5.4), always with ``__WALL``.

    Returns ``(pid, si_code, si_status)``, or ``None`` if ``WNOHANG`` found
    no change.

    Raises:
        ChildProcessError: not our child, or already reaped by someone else.
    """
    info = ffi.new(_WAITINFO_P)
    _retry("waitid(P_PIDFD)", lib.pidsafe_waitid_pidfd, pidfd, options | WALL, info)
    if info.pid == 0:
        return None
    return int(info.pid), int(info.code), int(info.status)


def unreaped_child(pidfd: int) -> bool:
    """Whether ``pidfd``'s process is a child of ours that nobody has reaped
    yet: ``waitid(WNOHANG|WNOWAIT)`` reaps nothing, and says ``ECHILD``
    for a process that is not our child or was reaped.

    Raises:
        OSError: waitid failed otherwise (``EBADF``: not a pidfd).
    """
    try:
        waitid_pidfd(pidfd, WEXITED | WNOHANG | WNOWAIT)
    except ChildProcessError:
        return False
    return True


def waitid_status(pidfd: int, options: int, record: Any = None) -> int:
    """:func:`waitid_pidfd` for the hot path: the answer as one int.

    Returns 0 if ``WNOHANG`` found no change, else ``si_code << 8 |
    si_status`` (:func:`status_returncode` decodes it): no struct to
    allocate, no tuple to build.

    ``record``: a :func:`status_record`; a nonzero answer is also stored in
    ``record[0]`` by the C call itself, before it returns.  A reap that
    records its status there cannot lose it to a signal handler that
    raises as the call returns (csrc/native/shims.c).

    Raises:
        ChildProcessError: not our child, or already reaped by someone else.
    """
    return _retry("waitid(P_PIDFD)", lib.pidsafe_waitid_pidfd_status, pidfd, options | WALL,
                  _NULL if record is None else record)


#: A new status record for :func:`waitid_status`: one C ``int``, 0 until a
#: reap stores a status in it (``record[0]``).  (A partial: no frame.)
status_record: Callable[[], Any] = partial(ffi.new, _INT_P, 0)


def status_returncode(status: int) -> int:
    """``Popen``'s return code from a nonzero :func:`waitid_status`: the exit
    status, or minus the signal number."""
    code = status >> 8
    if code == CLD_EXITED:
        return status & 0xFF
    if code == CLD_KILLED or code == CLD_DUMPED:
        return -(status & 0xFF)
    raise ValueError(f"unexpected waitid si_code {code}")  # pragma: no cover


def pidfd_exit_info(pidfd: int) -> Optional[int]:
    """ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT) (Linux 6.15).

    Returns the raw wait status the kernel kept when the process was reaped
    (by anyone), or ``None`` if it has no exit information yet.
    """
    out = ffi.new(_INT32_P)
    ret = _retry("ioctl(PIDFD_GET_INFO)", lib.pidsafe_pidfd_exit_info, pidfd, out)
    return int(out[0]) if ret == 1 else None


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2) (Linux 5.9)."""
    _retry("close_range", lib.pidsafe_close_range, first, last, flags)


def probe_child() -> Tuple[int, int]:
    """Create a child that exits at once; returns ``(pid, pidfd)``."""
    pidfd = ffi.new(_INT_P, -1)
    pid = _retry("clone3(CLONE_PIDFD)", lib.pidsafe_probe_child, pidfd)
    return pid, int(pidfd[0])


def end_child(pidfd: int, free: Optional[Callable[[], None]] = None) -> None:
    """Kill a child through its pidfd, reap it, close the pidfd, then ``free()``.

    For children that share our memory: ``free`` (unmapping the child's
    stack) runs only once the child is proven dead: reaped by us, or
    ``ECHILD`` (a foreign reaper using ``__WALL`` already reaped it).  An
    exception a signal handler raises during the wait (KeyboardInterrupt) is
    held until the child is reaped, then re-raised.

    Raises:
        OSError: waitid failed otherwise; ``free`` is then not called (a
            leak, never a use-after-unmap).
    """
    pending: Optional[BaseException] = None
    dead = False
    try:
        try:
            pidfd_send_signal(pidfd, 9)  # SIGKILL
        except ProcessLookupError:
            pass  # already reaped: waitid below says ECHILD
        while True:
            try:
                waitid_pidfd(pidfd, WEXITED)
            except ChildProcessError:
                pass  # reaped by someone using __WALL: dead all the same
            except OSError:
                raise
            except BaseException as exc:  # a signal handler raised mid-wait
                if pending is None:
                    pending = exc
                continue
            dead = True
            break
    finally:
        os.close(pidfd)
        if dead and free is not None:
            free()
    if pending is not None:
        raise pending

