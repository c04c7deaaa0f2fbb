"""Unmounting: plain ``umount2()``, submounts first, ``EBUSY`` retried.

Never ``MNT_DETACH``, never anything that deletes files: a mount that stays
busy is reported and left in place.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Dict, List, Optional, Tuple

from .. import _sys
from ..errors import mount_error
from ._mountinfo import MountInfo, mount_id_of, mountinfo

#: Delays between the tries of an unmount that keeps failing with EBUSY.
UNMOUNT_BACKOFF: Tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)


def open_beneath(dirfd: int, path: str) -> int:
    return _sys.openat2(dirfd, path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                        resolve=_sys.RESOLVE_BENEATH | _sys.RESOLVE_NO_SYMLINKS
                        | _sys.RESOLVE_NO_MAGICLINKS)


def _umount_retrying(parent_fd: int, name: str, shown: str) -> None:
    # "/proc/self/fd/N/name": the magic link pins the parent directory
    # exactly, and UMOUNT_NOFOLLOW keeps `name` from being a symlink.  An
    # O_PATH fd on the mount itself would keep it busy, so we hold none.
    path = f"/proc/self/fd/{parent_fd}/{name}"
    for delay in UNMOUNT_BACKOFF + (None,):
        try:
            _sys.umount2(path, _sys.UMOUNT_NOFOLLOW)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or delay is None:
                hint = ""
                if exc.errno == errno.EBUSY:
                    hint = (f"still in use after {len(UNMOUNT_BACKOFF) + 1} tries; left "
                            "mounted, nothing deleted")
                raise mount_error(exc.errno or errno.EIO, f"unable to unmount {shown}",
                                  shown, hint) from None
        time.sleep(delay)


def unmount_at(parent_fd: int, name: str, shown: str, expect_id: Optional[int] = None) -> bool:
    """Unmount the mount on ``name`` in ``parent_fd``, and everything under it.

    Submounts (an rbind's, or mounts made later inside it) are unmounted
    first, deepest first, each found by a lookup that stays beneath the
    mount and follows no symlink.  Plain ``umount2()`` only: ``EBUSY`` is
    retried with backoff (:data:`UNMOUNT_BACKOFF`) and then raised; no file
    is ever deleted.

    Returns:
        False if nothing is mounted there (or the mount is not
        ``expect_id``'s and ``expect_id`` is gone), True once unmounted.

    Raises:
        MountError: an unmount failed (``EBUSY`` after the retries), or the
            mount there is not ``expect_id`` while ``expect_id`` still exists.
    """
    try:
        fd = open_beneath(parent_fd, name)
    except FileNotFoundError:
        return False
    try:
        top_id = mount_id_of(fd)
    finally:
        os.close(fd)
    if top_id == mount_id_of(parent_fd):
        return False  # the name is not a mount point
    infos = mountinfo()
    by_id = {m.mount_id: m for m in infos}
    if expect_id is not None and top_id != expect_id:
        if expect_id not in by_id:
            return False
        raise mount_error(errno.EBUSY, f"unable to unmount {shown}", shown,
                          f"another mount (id {top_id}) covers the one pidsafe made "
                          f"(id {expect_id}); left both in place")
    top = by_id.get(top_id)
    if top is not None:
        kids: Dict[int, List[MountInfo]] = {}
        for m in infos:
            kids.setdefault(m.parent_id, []).append(m)
        order: List[Tuple[int, int, MountInfo]] = []
        stack = [(top_id, 0)]
        while stack:
            mid, depth = stack.pop()
            for pos, child in enumerate(kids.get(mid, [])):
                if child.mount_id != mid:
                    order.append((depth + 1, pos, child))
                    stack.append((child.mount_id, depth + 1))
        # Deepest first; among siblings the later (upper) mount first.
        order.sort(key=lambda t: (-t[0], -t[1]))
        base = os.path.dirname(top.mountpoint)
        for _, _, child in order:
            rel = os.path.relpath(child.mountpoint, base)
            if rel.startswith(".."):
                continue  # not reachable beneath this mount: not ours to touch
            sub_dir, sub_name = os.path.split(rel)
            sub_fd = open_beneath(parent_fd, sub_dir) if sub_dir else os.dup(parent_fd)
            try:
                _umount_retrying(sub_fd, sub_name, os.path.join(shown, os.path.relpath(
                    child.mountpoint, top.mountpoint)))
            finally:
                os.close(sub_fd)
    _umount_retrying(parent_fd, name, shown)
    return True
