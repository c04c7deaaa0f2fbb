"""What create opens for init: namespaces to join, checked; host paths as detached binds.

Opened by the caller, as host root in the host's mount namespace, and
passed to init at the same numbers: init never resolves a host path, and
what it joins is the file that was checked, whatever the path names later.
"""

from __future__ import annotations

import errno
import os

from .. import _sys
from .. import errors as pidsafe_errors
from .._sigsafe import critical
from ..errors import container_error
from ..process import Process
from .init import CLONE_FLAGS

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Optional


def open_namespace(kind: str, path: str, field: str) -> int:
    """``path`` opened to join the ``kind`` namespace it names.

    Raises:
        ContainerError: (the errno's ``OSError`` subclass) naming the step,
            ``path`` and ``field``: ``ENOENT`` for the namespace of a process
            that has exited (its ``/proc/PID/ns`` is gone).
    """
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise container_error(exc.errno or errno.EIO, f"join {kind} namespace", path,
                              field) from None


def check_namespace(fd: int, kind: str, path: str, field: str) -> None:
    """Check that ``fd`` (opened from ``path``) is a namespace of type ``kind``.

    The fd itself is what init joins (a pid namespace: for the children it
    forks into it), so the file checked is the one joined, whatever
    ``path`` names later.
    """
    try:
        nstype: Optional[int] = _sys.ns_type(fd)
    except OSError as exc:
        if exc.errno != errno.ENOTTY:
            raise container_error(exc.errno or errno.EIO, f"join {kind} namespace", path,
                                  field) from None
        nstype = None
    if nstype != CLONE_FLAGS[kind]:
        what = next((k for k, v in CLONE_FLAGS.items() if v == nstype), None)
        raise container_error(errno.EINVAL, f"join {kind} namespace", path, field,
                              message=f"join {kind} namespace ({field}): {path} is "
                              + (f"a {what} namespace" if what else "not a namespace file"))


def open_tree(fds: List[int], source: str, recursive: bool, attr_set: int, attr_clr: int,
               userns_fd: int, field: str) -> int:
    """A detached bind of ``source`` with its attributes, for init to attach.

    Opened here, as host root in the host's mount namespace: init never
    resolves a host path (in a user namespace it could not reach root-only
    directories, and it must not be steered by the container's contents).
    """
    flags = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC
    at = _sys.AT_EMPTY_PATH
    if recursive:
        flags |= _sys.AT_RECURSIVE
        at |= _sys.AT_RECURSIVE
    try:
        with critical:
            fd = _sys.open_tree(_sys.AT_FDCWD, source, flags)
            fds.append(fd)
        if attr_set or attr_clr or userns_fd >= 0:
            _sys.mount_setattr(fd, "", at, attr_set=attr_set | (
                _sys.MOUNT_ATTR_IDMAP if userns_fd >= 0 else 0), attr_clr=attr_clr,
                userns_fd=max(userns_fd, 0), filename=source)
    except OSError as exc:
        if isinstance(exc, pidsafe_errors.ContainerError):
            raise
        raise container_error(exc.errno or errno.EIO, f"bind mount {source}", source,
                              field) from None
    return fd

def write_proc(proc: Process, name: str, value: str) -> None:
    """Write /proc/PID/NAME of our child: open first, then prove it is ours."""
    path = f"/proc/{proc.pid}/{name}"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _sys.pidfd_send_signal(proc.fileno(), 0)
        os.write(fd, value.encode())
    finally:
        os.close(fd)
