"""Ways into a cgroup: for a child being created, and for a process that exists.

A child goes in as it is born or before it execs: clone3 into the v2
directory (``CLONE_INTO_CGROUP``), and on v1 by writing ``0`` to each
``tasks`` file it was handed open (:func:`open_tasks_fds`,
:func:`open_join_fds`).  A process that exists is moved by its pid, which
its pidfd then proves was still its own (:func:`add`).  Each function
takes the cgroup's directories (:class:`._files.CgroupDir`), v1 by
hierarchy and v2 (or None), as :class:`._cgroup.Cgroup` holds them.
"""

from __future__ import annotations

import errno
import os

from ... import _sys
from ..._fd import OwnedFd
from ..._sigsafe import critical
from ...errors import cgroup_error
from ._files import CgroupDir, open_for_writing, write_file
from ._signal import pidfd_pid

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Mapping, Optional, Protocol, Tuple, Union

    from ...errors import CgroupError

    class SupportsFileno(Protocol):
        """Anything that holds a pidfd: :class:`pidsafe.Process`, :class:`pidsafe.OwnedFd`."""

        def fileno(self) -> int: ...


def open_v2_fd(v2: Optional[CgroupDir]) -> Optional[OwnedFd]:
    """:meth:`._cgroup.Cgroup.open_v2_fd` (see there)."""
    if v2 is None:
        return None
    try:
        with critical:
            return OwnedFd(os.open(v2.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC),
                           "cgroup2 directory")
    except OSError as exc:
        raise cgroup_error(exc.errno or errno.EIO, f"unable to open {v2.path}",
                           v2.path) from None


def open_tasks_fds(v1: Mapping[str, CgroupDir]) -> List[OwnedFd]:
    """:meth:`._cgroup.Cgroup.open_tasks_fds` (see there)."""
    return [fd for fd, _ in open_for_writing([d.file("tasks") for d in v1.values()],
                                             "cgroup tasks file")]


def join_paths(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir]) -> Tuple[str, ...]:
    """The files :func:`open_join_fds` opens: every v1 ``tasks``, the v2 ``cgroup.procs``."""
    paths = [d.file("tasks") for d in v1.values()]
    if v2 is not None:
        paths.append(v2.file("cgroup.procs"))
    return tuple(paths)


def open_join_fds(paths: Tuple[str, ...]) -> List[Tuple[OwnedFd, str]]:
    """:meth:`._cgroup.Cgroup.open_join_fds` (see there), of :func:`join_paths`."""
    return open_for_writing(list(paths), "cgroup file to join")


def join_error(v1: Mapping[str, CgroupDir], err: int) -> CgroupError:
    """:meth:`._cgroup.Cgroup.join_error` (see there)."""
    where = ", ".join(d.path for d in v1.values())
    return cgroup_error(err, f"unable to join the cgroup ({where})",
                        next(iter(v1.values())).path if v1 else None)


def add(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir],
        process: Union[int, SupportsFileno]) -> None:
    """:meth:`._cgroup.Cgroup.add` (see there), into ``v2`` too unless it is None."""
    pidfd = process if isinstance(process, int) else process.fileno()
    pid = pidfd_pid(pidfd)
    dirs = ([v2] if v2 is not None else []) + list(v1.values())
    for d in dirs:
        write_file(d.file("cgroup.procs"), str(pid))
    try:
        _sys.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        raise cgroup_error(errno.ESRCH, f"process {pid} exited while being added to "
                                        "its cgroup", dirs[0].path if dirs else None) from None
