"""Sealed copies of pidsafe's static programs: what is exec'd, never the installed file.

Why.  Every process a container can see exposes its binary as
``/proc/PID/exe``, and an image whose program is a ``#!/proc/self/exe``
script re-runs whatever binary the process had at that exec.  Were
pidsafe-init run from its installed file, a container without a user
namespace (its root is host root) could reopen that file through the link
once it stops running and overwrite it: the next container's init, host
root, would run the attacker's code (CVE-2019-5736, runc's
``libcontainer/exeseal``).  So pidsafe execs a copy that nobody can write:

* a memfd (``memfd_create(MFD_ALLOW_SEALING|MFD_EXEC)``, Linux 3.17;
  ``MFD_EXEC`` from 6.3, needed where ``vm.memfd_noexec`` is set), filled
  from the installed file, ``chmod 0511``, then sealed with
  ``F_SEAL_SEAL|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_WRITE`` (and
  ``F_SEAL_EXEC``, 6.3, so its mode can never change): no write, no
  truncate, no new seal, by anyone, through any fd or mapping of it;
* exec'd by fd (``execveat(fd, "", AT_EMPTY_PATH)`` in the spawn child,
  ``ChildSpec.exec_fd``), so no path names it.

Cost.  One copy per process and program (pidsafe-init is ~800 KB: a copy
is about a millisecond), made on first use and kept: the fd is
close-on-exec and belongs to this module for the life of the process.
Before each use it is checked to be the same memfd (``fstat``: device and
inode), so a caller that closed it, or a forked child that reused the
number, gets a fresh copy rather than a stranger's file.
"""

from __future__ import annotations

import errno
import fcntl
import os

from .. import _lite
from .._sigsafe import critical

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, Tuple

MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002
MFD_EXEC = 0x0010          # Linux 6.3
F_ADD_SEALS = 1033
F_GET_SEALS = 1034
F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_EXEC = 0x0020       # Linux 6.3
#: The seals every copy has: its bytes and size are fixed for good.
SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE

_lock = _lite.Lock()
#: installed path -> (fd, st_dev, st_ino) of its sealed copy.
_copies: Dict[str, Tuple[int, int, int]] = {}


def sealed_copy(path: str) -> int:
    """An fd of a sealed, read-only memfd copy of the program at ``path``.

    The fd is close-on-exec and stays this module's: exec it
    (``ChildSpec.exec_fd``), never close it.

    Raises:
        OSError: ``path`` cannot be read (``filename`` is it), or the copy
            cannot be made or sealed.
    """
    fd = _cached(path)
    if fd >= 0:
        return fd
    with _lock:
        fd = _cached(path)
        if fd >= 0:
            return fd
        return _copy(path)


def is_sealed(fd: int) -> bool:
    """Whether ``fd`` is a memfd carrying every seal of :data:`SEALS`."""
    try:
        return fcntl.fcntl(fd, F_GET_SEALS) & SEALS == SEALS
    except OSError:
        return False


def _cached(path: str) -> int:
    entry = _copies.get(path)
    if entry is None:
        return -1
    fd, dev, ino = entry
    try:
        st = os.fstat(fd)
    except OSError:
        return -1
    return fd if (st.st_dev, st.st_ino) == (dev, ino) else -1


def _copy(path: str) -> int:
    """Make, fill and seal the copy of ``path``; record it.  Called with the lock."""
    src = -1
    dst = -1
    try:
        with critical:
            src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        size = os.fstat(src).st_size
        name = "pidsafe:" + os.path.basename(path)
        with critical:
            try:
                dst = os.memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC)
            except OSError as exc:
                if exc.errno != errno.EINVAL:   # no MFD_EXEC before Linux 6.3
                    raise
                dst = os.memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)
        done = 0
        while done < size:
            n = os.sendfile(dst, src, done, size - done)
            if n == 0:
                raise OSError(errno.EIO, f"{path} shrank while it was copied", path)
            done += n
        if os.fstat(dst).st_size != size:
            raise OSError(errno.EIO, f"{path} changed while it was copied", path)
        os.fchmod(dst, 0o511)
        try:
            fcntl.fcntl(dst, F_ADD_SEALS, F_SEAL_EXEC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:       # no F_SEAL_EXEC before Linux 6.3
                raise
        fcntl.fcntl(dst, F_ADD_SEALS, SEALS)
        st = os.fstat(dst)
        with critical:
            _copies[path] = (dst, st.st_dev, st.st_ino)
            dst = -1
            return _copies[path][0]
    finally:
        with critical:
            if src >= 0:
                os.close(src)
            if dst >= 0:
                os.close(dst)


def _after_fork_in_child() -> None:
    # The copies are inherited with the fds; a lock another thread held
    # across fork() would be held for ever.
    global _lock
    _lock = _lite.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
