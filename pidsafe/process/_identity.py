"""A process's identity on disk, and getting a pidfd back from it safely.

A pid alone names a process only until it is reaped: after that the number
can belong to anyone.  Container state outlives the process that created
the container, so what it stores is a :class:`ProcessIdentity`: the pid,
the start time the kernel gives the process (``/proc/PID/stat`` field 22,
clock ticks since boot), the boot it belongs to
(``/proc/sys/kernel/random/boot_id``) and, where the kernel has pidfs
(Linux 6.9), the inode number of the process's pidfd.

Turning it back into a handle follows invariant 2 ("open before
proving"):

1. ``pidfd_open(pid)`` pins *whatever process has the pid now*;
2. ``/proc/PID/stat`` is read, and its start time (and the boot id) must
   match the record: if the recorded process had been reaped and the pid
   reused before step 1, the start time is the newcomer's and differs;
3. the pidfd's inode number (when recorded) must match: on pidfs every
   process gets its own inode, numbered from a 64-bit counter that never
   repeats within a boot, so a pidfd of any other process differs;
4. ``pidfd_send_signal(pidfd, 0)`` proves the pidfd's process is still
   alive *after* the read, so the process read in step 2 was the pidfd's.

Only then is the pidfd trusted.  The start time alone has a granularity of
one clock tick (usually 10 ms): a pid recycled within the same tick would
pass, as it does for runc, crun and youki (root can recycle a pid at will
through ``ns_last_pid``, and a container cycle takes a few ticks).  The
pidfd inode closes that: it is why it is recorded wherever the kernel has
it.  Before pidfs (Linux 6.9) every pidfd shares one anonymous inode and
the identity has none (``inode`` is ``None``).
"""

from __future__ import annotations

import errno
import os

from .. import _lite, _sys
from .._sigsafe import critical, hand_out
from .._value import Frozen, init_fields
from ..errors import StaleProcessError
from ._process import Process

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

_BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
_boot_id: Optional[str] = None


def boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``), read once."""
    global _boot_id
    if _boot_id is None:
        # UTF-8, for these hex digits: its codec is loaded at start-up (ascii's is not)
        with open(_BOOT_ID_PATH, encoding="utf-8") as f:
            _boot_id = f.read().strip()
    return _boot_id


# Whether pidfds have an inode of their own per process (pidfs): probed once.
_pidfs: Optional[bool] = None


def pidfd_inode(pidfd: int) -> Optional[int]:
    """The inode number of ``pidfd``'s process on pidfs (Linux 6.9), else ``None``.

    On pidfs each process has one inode, numbered from a 64-bit counter
    that never repeats within a boot: the number names the process for
    good.  Before pidfs, pidfds are anonymous inodes that all share one
    number; the probe (once per interpreter) compares the inode of a pidfd
    of this process with ``pidfd``'s, so it must be another process's.
    """
    global _pidfs
    ino = os.fstat(pidfd).st_ino
    if _pidfs is None:
        with critical:   # a raising signal handler cannot leak the probe's pidfd
            own = _sys.pidfd_open(os.getpid())
            try:
                _pidfs = os.fstat(own).st_ino != ino
            finally:
                os.close(own)
    return ino if _pidfs else None


def start_time(pid: int) -> int:
    """Field 22 of ``/proc/PID/stat``: clock ticks from boot to the process's start.

    Raises:
        ProcessLookupError: no process has that pid (``ENOENT``/``ESRCH``).
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        raise _sys.make_oserror(errno.ESRCH, f"read /proc/{pid}/stat") from None
    # The command name (field 2) may hold spaces and parentheses: split
    # after the last ')'.  Field 3 is then the first one.
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[22 - 3])


def _count(value: Any) -> bool:
    """Whether a JSON value is a non-negative integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


class ProcessIdentity(Frozen):
    """What names one process for good: pid, start time, boot id, pidfd inode.

    ``inode`` is the inode number of the process's pidfd on pidfs (Linux
    6.9; see :func:`pidfd_inode`), or ``None`` on older kernels and in
    records written before pidsafe stored it; the other three fields are
    then the identity, good to a clock tick.  An immutable value
    (pidsafe/_value.py): equal, and hashing alike, when its fields are.
    """

    __slots__ = ("pid", "start_time", "boot_id", "inode")
    pid: int
    start_time: int
    boot_id: str
    inode: Optional[int]

    def __init__(self, pid: int, start_time: int, boot_id: str,
                 inode: Optional[int] = None) -> None:
        init_fields(self, pid, start_time, boot_id, inode)

    @classmethod
    def of(cls, process: Process) -> "ProcessIdentity":
        """The identity of a live process held by a pidfd.

        The start time is read, then the process is proven alive through
        its pidfd, so the read was of this process and not of a successor.

        Raises:
            ProcessLookupError: it has exited and been reaped.
        """
        fd = process.fileno()
        value = cls(process.pid, start_time(process.pid), boot_id(), pidfd_inode(fd))
        _sys.pidfd_send_signal(fd, 0)
        return value

    def to_json(self) -> Dict[str, Any]:
        value: Dict[str, Any] = {"pid": self.pid, "startTime": self.start_time,
                                 "bootId": self.boot_id}
        if self.inode is not None:
            value["pidfdInode"] = self.inode
        return value

    @classmethod
    def from_json(cls, value: Any) -> "ProcessIdentity":
        """The inverse of :meth:`to_json`.

        Raises:
            ValueError: not a well-formed identity record.
        """
        try:
            pid, start, boot = value["pid"], value["startTime"], value["bootId"]
            inode = value.get("pidfdInode")
        except (TypeError, KeyError, AttributeError) as exc:
            raise ValueError(f"not a process identity record: {value!r}") from exc
        if (not _count(pid) or pid == 0 or not _count(start) or not isinstance(boot, str)
                or (inode is not None and not _count(inode))):
            raise ValueError(f"not a process identity record: {value!r}")
        return cls(pid, start, boot, inode)

    def open(self) -> Process:
        """A :class:`Process` holding the recorded process by a pidfd, proven.

        Raises:
            StaleProcessError: the recorded process no longer exists (the
                pid is free, or now another process's, or the record is
                from another boot).  A ``ProcessLookupError``.
        """
        if self.boot_id != boot_id():
            raise StaleProcessError(self.pid, "the record is from another boot")
        return hand_out(self._open, Process.close)

    def _open(self) -> Process:
        """open()'s work, inside its critical section.

        The stdlib's pidfd calls, not ``_sys``'s: every pidsafe-runc command
        on a saved container (start, state, kill, delete) comes here, and
        then loads no compiled module (cffi's backend and ours: ~2 ms of
        each command).  Their failures are reported as ``_sys``'s are.
        """
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            raise StaleProcessError(self.pid, "no process has that pid") from None
        except OSError as exc:
            raise _sys.make_oserror(exc.errno or 0, "pidfd_open") from None
        try:
            try:
                now = start_time(self.pid)
            except ProcessLookupError:
                raise StaleProcessError(self.pid, "it exited") from None
            if now != self.start_time:
                raise StaleProcessError(
                    self.pid, f"the pid now belongs to a process started at tick {now}, "
                              f"not {self.start_time}")
            if self.inode is not None:
                inode = os.fstat(fd).st_ino   # the pinned process's, whatever happens next
                if inode != self.inode:
                    raise StaleProcessError(
                        self.pid, f"the pid now belongs to another process (pidfd inode "
                                  f"{inode}, not {self.inode})")
            try:
                _lite.pidfd_send_signal(fd, 0)
            except ProcessLookupError:
                raise StaleProcessError(self.pid, "it exited") from None
            except OSError as exc:
                raise _sys.make_oserror(exc.errno or 0, "pidfd_send_signal") from None
        except BaseException:
            os.close(fd)
            raise
        return Process(self.pid, fd, args=None, child=None)
