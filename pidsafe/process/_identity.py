"""A process's identity on disk, and getting a pidfd back from it safely.

A pid alone names a process only until it is reaped: after that the number
can belong to anyone.  Container state outlives the process that created
the container, so what it stores is a :class:`ProcessIdentity`: the pid,
the start time the kernel gives the process (``/proc/PID/stat`` field 22,
clock ticks since boot) and the boot it belongs to
(``/proc/sys/kernel/random/boot_id``).

Turning it back into a handle follows invariant 2 ("open before
proving"):

1. ``pidfd_open(pid)`` pins *whatever process has the pid now*;
2. ``/proc/PID/stat`` is read, and its start time (and the boot id) must
   match the record: if the recorded process had been reaped and the pid
   reused before step 1, the start time is the newcomer's and differs;
3. ``pidfd_send_signal(pidfd, 0)`` proves the pidfd's process is still
   alive *after* the read, so the process read in step 2 was the pidfd's.

Only then is the pidfd trusted.  The start time has a granularity of one
clock tick (usually 10 ms): a pid recycled within the same tick would pass,
as it would for runc, crun and youki; cycling through ``pid_max`` pids in
one tick is not something a real system does.
"""

from __future__ import annotations

import errno
import os

from .. import _sys
from .._sigsafe import hand_out
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
        with open(_BOOT_ID_PATH, encoding="ascii") as f:
            _boot_id = f.read().strip()
    return _boot_id


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


class ProcessIdentity(Frozen):
    """What names one process for good: pid, start time and boot id.

    An immutable value (pidsafe/_value.py): equal, and hashing alike, when
    its three fields are.
    """

    __slots__ = ("pid", "start_time", "boot_id")
    pid: int
    start_time: int
    boot_id: str

    def __init__(self, pid: int, start_time: int, boot_id: str) -> None:
        init_fields(self, pid, start_time, boot_id)

    @classmethod
    def of(cls, process: Process) -> "ProcessIdentity":
        """The identity of a live process held by a pidfd.

        The start time is read, then the process is proven alive through
        its pidfd, so the read was of this process and not of a successor.

        Raises:
            ProcessLookupError: it has exited and been reaped.
        """
        value = cls(process.pid, start_time(process.pid), boot_id())
        _sys.pidfd_send_signal(process.fileno(), 0)
        return value

    def to_json(self) -> Dict[str, Any]:
        return {"pid": self.pid, "startTime": self.start_time, "bootId": self.boot_id}

    @classmethod
    def from_json(cls, value: Any) -> "ProcessIdentity":
        """The inverse of :meth:`to_json`.

        Raises:
            ValueError: not a well-formed identity record.
        """
        try:
            pid, start, boot = value["pid"], value["startTime"], value["bootId"]
        except (TypeError, KeyError) as exc:
            raise ValueError(f"not a process identity record: {value!r}") from exc
        if (not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0
                or not isinstance(start, int) or isinstance(start, bool) or start < 0
                or not isinstance(boot, str)):
            raise ValueError(f"not a process identity record: {value!r}")
        return cls(pid, start, boot)

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
        """open()'s work, inside its critical section."""
        try:
            fd = _sys.pidfd_open(self.pid)
        except ProcessLookupError:
            raise StaleProcessError(self.pid, "no process has that pid") from None
        try:
            try:
                now = start_time(self.pid)
            except ProcessLookupError:
                raise StaleProcessError(self.pid, "it exited") from None
            if now != self.start_time:
                raise StaleProcessError(
                    self.pid, f"the pid now belongs to a process started at tick {now}, "
                              f"not {self.start_time}")
            try:
                _sys.pidfd_send_signal(fd, 0)
            except ProcessLookupError:
                raise StaleProcessError(self.pid, "it exited") from None
        except BaseException:
            os.close(fd)
            raise
        return Process(self.pid, fd, args=None, child=None)
