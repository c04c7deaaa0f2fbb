"""Freezing a container's cgroup: v2 ``cgroup.freeze``, else the v1 freezer.

v2 (Linux 5.2) reports the end of freezing in ``cgroup.events``
(``frozen 1``), and cgroupfs notifies pollers of that file with
``POLLPRI`` on every change (kernfs_notify), so the wait sleeps in
``poll(2)``.  The v1 freezer offers no notification: ``freezer.state``
says ``FREEZING`` until every task has stopped, and reading it also
retries the freeze, so it is re-read with a short backoff up to a bound.
On a hybrid machine the v2 cgroup is used when it exists: the v2 freezer
is core (no controller needed).
"""

from __future__ import annotations

import errno
import os
import select
import time

from ..._sigsafe import critical
from ...errors import CgroupError, cgroup_error
from ._files import CgroupDir, read_file, write_file

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Mapping, Optional


def _v2(v2: Optional[CgroupDir]) -> Optional[CgroupDir]:
    return v2 if v2 is not None and os.path.exists(v2.file("cgroup.freeze")) else None


def can_freeze(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir]) -> bool:
    """Whether either freezer is there."""
    return _v2(v2) is not None or "freezer" in v1


def is_frozen(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir]) -> bool:
    """Whether either freezer has the cgroup frozen (``False`` without a freezer).

    Raises:
        CgroupError: a state file cannot be read.
    """
    d = _v2(v2)
    if d is not None and "frozen 1" in read_file(d.file("cgroup.events")).splitlines():
        return True
    # Also v1's, which another runtime may have used on a hybrid machine.
    return "freezer" in v1 and read_file(v1["freezer"].file("freezer.state")).strip() == "FROZEN"


def _none() -> CgroupError:
    return cgroup_error(errno.EOPNOTSUPP, "the cgroup has no freezer (neither v2 "
                                          "cgroup.freeze nor a v1 freezer hierarchy)")


def _timeout(path: str, timeout: float) -> CgroupError:
    return cgroup_error(errno.ETIMEDOUT, f"cgroup {path} did not freeze within {timeout}s",
                        path, "a task may be stuck in the kernel; thawed again")


def freeze(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir], timeout: float) -> None:
    """Freeze, and return once the kernel says frozen.

    Nothing is left half-done: on timeout, or when anything interrupts the
    wait (a signal handler raising), the cgroup is thawed again.

    Raises:
        CgroupError: no freezer (``EOPNOTSUPP``), a failed write, or
            ``ETIMEDOUT`` (a ``TimeoutError``).
    """
    deadline = time.monotonic() + timeout
    d = _v2(v2)
    if d is None and "freezer" not in v1:
        raise _none()
    if d is not None:
        control, value, undo = d.file("cgroup.freeze"), "1", "0"
    else:
        control, value, undo = v1["freezer"].file("freezer.state"), "FROZEN", "THAWED"
    fd = -1
    try:
        if d is not None:
            with critical:      # opened before the write: no change can be missed
                fd = os.open(d.file("cgroup.events"), os.O_RDONLY | os.O_CLOEXEC)
        write_file(control, value)
        if d is not None:
            _wait_v2(fd, d.path, deadline, timeout)
        else:
            _wait_v1(control, deadline, timeout)
    except BaseException:
        with critical:
            write_file(control, undo)
        raise
    finally:
        if fd >= 0:
            with critical:
                os.close(fd)


def _wait_v2(fd: int, path: str, deadline: float, timeout: float) -> None:
    """Sleep in poll(2) on cgroup.events until it says ``frozen 1``."""
    events = os.path.join(path, "cgroup.events")
    poller = select.poll()
    poller.register(fd, select.POLLPRI)
    try:
        while "frozen 1" not in os.pread(fd, 4096, 0).decode().splitlines():
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timeout(path, timeout)
            poller.poll(max(1, int(left * 1000)))
    except CgroupError:
        raise
    except OSError as exc:
        raise cgroup_error(exc.errno or errno.EIO, f"unable to watch {events}",
                           events) from None


def _wait_v1(state: str, deadline: float, timeout: float) -> None:
    """Re-read freezer.state (which retries the freeze) until ``FROZEN``."""
    delay = 0.0005
    while read_file(state).strip() != "FROZEN":
        if time.monotonic() >= deadline:
            raise _timeout(os.path.dirname(state), timeout)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def thaw(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir]) -> None:
    """Thaw (both freezers where both exist, so either can have frozen it).

    Raises:
        CgroupError: no freezer, or a failed write.
    """
    d = _v2(v2)
    if d is None and "freezer" not in v1:
        raise _none()
    if d is not None:
        write_file(d.file("cgroup.freeze"), "0")
    if "freezer" in v1:
        write_file(v1["freezer"].file("freezer.state"), "THAWED")
