"""Unmounting: plain ``umount2()``, submounts first, ``EBUSY`` retried.

Never ``MNT_DETACH``, never anything that deletes files: a mount that stays
busy is reported and left in place.

Two ways to find what to unmount:

* :func:`unmount_at`: whatever is mounted on ``name`` in a directory fd
  (optionally checked against an expected mount id);
* :func:`unmount_identified`: one mount, by the identity recorded when it
  was attached (:class:`MountIdentity`: its mount id, plus the never-reused
  ``statx`` id, or else the device and inode of its root, which tell a
  reused id apart).  Where it is now is read from
  ``/proc/self/mountinfo`` (the kernel keeps a mount's path current when a
  directory on it is renamed; read afresh when the mount was not where the
  table said, since a rename is no change the table signals), resolved
  beneath the rootfs fd without following symlinks, and checked to be that
  mount again before the ``umount2()``; afterwards the id must be gone.  A rename in the rootfs
  therefore cannot make pidsafe miss the mount, nor report it gone while it
  is attached.

Each attempt is one short, non-blocking pass meant to run inside
``with critical:``; :func:`retrying` sleeps between ``EBUSY`` attempts,
outside any critical section.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Callable, Dict, List, Optional, Tuple

from .. import _sys
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import MountError, mount_error
from ._mountinfo import MountIdentity, MountInfo, mount_id_of, mountinfo

#: Delays between the tries of an unmount that keeps failing with EBUSY.
UNMOUNT_BACKOFF: Tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)

#: How often a mount found by identity may move under us before we give up.
MAX_MOVES = 16

#: What a lookup gives when the path changed under it.
_MOVED = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV)

_BENEATH = _sys.RESOLVE_BENEATH | _sys.RESOLVE_NO_SYMLINKS | _sys.RESOLVE_NO_MAGICLINKS


def open_beneath(dirfd: int, path: str) -> int:
    """An ``O_PATH`` fd of ``path`` beneath ``dirfd``, following no symlink."""
    return _sys.openat2(dirfd, path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                        resolve=_BENEATH)


#: Marks the MountError of one attempt that met EBUSY: retrying() tries again.
_RETRY = "_pidsafe_retry_busy"


def _busy(shown: str) -> MountError:
    exc = mount_error(errno.EBUSY, f"unable to unmount {shown}", shown)
    setattr(exc, _RETRY, True)
    return exc


def _umount_once(parent_fd: int, name: str, shown: str) -> None:
    # "/proc/self/fd/N/name": the magic link pins the parent directory
    # exactly, and UMOUNT_NOFOLLOW keeps `name` from being a symlink.  An
    # O_PATH fd on the mount itself would keep it busy, so we hold none.
    try:
        _sys.umount2(f"/proc/self/fd/{parent_fd}/{name}", _sys.UMOUNT_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.EBUSY:
            raise _busy(shown) from None
        raise mount_error(exc.errno or errno.EIO, f"unable to unmount {shown}", shown) from None


def retrying(attempt: Callable[[], bool]) -> bool:
    """Run ``attempt`` (one pass) in a critical section until it is not busy.

    ``EBUSY`` is retried after each delay of :data:`UNMOUNT_BACKOFF`, the
    sleeps outside the section, then raised as a :class:`MountError`.

    Raises:
        MountError: ``EBUSY`` after every try (nothing was deleted), or what
            the attempt raised.
    """
    for delay in UNMOUNT_BACKOFF + (None,):
        try:
            with critical:
                return attempt()
        except MountError as busy:
            if not getattr(busy, _RETRY, False):
                raise
            if delay is None:
                raise mount_error(errno.EBUSY, f"unable to unmount {busy.path}", busy.path,
                                  f"still in use after {len(UNMOUNT_BACKOFF) + 1} tries; left "
                                  "mounted, nothing deleted") from None
        time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def unmount_at(parent_fd: int, name: str, shown: str,
               expect_id: Optional[int] = None,
               infos: Optional[List[MountInfo]] = None) -> bool:
    """Unmount the mount on ``name`` in ``parent_fd``, and everything under it.

    Submounts (an rbind's, or mounts made later inside it) are unmounted
    first, deepest first, each found by a lookup that stays beneath the
    mount and follows no symlink.  Plain ``umount2()`` only, one pass: a
    busy mount raises at once (wrap in :func:`retrying` to retry); no file
    is ever deleted.

    ``infos``: the mount table as the caller has just read it (else it is
    read here).  A mount made since then under the one unmounted makes
    ``umount2()`` fail busy, which a retry (:func:`retrying`) reads afresh.

    Returns:
        False if nothing is mounted there (or the mount there is not
        ``expect_id`` and that one is gone), True once unmounted.

    Raises:
        MountError: an unmount failed, or the mount there is not
            ``expect_id`` while ``expect_id`` still exists.
    """
    try:
        return _unmount_at(parent_fd, name, shown, expect_id, infos)
    except MountError:
        raise
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, f"unable to unmount {shown}", shown) from None


def _unmount_at(parent_fd: int, name: str, shown: str, expect_id: Optional[int],
                infos: Optional[List[MountInfo]]) -> bool:
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
    if infos is None:
        infos = _table(shown)
    by_id = {m.mount_id: m for m in infos}
    if expect_id is not None and top_id != expect_id:
        if expect_id not in by_id:
            return False
        raise mount_error(errno.EBUSY, f"unable to unmount {shown}", shown,
                          f"another mount (id {top_id}) covers the one pidsafe made "
                          f"(id {expect_id}); left both in place")
    top = by_id.get(top_id)
    if top is not None:
        _unmount_submounts(parent_fd, top, infos, shown)
    _umount_once(parent_fd, name, shown)
    return True


def _unmount_submounts(parent_fd: int, top: MountInfo, infos: List[MountInfo],
                       shown: str) -> None:
    kids: Dict[int, List[MountInfo]] = {}
    for m in infos:
        kids.setdefault(m.parent_id, []).append(m)
    order: List[Tuple[int, int, MountInfo]] = []
    stack = [(top.mount_id, 0)]
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
        with OwnedFd(open_beneath(parent_fd, sub_dir) if sub_dir else os.dup(parent_fd),
                     "mount parent") as sub:
            _umount_once(sub.fileno(), sub_name, os.path.join(shown, os.path.relpath(
                child.mountpoint, top.mountpoint)))


def unmount_identified(rootfd: int, root: str, ident: MountIdentity, shown: str) -> bool:
    """Unmount the mount ``ident`` wherever it is now beneath ``rootfd``.

    ``root`` is the rootfs's path as mountinfo spells it (the readlink of
    its fd); ``shown`` the target as it was when attached, for messages.
    One pass (see the module docstring); run through :func:`retrying`.

    Returns:
        False if that mount is gone already, True once unmounted.

    Raises:
        MountError: it is now outside the rootfs, covered by another mount,
            keeps moving, or its unmount failed; it was left in place.
    """
    unmounted = False
    for tries in range(MAX_MOVES):
        # From the second look on, afresh: the mount was not where the table
        # said (a rename moves a mount point without the table signalling a
        # change), or it was unmounted (a change: read afresh anyway).
        infos = _table(shown, fresh=tries > 0)
        info = next((m for m in infos if m.mount_id == ident.mount_id), None)
        if info is None:
            return unmounted
        where = shown if info.mountpoint == shown else f"{shown} (now at {info.mountpoint})"
        rel = os.path.relpath(info.mountpoint, root)
        if rel == "." or rel.startswith("../") or rel == "..":
            if not _is_it(info.mountpoint, ident):
                return unmounted  # the id was reused: ours is gone
            raise mount_error(errno.EXDEV, f"unable to unmount {where}", info.mountpoint,
                              f"mount id {ident.mount_id} is no longer beneath the rootfs "
                              f"{root}; left in place")
        parent_rel, name = os.path.split(rel)
        try:
            parent = OwnedFd(_sys.openat2(rootfd, parent_rel or ".", os.O_PATH | os.O_DIRECTORY
                                          | os.O_CLOEXEC, resolve=_BENEATH), "mount parent")
        except OSError as exc:
            if exc.errno in _MOVED:
                continue  # moved while we looked: read mountinfo again
            raise mount_error(exc.errno or errno.EIO, f"unable to unmount {where}",
                              info.mountpoint) from None
        with parent:
            try:
                top = OwnedFd(open_beneath(parent.fileno(), name), "mount")
            except OSError as exc:
                if exc.errno in _MOVED:
                    continue  # moved while we looked
                raise mount_error(exc.errno or errno.EIO, f"unable to unmount {where}",
                                  info.mountpoint) from None
            with top:
                try:
                    reused = (mount_id_of(top.fileno()) == ident.mount_id
                              and not ident.is_mount_of(top.fileno()))
                except OSError as exc:
                    raise mount_error(exc.errno or errno.EIO, f"unable to unmount {where}",
                                      info.mountpoint) from None
            if reused:
                return unmounted  # the id was reused by another mount: ours is gone
            # The table just read: the same snapshot tells where the mount is
            # and what is mounted under it (one read of mountinfo, not two).
            unmounted = unmount_at(parent.fileno(), name, where, ident.mount_id,
                                   infos) or unmounted
        # Still attached (the same id, and not reused)?  Then it moved before
        # umount2(), or something else was swapped in under the name in
        # between: look for it again.
    raise mount_error(errno.EAGAIN, f"unable to unmount {shown}", shown,
                      f"mount id {ident.mount_id} kept moving while pidsafe looked it up "
                      f"({MAX_MOVES} tries); left in place")


def _table(shown: str, fresh: bool = False) -> List[MountInfo]:
    """This process's mount table (see :func:`mountinfo` for ``fresh``), its
    read failure an unmount's error."""
    try:
        return mountinfo(fresh=fresh)
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, f"unable to unmount {shown}", shown,
                          "reading /proc/self/mountinfo failed") from None


def _is_it(path: str, ident: MountIdentity) -> bool:
    """Whether the mount on ``path`` (outside the rootfs: looked at only) is ``ident``."""
    try:
        with OwnedFd(os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC), "mount") as fd:
            return ident.is_mount_of(fd.fileno())
    except OSError:
        return True  # cannot tell: say it may be ours


__all__ = ["MountError", "UNMOUNT_BACKOFF", "open_beneath", "retrying", "unmount_at",
           "unmount_identified"]
