"""``unmount_all``: undo what :func:`mount_all` made, by identity or by path."""

from __future__ import annotations

import errno
import os
from typing import Callable, Iterable, List, Optional, Union

from .. import _log
from .._features import features
from .._fd import OwnedFd
from ..errors import mount_error
from ._mount import note
from ._mounted import Mounted, close_all, close_last, open_rootfs
from ._mountinfo import MountInfo, mount_id_of_path, mountinfo
from ._resolve import resolve
from ._spec import Mount, Plan, plan
from ._unmount import retrying, unmount_at, unmount_identified

__all__ = ["unmount_all"]

StrPath = Union[str, "os.PathLike[str]"]


def unmount_all(mounts: Union[Mounted, Iterable[Mount]], rootfs: Optional[StrPath] = None
                ) -> None:
    """Unmount what :func:`mount_all` mounted, in reverse order.

    Two ways:

    * ``unmount_all(mounted)`` with what :func:`mount_all` returned (the
      safe way): each mount is found by its identity (mount id and root),
      wherever it is now; one that is gone already is skipped.  Nothing in
      the rootfs can make it miss a mount: if a mount cannot be found and
      unmounted, it raises.
    * ``unmount_all(mounts, rootfs)`` with the :class:`Mount` list, for a
      caller that kept nothing else: targets are resolved inside ``rootfs``
      as :func:`mount_all` resolved them (nothing is created); a target with
      nothing mounted on it is skipped, so calling this twice is harmless.
      If a target has nothing mounted on it (or is gone) while a mount of
      the same kind and name remains under ``rootfs`` (a directory on its
      path was renamed), it raises instead of reporting success.

    Submounts under a target are unmounted first.  Every mount is tried; the
    first failure is raised at the end, with the others in its notes.

    Raises:
        InvalidMountError: a mount is malformed (nothing was done).
        MountError: an unmount failed (``EBUSY`` after the retries), or a
            mount could not be found where it was made; it was left in place,
            nothing was deleted.
    """
    if isinstance(mounts, Mounted):
        root = os.fspath(rootfs if rootfs is not None else mounts.rootfs)
        _log.debug("mount", "unmounting under %s, by identity: %s", root,
                   ", ".join(rec.target for rec in reversed(mounts.records)))
        _unmount_records(mounts, root.rstrip("/") or "/")
        return
    if rootfs is None:
        raise TypeError("unmount_all(mounts, rootfs) needs the rootfs with a list of Mount")
    plans = [plan(i, m, True) for i, m in enumerate(list(mounts))]
    features().require("mount_api", "openat2")
    root = os.fspath(rootfs).rstrip("/") or "/"
    _log.debug("mount", "unmounting under %s, by path: %s", root,
               ", ".join(m.mount.target for m in reversed(plans)))
    errors: List[BaseException] = []
    owned: List[OwnedFd] = []
    try:
        rfd, real_root = open_rootfs(root, owned)
        unfound: List[Plan] = []
        for p in reversed(plans):
            try:
                if not retrying(lambda: _unmount_by_path(rfd.fileno(), real_root, p)):
                    unfound.append(p)
            except OSError as exc:
                errors.append(exc)
        errors.extend(_left_behind(unfound, real_root))
        close_last(owned)
    finally:
        if owned:  # only when something raised before close_last()
            close_all(owned)
    _raise_first(errors)


def _unmount_by_path(rootfd: int, root: str, p: Plan) -> bool:
    try:
        target = resolve(rootfd, p.target, root, None)
    except (FileNotFoundError, NotADirectoryError):
        return False  # nothing can be mounted there
    try:
        target.fd.close()  # it would keep the mount busy
        return unmount_at(target.parent.fileno(), target.name, target.shown)
    finally:
        target.close()


def _like(p: Plan, infos: List[MountInfo]) -> Callable[[MountInfo], bool]:
    """A test for "this mount could be the one ``p`` made" (no identity known)."""
    if p.kind != "bind":
        source = p.mount.source or ("overlay" if p.kind == "overlay" else "")
        return lambda m: m.fstype == p.mount.type and (not source or m.source == source)
    # A bind's mount shows its source's filesystem and the source's path in it.
    try:
        real = os.path.realpath(p.mount.source)
        sid = mount_id_of_path(real)
    except OSError:
        return lambda m: True  # the source is gone: cannot tell, count every mount
    src = next((m for m in infos if m.mount_id == sid), None)
    if src is None:
        return lambda m: True
    want = os.path.normpath(os.path.join(src.root, os.path.relpath(real, src.mountpoint)))
    return lambda m: m.dev == src.dev and m.root == want


def _left_behind(unfound: List[Plan], root: str) -> List[BaseException]:
    """Errors for targets found unmounted while a mount like theirs remains."""
    if not unfound:
        return []
    prefix = root.rstrip("/") + "/"
    try:
        infos = mountinfo()
    except OSError as exc:
        shown = prefix + "/".join(unfound[0].target)
        return [mount_error(exc.errno or errno.EIO, f"unable to unmount {shown}", shown,
                            "reading /proc/self/mountinfo failed")]
    left = [m for m in infos if m.mountpoint.startswith(prefix)]
    errors: List[BaseException] = []
    for p in unfound:
        shown = prefix + "/".join(p.target)
        like = [m for m in left if _like(p, infos)(m)]
        if like:
            errors.append(mount_error(
                errno.ENOENT, f"unable to unmount {shown}", shown,
                f"nothing is mounted there any more, but a {like[0].fstype} mount like it "
                f"remains at {like[0].mountpoint} (was a directory on the path renamed?); "
                "left in place: pass what mount_all() returned to unmount_all() to unmount "
                "by identity"))
    return errors


def _unmount_records(mounted: Mounted, root: str) -> None:
    errors: List[BaseException] = []
    owned: List[OwnedFd] = []
    try:
        rfd, real_root = open_rootfs(root, owned)
        for rec in reversed(mounted.records):
            try:
                retrying(lambda: unmount_identified(rfd.fileno(), real_root, rec.identity,
                                                    real_root.rstrip("/") + rec.target))
            except OSError as exc:
                errors.append(exc)
        close_last(owned)
    finally:
        if owned:  # only when something raised before close_last()
            close_all(owned)
    _raise_first(errors)


def _raise_first(errors: List[BaseException]) -> None:
    if errors:
        first = errors[0]
        for other in errors[1:]:
            note(first, f"also: {other}")
        raise first
