"""Processes and cgroups through pidfds: signalling every process of a cgroup,
pids from pidfds, and the cgroups a process is in.

A pid read from ``cgroup.procs`` is only a number: by the time it is used
the process may have exited and the pid been reused by a process outside
the cgroup.  So each pid is opened with ``pidfd_open`` (which pins one
process), that process's ``/proc/PID/cgroup`` is checked, and only then is
it signalled through the pidfd; a successful signal proves the process was
alive, hence still the pidfd's, when its cgroup was read (open, then
prove: invariant 2).
"""

from __future__ import annotations

import errno
import os

from ... import _sys
from ..._sigsafe import critical
from ...errors import cgroup_error
from ._files import CgroupDir, procs, read_file
from ._layout import CgroupLayout

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple


def pidfd_pid(pidfd: int) -> int:
    """The pid a pidfd refers to, from ``/proc/self/fdinfo`` (``Pid:``)."""
    path = f"/proc/self/fdinfo/{pidfd}"
    try:
        pid = _sys.fdinfo_pid(pidfd)
    except OSError as exc:
        raise cgroup_error(exc.errno or errno.EIO, f"unable to read {path}", path) from None
    if pid is None:
        raise cgroup_error(errno.EBADF, f"fd {pidfd} is not a pidfd")
    if pid <= 0:
        raise cgroup_error(errno.ESRCH, f"the process of pidfd {pidfd} has exited"
                           if pid < 0 else f"pidfd {pidfd} is in another pid namespace")
    return pid


def in_cgroup(pid: int, d: CgroupDir) -> bool:
    """Whether ``/proc/PID/cgroup`` puts ``pid`` in ``d`` or below it."""
    try:
        text = read_file(f"/proc/{pid}/cgroup")
    except (FileNotFoundError, ProcessLookupError):
        return False    # exited (and reaped) since it was listed
    for line in text.splitlines():
        _, key, path = line.split(":", 2)
        if key == d.key:
            return path == d.cgroup or path.startswith(d.cgroup.rstrip("/") + "/")
    return False


def cgroups_of(pidfd: int, layout: CgroupLayout
               ) -> Tuple[Dict[str, CgroupDir], Optional[CgroupDir]]:
    """The cgroups of the process ``pidfd`` refers to: (v1 by hierarchy, v2).

    ``/proc/PID/cgroup`` is read first, then the process is proven alive
    through its pidfd, so the paths read are its own (invariant 2).
    Hierarchies that ``layout`` has no mount for are left out.

    Raises:
        CgroupError: a file cannot be read; ``ESRCH`` (also a
            ``ProcessLookupError``) if the process has exited; ``ENOENT`` if
            its cgroup lies outside the part of a hierarchy mounted here.
    """
    pid = pidfd_pid(pidfd)
    path = f"/proc/{pid}/cgroup"
    text = read_file(path)
    try:
        _sys.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        raise cgroup_error(errno.ESRCH, f"process {pid} exited while its cgroups were read",
                           path) from None
    v1: Dict[str, CgroupDir] = {}
    v2: Optional[CgroupDir] = None
    for line in text.splitlines():
        hid, key, cgroup = line.split(":", 2)
        h = layout.v2 if hid == "0" else next((h for h in layout.v1 if h.key == key), None)
        if h is None:
            continue
        top = h.root.rstrip("/")
        if h.root != "/" and cgroup != h.root and not cgroup.startswith(top + "/"):
            raise cgroup_error(errno.ENOENT, f"cgroup {cgroup} of process {pid} is outside "
                               f"the part of its hierarchy mounted at {h.mountpoint}", path)
        d = CgroupDir(h.key, h.directory(cgroup), cgroup)
        if h.v2:
            v2 = d
        else:
            v1[h.key] = d
    return v1, v2


def signal_all(d: CgroupDir, sig: int, rounds: int) -> None:
    """Signal, through pidfds, every process listed in ``d`` until none is new.

    ``pidfd_open(2)`` (Linux 5.3), ``pidfd_send_signal(2)`` (Linux 5.1).
    The pidfds stay open until the end, so a pid seen again is known to be
    the same process (its pidfd still reaches it) or a new one.

    Raises:
        CgroupError: a cgroup file failed, or ``EAGAIN`` when new processes
            still appeared after ``rounds`` passes.
    """
    held: Dict[int, int] = {}
    try:
        for _ in range(rounds):
            new = False
            for pid in procs(d.path):
                old = held.get(pid)
                if old is not None:
                    try:
                        _sys.pidfd_send_signal(old, 0)
                        continue        # the same process, signalled already
                    except ProcessLookupError:
                        with critical:          # reaped; the pid is someone new
                            os.close(held.pop(pid))
                try:
                    with critical:
                        held[pid] = _sys.pidfd_open(pid)
                except ProcessLookupError:
                    continue            # exited since it was listed
                # Open, then prove: the pidfd pins one process; reading its
                # cgroup and then reaching it alive shows the read was its own.
                if not in_cgroup(pid, d):
                    continue
                try:
                    _sys.pidfd_send_signal(held[pid], sig)
                    new = True
                except ProcessLookupError:
                    continue
            if not new:
                return
        raise cgroup_error(errno.EAGAIN, f"processes kept appearing in {d.path} while "
                                         "it was signalled", d.path)
    finally:
        with critical:
            for fd in held.values():
                os.close(fd)
