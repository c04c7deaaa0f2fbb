"""What :func:`mount_all` made, and how to find it again: ``Mounted``.

Also the fd bookkeeping that ``mount_all`` and ``unmount_all`` share: the
rootfs fd, opened and closed so that a signal handler raising at any
bytecode can neither leak it nor close it twice.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Dict, Iterable, Iterator, List, Tuple

from .._fd import OwnedFd
from .._sigsafe import critical
from .._value import Record
from ..errors import mount_error
from ._mountinfo import MountIdentity
from ._spec import Mount

__all__ = ["MountRecord", "Mounted", "close_all", "close_last", "open_rootfs"]


class MountRecord(Record):
    """One mount :func:`mount_all` attached, and how to find it again.

    Plain values only, so a caller can store them (a container's state file)
    and unmount from another process.

    Attributes:
        index: the mount's position in the list given to :func:`mount_all`.
        mount: the :class:`Mount` itself.
        target: where it was attached, inside the rootfs, symlinks resolved
            (``"/run"``); only for messages, never resolved again.
        mount_id: the kernel's id of the mount (``/proc/self/mountinfo``),
            which it reuses once the mount is gone.
        unique_id: the never-reused id (``statx(STATX_MNT_ID_UNIQUE)``,
            Linux 6.8; 0 where the kernel lacks it), which tells the mount
            apart from a later one that got the same ``mount_id``.
        root: ``(st_dev, st_ino)`` of the mount's root, the weaker check
            used where ``unique_id`` is 0.
    """

    index: int
    mount: Mount
    target: str
    mount_id: int
    unique_id: int
    root: Tuple[int, int]

    @property
    def identity(self) -> MountIdentity:
        """The identity :func:`unmount_all` looks for."""
        return MountIdentity(self.mount_id, self.unique_id, self.root)


class Mounted(Record):
    """What :func:`mount_all` returns: the mounts it made, in order.

    Pass it to :func:`unmount_all` to unmount by identity: each mount is
    found by its id wherever it is now, even after something in the rootfs
    renamed a directory on its path.
    """

    rootfs: str
    records: Tuple[MountRecord, ...]

    def __iter__(self) -> Iterator[MountRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-able data (a container's state file keeps it)."""
        return {"rootfs": self.rootfs, "records": [
            {"index": r.index, "target": r.target, "mount_id": r.mount_id,
             "unique_id": r.unique_id, "root": list(r.root),
             "mount": {"type": r.mount.type, "source": r.mount.source,
                       "target": r.mount.target, "options": list(r.mount.options)}}
            for r in self.records]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Mounted":
        """The inverse of :meth:`to_dict`, for another process to unmount.

        Raises:
            ValueError: ``data`` is not what :meth:`to_dict` makes.
        """
        try:
            return cls(str(data["rootfs"]), tuple(
                MountRecord(int(r["index"]), Mount(**r["mount"]), str(r["target"]),
                            int(r["mount_id"]), int(r["unique_id"]),
                            (int(r["root"][0]), int(r["root"][1])))
                for r in data["records"]))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"not a Mounted.to_dict(): {exc!r}") from None


def open_rootfs(root: str, owned: List[OwnedFd]) -> Tuple[OwnedFd, str]:
    """An ``O_PATH`` fd of the rootfs (added to ``owned``), and its path as
    mountinfo spells it."""
    try:
        with critical:  # os.open -> owned: nothing can come between
            owned.append(OwnedFd(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                                 "rootfs"))
        return owned[-1], os.readlink(f"/proc/self/fd/{owned[-1].fileno()}")
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, f"unable to open the rootfs {root}",
                          root) from None


def close_all(owned: Iterable[OwnedFd]) -> None:
    with critical:
        for fd in owned:
            fd.close()


def close_last(owned: List[OwnedFd]) -> None:
    """Close and forget ``owned``: the last step of a successful call.

    A ``finally: close_all(owned)`` alone would leave a window on the
    success path: a signal handler raising on entry to ``close_all`` (before
    its section diverts anything) would leak the fds.  So the success path
    closes in its own section, and the ``finally`` only cleans up (``if
    owned:``, which checks for no signal) after an exception.
    """
    with critical:
        for fd in owned:
            fd.close()
        owned.clear()
