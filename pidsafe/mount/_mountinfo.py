"""What the kernel says about mounts: ``/proc/self/mountinfo``, mount ids.

Used for bookkeeping (which mount an fd lives on, what is mounted under
what), for error messages (which filesystem refused an idmap) and by the
container's cgroup layer (where each cgroup hierarchy is mounted).  This is
pidsafe's one mountinfo parser.  pidsafe-runc's ``delete`` imports it (for
the cgroup layout), so it imports no more than that needs.
"""

from __future__ import annotations

import errno
import os
import select

from .. import _lite, _sys
from .._sigsafe import critical
from .._value import Record

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import BinaryIO, Callable, Dict, List, Optional, Tuple, Union

    StrPath = Union[str, "os.PathLike[str]"]


class MountInfo(Record):
    """One line of ``/proc/self/mountinfo``."""

    mount_id: int
    parent_id: int
    root: str
    mountpoint: str
    options: Tuple[str, ...]
    fstype: str
    source: str
    #: the filesystem's device (``st_dev``), from the ``major:minor`` field
    dev: int = 0
    #: the superblock's options (for a v1 cgroup, its controllers)
    super_options: Tuple[str, ...] = ()


#: What the kernel escapes in mountinfo's paths and names, and how: space,
#: tab, newline and backslash become ``\ooo`` (fs/proc_namespace.c, mangle()).
#: A backslash is itself escaped, so every other ``\`` stands for itself.
_ESCAPES = {"\\040": " ", "\\011": "\t", "\\012": "\n", "\\134": "\\"}


def unescape(field: str) -> str:
    """One field of mountinfo as the path (or name) it spells."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while True:
        j = field.find("\\", i)
        if j < 0:
            out.append(field[i:])
            return "".join(out)
        out.append(field[i:j])
        code = field[j:j + 4]
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
            i = j + 4
        else:
            out.append("\\")
            i = j + 1


def parse_mountinfo(text: str) -> List[MountInfo]:
    """The lines of a ``/proc/PID/mountinfo`` (proc(5)), in the kernel's order.

    Each line: mount id, parent id, ``major:minor``, root, mount point,
    mount options, optional fields, ``-``, filesystem type, source,
    superblock options.

    Raises:
        ValueError: a line is not in that form.
    """
    global _parsed
    # A table read again (this process's, after each mount or unmount of a
    # container's cycle) is mostly the lines read last time: those are
    # looked up, and only the new ones parsed.  A line is all its record
    # depends on, and the records are immutable.  The memo keeps the lines
    # of the last table parsed, no more.
    known = _parsed
    parsed: Dict[str, MountInfo] = {}
    out = []
    for line in text.splitlines():
        if not line:
            continue
        info = known.get(line)
        if info is None:
            info = _parse_line(line)
        parsed[line] = info
        out.append(info)
    _parsed = parsed
    return out


#: Each line of the table :func:`parse_mountinfo` parsed last, and its record.
_parsed: Dict[str, MountInfo] = {}


def _parse_line(line: str) -> MountInfo:
    left, _, right = line.partition(" - ")
    a, b = left.split(" "), right.split(" ")
    if len(a) < 6:
        raise ValueError(f"not a mountinfo line: {line!r}")
    major, _, minor = a[2].partition(":")
    return MountInfo(int(a[0]), int(a[1]), unescape(a[3]), unescape(a[4]),
                     tuple(a[5].split(",")), unescape(b[0]),
                     unescape(b[1]) if len(b) > 1 else "",
                     os.makedev(int(major), int(minor)),
                     tuple(b[2].split(",")) if len(b) > 2 else ())


_SELF = "/proc/self/mountinfo"


def mountinfo(path: str = _SELF, *, fresh: bool = False) -> List[MountInfo]:
    """The mounts of ``path`` (this process's by default), in the kernel's order.

    This process's own table is read again only once the kernel says it
    changed (:class:`_Table`), or with ``fresh``: a rename of a directory
    on the way to a mount point changes the path the kernel shows for it,
    and is no change of the table it signals.  So a caller who went to a
    mount's path and found another there (renamed since the last read) asks
    for a fresh table before it looks again.  The list returned is the
    caller's.

    Raises:
        OSError: the file cannot be read.
    """
    if path == _SELF:
        return list(_table.infos(fresh))
    return _read(path)


class _Table:
    """This process's mount table as last read, and a file on it that says when
    it changed.

    A ``/proc/PID/mountinfo`` fd polls ``POLLERR | POLLPRI`` once its mount
    namespace has changed since the fd was opened or last polled (a mount
    attached, moved or unmounted, its attributes or flags set:
    ``touch_mnt_namespace()`` in fs/namespace.c; proc_mounts(5)).  Not
    when a directory is renamed: the mount points below it then have new
    paths in the file, and the table read last shows the old ones (the
    ``fresh`` read of :func:`mountinfo`).  So a
    ``poll()`` with no wait tells whether the table read last is still the
    kernel's, and most reads cost one ``poll()`` and one ``stat()`` of
    ``/proc/self/ns/mnt`` (a ``setns()`` of the main thread switches
    namespaces without touching either table).  The file is this process's
    for its lifetime (close-on-exec, never passed to a child); a child of
    ``os.fork()`` opens its own.  A change after the poll is the same race
    as a change after any read.
    """

    __slots__ = ("file", "key", "parsed", "lock")

    def __init__(self) -> None:
        self.file: Optional[BinaryIO] = None
        self.key: Tuple[int, int, int] = (0, 0, 0)   # pid, st_dev, st_ino of ns/mnt
        self.parsed: List[MountInfo] = []
        self.lock = _lite.Lock()

    def infos(self, fresh: bool = False) -> List[MountInfo]:
        # Try-acquire: a signal handler (or another thread) that reads the
        # table while it is being refreshed reads it afresh instead of waiting.
        if not self.lock.acquire(blocking=False):
            return _read(_SELF)
        try:
            ns = os.stat("/proc/self/ns/mnt")
            key = (os.getpid(), ns.st_dev, ns.st_ino)
            f = self.file
            if f is not None and key == self.key:
                poller = select.poll()
                poller.register(f.fileno(), select.POLLPRI)
                if not poller.poll(0) and not fresh:
                    return self.parsed
                f.seek(0)
            else:
                f = self._reopen()
                self.key = key
            self.parsed = parse_mountinfo(f.read().decode("utf-8", "surrogateescape"))
            return self.parsed
        except BaseException:
            self.key = (0, 0, 0)   # half-read: read it all again next time
            raise
        finally:
            self.lock.release()

    def _reopen(self) -> BinaryIO:
        with critical:
            if self.file is not None:
                old, self.file = self.file, None
                old.close()
            self.key = (0, 0, 0)
            f = self.file = open(_SELF, "rb", buffering=0)
            return f

    def fileno(self) -> int:
        f = self.file
        return -1 if f is None else f.fileno()

    def after_fork_in_child(self) -> None:
        """The parent's file and lock: the child's copy is closed, a new lock taken."""
        self.lock = _lite.Lock()
        self.key = (0, 0, 0)
        if self.file is not None:
            old, self.file = self.file, None
            try:
                old.close()
            except OSError:
                pass   # closed in the child already: nothing of ours to keep


def _read(path: str) -> List[MountInfo]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


_table = _Table()
os.register_at_fork(after_in_child=_table.after_fork_in_child)


def table_fd() -> int:
    """The fd this process keeps on its own mountinfo (-1 before the first
    read): for leak checks that must leave it alone."""
    return _table.fileno()


def _if_supported(known: List[bool], statx: Callable[[int], int], fd: int) -> Optional[int]:
    """``statx(fd)``, or None where the kernel lacks what it asks for.

    The first call probes, and what it learns holds for good (``known``:
    ``[]`` until then, else whether the kernel has it).

    Raises:
        OSError: statx(2) failed for another reason.
    """
    if known == [True]:
        return statx(fd)
    if known:
        return None
    try:
        value = statx(fd)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        known[:] = [False]
        return None
    known[:] = [True]
    return value


_mnt_id_by_statx: List[bool] = []   # [] until known


def mount_id_of(fd: int) -> int:
    """The id of the mount an fd lives on: ``statx(STATX_MNT_ID)`` (Linux 5.8),
    else ``mnt_id`` in fdinfo (Linux 3.15)."""
    mid = _if_supported(_mnt_id_by_statx, _sys.mnt_id, fd)
    if mid is not None:
        return mid
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOTSUP, f"/proc/self/fdinfo/{fd} has no mnt_id")


def mount_id_of_path(path: StrPath) -> int:
    """The id of the mount holding ``path`` (symlinks followed).

    The fd it opens lives inside a critical section: no signal handler can
    leak it.

    Raises:
        OSError: ``path`` cannot be opened.
    """
    with critical:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            return mount_id_of(fd)
        finally:
            os.close(fd)


def describe_fs(path: StrPath) -> str:
    """``"ext4 (/dev/vda, mounted at /)"`` for the mount holding ``path``.

    Only for error messages: never raises, says ``"unknown"`` instead.
    """
    try:
        mid = mount_id_of_path(path)
        for m in mountinfo():
            if m.mount_id == mid:
                return f"{m.fstype} ({m.source}, mounted at {m.mountpoint})"
    except (OSError, ValueError):
        pass  # an error message must not fail; say less instead
    return "unknown"


def is_idmapped(path: StrPath) -> bool:
    """Whether the mount holding ``path`` is idmapped (False if unknown)."""
    try:
        mid = mount_id_of_path(path)
        return any(m.mount_id == mid and "idmapped" in m.options for m in mountinfo())
    except (OSError, ValueError):
        return False


# --- identities that survive renames, and tell reused ids apart --------------------

_unique_supported: List[bool] = []   # [] until known


def unique_id_of(fd: int) -> int:
    """The never-reused id of the mount ``fd`` is on (``STATX_MNT_ID_UNIQUE``,
    Linux 6.8), or 0 where the kernel does not report it.

    Raises:
        OSError: statx(2) failed for another reason.
    """
    uid = _if_supported(_unique_supported, _sys.mnt_id_unique, fd)
    return 0 if uid is None else uid


class MountIdentity(Record):
    """Which mount: mountinfo's id, plus what tells a reused id apart.

    Attributes:
        mount_id: the id in ``/proc/self/mountinfo``; the kernel reuses it
            once the mount is gone.
        unique_id: the never-reused id (0 where the kernel lacks it).
        root: ``(st_dev, st_ino)`` of the mount's root, the weaker check
            used without ``unique_id`` (a new tmpfs can get a freed device
            number, and its root is always inode 1 or 2).
    """

    mount_id: int
    unique_id: int
    root: Tuple[int, int]

    @classmethod
    def of(cls, fd: int) -> "MountIdentity":
        """The identity of the mount whose root ``fd`` is.

        Raises:
            OSError: fstat, fdinfo or statx failed.
        """
        st = os.fstat(fd)
        return cls(mount_id_of(fd), unique_id_of(fd), (st.st_dev, st.st_ino))

    def is_mount_of(self, fd: int) -> bool:
        """Whether ``fd`` (the root of a mount) is on this mount."""
        if mount_id_of(fd) != self.mount_id:
            return False
        if self.unique_id:
            unique = unique_id_of(fd)
            if unique:
                return unique == self.unique_id
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == self.root
