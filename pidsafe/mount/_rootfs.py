"""Mount lists into a container rootfs: ``mount_all``, ``unmount_all``.

Validation is :mod:`._spec`'s, target resolution inside the rootfs
:mod:`._resolve`'s; this module makes the mounts, all or nothing, and
undoes them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple, Union

from .. import _sys
from .._features import features
from .._fd import OwnedFd
from ..userns._idmap import IDMap
from ._mount import (HasFileno, attach, clone_idmapped, mount_id_of, note, open_tree_error,
                     set_attrs, unmount_at, userns_fileno)
from ._overlay import fs_mount, overlay_mount
from ._resolve import resolve
from ._spec import Mount, Plan, plan

__all__ = ["Mount", "mount_all", "unmount_all"]

StrPath = Union[str, "os.PathLike[str]"]


# --- mount_all, unmount_all ------------------------------------------------------

@dataclass
class _Done:
    parent: OwnedFd
    name: str
    mount_id: int
    shown: str


def _mount_one(p: Plan, rootfd: int, rootfs: str, userns_fd: Optional[int],
               done: List[_Done]) -> None:
    m = p.mount
    if p.kind == "bind":
        if p.idmap:
            assert userns_fd is not None
            tree = clone_idmapped(m.source, userns_fd, recursive=p.recursive, readonly=False,
                                  idmap_recursive=p.idmap_recursive, attr_set=p.attr_set,
                                  attr_clr=p.attr_clr)
        else:
            flags = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC
            try:
                tree = OwnedFd(_sys.open_tree(-100, m.source, flags | (
                    _sys.AT_RECURSIVE if p.recursive else 0)), "mount tree")
            except OSError as exc:
                raise open_tree_error(exc, m.source) from None
            try:
                set_attrs(tree.fileno(), m.source, p.attr_set, p.attr_clr, p.recursive,
                          _sys.MS_PRIVATE)
            except BaseException:
                tree.close()
                raise
    elif p.kind == "overlay":
        tree = overlay_mount(m.source, p.lowerdirs, p.params, p.attr_set,
                             userns_fd if p.maps is not None else None,
                             rootfs + "/" + "/".join(p.target))
    else:
        tree = fs_mount(m.type, m.source, p.params, p.attr_set, rootfs + "/" + "/".join(p.target))
    with tree:
        create = "dir" if stat.S_ISDIR(os.fstat(tree.fileno()).st_mode) else "file"
        mount_id = mount_id_of(tree.fileno())  # move_mount() keeps the mount, and its id
        target = resolve(rootfd, p.target, rootfs, create)
        try:
            attach(tree.fileno(), target.fd.fileno(), target.shown)
        except BaseException:
            target.close()
            raise
        target.fd.close()
        done.append(_Done(target.parent, target.name, mount_id, target.shown))
        if p.propagation is not None:
            kind, recursive = p.propagation
            set_attrs(tree.fileno(), target.shown, 0, 0, recursive, kind, what="propagation")


def mount_all(mounts: Iterable[Mount], rootfs: StrPath, *,
              userns: Optional[HasFileno] = None) -> None:
    """Mount each of ``mounts`` inside ``rootfs``, in order; all or nothing.

    Every mount is validated first: bad input raises
    :class:`InvalidMountError` before anything is mounted.  Each target is
    resolved inside ``rootfs`` by fd (symlinks cannot lead out of it) and
    created if missing.  On any error, the mounts already made are unmounted
    in reverse order (plain ``umount2``, ``EBUSY`` retried with backoff) and
    the error is raised; a mount that cannot be unmounted is reported in the
    error's notes and left in place (no data is ever deleted).

    Args:
        mounts: :class:`Mount` specs, in mounting order.
        rootfs: the container's root directory (a host path).
        userns: the container's user namespace (an fd object), used by
            ``idmap``/``ridmap`` mounts that give no ``uidmap=``/``gidmap=``.
            Mounts with ``uidmap=``/``gidmap=`` get a namespace of their own
            from :func:`pidsafe.get_userns_fd` (one per distinct pair of maps,
            closed before returning).

    Raises:
        InvalidMountError: a mount is malformed (nothing was done).
        MountError: a step failed (the errno's own OSError subclass too);
            everything already mounted was unmounted.
        UnsupportedError: the kernel lacks the mount API, ``openat2`` or
            idmapped mounts.
    """
    mlist = list(mounts)
    for i, m in enumerate(mlist):
        if not isinstance(m, Mount):
            raise TypeError(f"mount {i} is a {type(m).__name__}, not a pidsafe.Mount")
    userns_fd = userns_fileno(userns) if userns is not None else None
    plans = [plan(i, m, userns_fd is not None) for i, m in enumerate(mlist)]
    needed = ["mount_api", "openat2"]
    if any(p.idmap or p.maps for p in plans):
        needed.append("mount_setattr_idmap")
    features().require(*needed)
    root = os.fspath(rootfs).rstrip("/") or "/"
    from ..userns._userns import get_userns_fd  # late: only for uidmap=/gidmap=

    done: List[_Done] = []
    namespaces: Dict[Tuple[IDMap, IDMap], OwnedFd] = {}
    try:
        with OwnedFd(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), "rootfs") as rfd:
            for p in plans:
                ufd = userns_fd
                if p.maps is not None:
                    ns = namespaces.get(p.maps)
                    if ns is None:
                        ns = namespaces[p.maps] = get_userns_fd(*p.maps)
                    ufd = ns.fileno()
                try:
                    _mount_one(p, rfd.fileno(), root, ufd, done)
                except BaseException as exc:
                    note(exc, f"while making mount {p.index} ({p.mount.type} "
                               f"{p.mount.source!r} on {p.mount.target!r})")
                    raise
    except BaseException as exc:
        for d in reversed(done):
            try:
                unmount_at(d.parent.fileno(), d.name, d.shown, expect_id=d.mount_id)
            except OSError as err:
                note(exc, f"rollback: {err}")
            finally:
                d.parent.close()
        raise
    finally:
        for d in done:
            d.parent.close()
        for ns in namespaces.values():
            ns.close()


def unmount_all(mounts: Iterable[Mount], rootfs: StrPath) -> None:
    """Unmount what :func:`mount_all` mounted, in reverse order.

    Targets are resolved inside ``rootfs`` as :func:`mount_all` resolved
    them (nothing is created); a target with nothing mounted on it is
    skipped, so calling this twice is harmless.  Submounts under a target
    are unmounted first.  Every target is tried; the first failure is
    raised at the end, with the others in its notes.

    Raises:
        InvalidMountError: a mount is malformed (nothing was done).
        MountError: an unmount failed (``EBUSY`` after the retries); the
            mount was left in place, nothing was deleted.
    """
    mlist = list(mounts)
    plans = [plan(i, m, True) for i, m in enumerate(mlist)]
    features().require("mount_api", "openat2")
    root = os.fspath(rootfs).rstrip("/") or "/"
    first: Optional[BaseException] = None
    with OwnedFd(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), "rootfs") as rfd:
        for p in reversed(plans):
            try:
                target = resolve(rfd.fileno(), p.target, root, None)
            except (FileNotFoundError, NotADirectoryError):
                continue  # nothing can be mounted there
            except OSError as exc:
                if first is None:
                    first = exc
                else:
                    note(first, f"also: {exc}")
                continue
            try:
                target.fd.close()  # it would keep the mount busy
                unmount_at(target.parent.fileno(), target.name, target.shown)
            except OSError as exc:
                if first is None:
                    first = exc
                else:
                    note(first, f"also: {exc}")
            finally:
                target.close()
    if first is not None:
        raise first
