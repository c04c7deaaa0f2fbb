"""The mounts of a container that has no mount namespace of its own.

runtime-spec: without a ``mount`` entry in ``linux.namespaces`` the
container inherits the runtime's mount namespace.  Its init then makes the
config's mounts, masked and read-only paths there, under the root, where
they outlive it; runc and crun leave them behind.  pidsafe records which
mounts were under the root before init ran (their ids) and, on delete or a
failed create, detaches every other mount under the root.

Each one is unmounted by identity: its mount point (as mountinfo spells it
now, after any rename) is opened with ``O_PATH``, the fd is checked to be
the root of that very mount id, and ``umount2`` is given the fd's
``/proc/self/fd`` path, so a rename or a symlink planted in the rootfs can
never steer the unmount elsewhere.  The container's processes are gone by
then (delete kills them first).
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any, Dict, List, Set

from .. import _sys
from .._sigsafe import critical
from ..mount import UNMOUNT_BACKOFF, MountInfo, mount_id_of, mountinfo

#: How many rounds of unmounting (stacked mounts surface one round at a time).
MAX_ROUNDS = 64
MNT_DETACH = 2


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return path == root or path.startswith(root + "/") or root == "/"


def record(rootfs: str) -> Dict[str, Any]:
    """What to keep in the state before init runs: the mounts under ``rootfs`` now."""
    root = os.path.realpath(rootfs)
    return {"root": root, "before": sorted(m.mount_id for m in mountinfo()
                                           if _under(m.mountpoint, root))}


def _new_mounts(root: str, before: Set[int], fresh: bool = False) -> List[MountInfo]:
    return [m for m in mountinfo(fresh=fresh)
            if _under(m.mountpoint, root) and m.mount_id not in before
            and m.mountpoint != root]


def unmount_new(rec: Dict[str, Any]) -> None:
    """Detach every mount under the root that :func:`record` did not see.

    Top-level ones first (a lazy detach takes their submounts along), the
    latest first.  At each one's mount point the mount on top is detached,
    if it is one of the new ones: mounts stacked at one point (another
    mount namespace being copied from ours meanwhile, with mounts that
    propagate back) go top first, one a round, and never stop the rest.

    A round that detaches nothing found the mounts elsewhere than the
    table said: a directory on the way was renamed (the container's
    processes, which share the rootfs, can), and the table read last,
    which a rename does not mark as changed, still shows the old paths.
    Then the table is read afresh and the round tried again, after each
    delay of the mount layer's ``EBUSY`` backoff (``UNMOUNT_BACKOFF``).

    Raises:
        OSError: a mount could not be unmounted (it is left in place).
    """
    root, before = rec["root"], set(rec["before"])
    idle = 0
    fresh = False
    for _ in range(MAX_ROUNDS):
        new = _new_mounts(root, before, fresh)
        if not new:
            return
        ids = {m.mount_id for m in new}
        done = 0
        for m in reversed([m for m in new if m.parent_id not in ids]):
            done += _detach(m, ids)
        fresh = not done
        if not done:
            if idle == len(UNMOUNT_BACKOFF):
                break
            time.sleep(UNMOUNT_BACKOFF[idle])
            idle += 1
    left = _new_mounts(root, before, fresh=True)
    if left:
        raise _sys.make_oserror(errno.EBUSY, "unmount the container's mounts",
                                left[0].mountpoint)


def _detach(m: MountInfo, ids: Set[int]) -> int:
    """Detach the mount on top at ``m``'s mount point, if it is ``m`` or
    another of ``ids`` (stacked on it); 1 if done."""
    try:
        with critical:
            fd = os.open(m.mountpoint, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0   # gone already, or covered by a sibling's rename
    try:
        if mount_id_of(fd) not in ids:
            return 0   # the name leads elsewhere now: not ours to detach
        try:
            _sys.umount2(f"/proc/self/fd/{fd}", MNT_DETACH, filename=m.mountpoint)
        except OSError as exc:
            if exc.errno != errno.EINVAL:   # EINVAL: not a mount point any more
                raise
            return 0
        return 1
    finally:
        os.close(fd)
