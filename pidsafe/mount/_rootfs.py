"""Mount lists into a container rootfs: ``mount_all``, all or nothing.

Validation is :mod:`._spec`'s, target resolution inside the rootfs
:mod:`._resolve`'s, the records :mod:`._mounted`'s, and undoing
:mod:`._unmount_all`'s (re-exported here); this module makes the mounts
and rolls them back on failure.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .. import _log, _sys
from .._features import features
from .._fd import OwnedFd
from .._sigsafe import critical, undoing
from ..errors import Error, mount_error
from ..userns import IDMap
from ._mount import (HasFileno, attach, clone_idmapped, note, open_tree_error, set_attrs,
                     userns_fileno)
from ._mounted import MountRecord, Mounted, close_all, open_rootfs
from ._mountinfo import MountIdentity
from ._overlay import fs_mount, mounter_map, overlay_mount
from ._resolve import resolve
from ._spec import Mount, Plan, plan
from ._unmount import retrying, unmount_identified
from ._unmount_all import unmount_all

__all__ = ["Mount", "MountRecord", "Mounted", "mount_all", "unmount_all"]

StrPath = Union[str, "os.PathLike[str]"]


# --- mount_all ---------------------------------------------------------------------

def _mount_one(p: Plan, rootfd: int, rootfs: str, userns_fd: Optional[int],
               done: List[MountRecord], upper_userns_fd: Optional[int] = None) -> None:
    """Make one mount; record it in ``done`` the moment it is attached.

    Runs inside ``with critical:`` (see :func:`mount_all`): every fd it
    opens is closed on every path, and ``done`` is exact.
    """
    m = p.mount
    shown = rootfs + "/" + "/".join(p.target)
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
                             userns_fd if p.maps is not None else None, shown,
                             upper_userns_fd if p.idmap_upper else None)
    else:
        tree = fs_mount(m.type, m.source, p.params, p.attr_set, shown)
    with tree:
        try:
            create = "dir" if stat.S_ISDIR(os.fstat(tree.fileno()).st_mode) else "file"
            ident = MountIdentity.of(tree.fileno())  # move_mount() keeps the mount, its ids
        except OSError as exc:
            raise mount_error(exc.errno or errno.EIO, f"unable to identify the new mount for "
                              f"{shown}", shown) from None
        target = resolve(rootfd, p.target, rootfs, create)
        try:
            attach(tree.fileno(), target.fd.fileno(), target.shown)
            done.append(MountRecord(p.index, m, target.shown[len(rootfs.rstrip("/")):],
                                    ident.mount_id, ident.unique_id, ident.root))
        finally:
            target.close()
        if p.propagation is not None:
            kind, recursive = p.propagation
            set_attrs(tree.fileno(), target.shown, 0, 0, recursive, kind, what="propagation")


def mount_all(mounts: Iterable[Mount], rootfs: StrPath, *,
              userns: Optional[HasFileno] = None,
              namespaces: Optional[Mapping[Tuple[IDMap, IDMap], HasFileno]] = None
              ) -> Mounted:
    """Mount each of ``mounts`` inside ``rootfs``, in order; all or nothing.

    Every mount is validated first: bad input raises
    :class:`InvalidMountError` before anything is mounted.  Each target is
    resolved inside ``rootfs`` by fd (symlinks cannot lead out of it) and
    created if missing.  On any error, the mounts already made are unmounted
    in reverse order, each found by its identity (plain ``umount2``,
    ``EBUSY`` retried with backoff), and the error is raised; a mount that
    cannot be unmounted is reported in the error's notes and left in place
    (no data is ever deleted).

    Exception safety: the call is one critical section (``pidsafe._sigsafe``)
    that undoes its own failure: an exception from a signal handler (Ctrl-C,
    a ``SIGALRM`` timeout) is raised at its end, after the rollback above has
    undone everything made, and another signal meanwhile cannot cut the
    rollback short.

    Args:
        mounts: :class:`Mount` specs, in mounting order.
        rootfs: the container's root directory (a host path).
        userns: the container's user namespace (an fd object), used by
            ``idmap``/``ridmap`` mounts that give no ``uidmap=``/``gidmap=``.
            Mounts with ``uidmap=``/``gidmap=`` get a namespace of their own
            from :func:`pidsafe.get_userns_fd` (one per distinct pair of maps,
            closed before returning), unless ``namespaces`` has one.
        namespaces: user namespaces the caller has already, by their
            ``(uidmap, gidmap)``: a mount whose ``uidmap=``/``gidmap=`` are
            a key uses that one (it stays open).  A container passes its
            own, and its rootfs costs no namespace of its own.

    Returns:
        The mounts made, with their identities: pass it to
        :func:`unmount_all` to unmount exactly these, wherever they are now.

    Raises:
        InvalidMountError: a mount is malformed (nothing was done).
        MountError: a step failed (the errno's own OSError subclass too);
            everything already mounted was unmounted.
        UnsupportedError: the kernel lacks the mount API, ``openat2``,
            idmapped mounts, or (for an overlay with ``uidmap=``) overlayfs
            layers given as fds of detached mounts.
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

    done: List[MountRecord] = []
    owned: List[OwnedFd] = []
    made: Dict[Tuple[IDMap, IDMap], OwnedFd] = {}

    def undo(exc: BaseException) -> None:
        close_all([*owned, *made.values()])
        if done:
            _rollback(exc, done, root)
            # Logged once undone, inside the section: an exception a handler
            # raises here leaves nothing mounted behind.
            _log.debug("mount", "mount_all under %s failed (%r): unmounted %s", root,
                       exc, [rec.target for rec in done])
            done.clear()

    # One section for the whole call, whose failure is undone inside it
    # (pidsafe._sigsafe.undoing): an error, or a signal handler raising at
    # its end (after the last mount, before the caller has the result),
    # unmounts everything made, and a second signal cannot cut that short.
    # (get_userns_fd() blocks on a helper child, in a section of its own.)
    try:
        with undoing(undo):
            return _mount_plans(plans, root, userns_fd, done, owned, made, namespaces)
    except BaseException as exc:   # as __exit__ returned (see _sigsafe.undoing)
        if done:
            with critical:
                undo(exc)
        raise


def _mount_plans(plans: List[Plan], root: str, userns_fd: Optional[int],
                 done: List[MountRecord], owned: List[OwnedFd],
                 made: Dict[Tuple[IDMap, IDMap], OwnedFd],
                 given: Optional[Mapping[Tuple[IDMap, IDMap], HasFileno]]) -> Mounted:
    """mount_all()'s work, inside its section: each mount recorded in ``done``."""
    rfd, real_root = open_rootfs(root, owned)
    for p in plans:
        ufd = userns_fd
        upper_fd = None
        if p.maps is not None:
            ufd = _userns_for(p.maps, made, real_root, p, given)
            if p.idmap_upper:
                upper_fd = _userns_for((mounter_map(p.maps[0]), mounter_map(p.maps[1])),
                                       made, real_root, p, given)
        try:
            _mount_one(p, rfd.fileno(), real_root, ufd, done, upper_fd)
        except BaseException as exc:
            note(exc, f"while making mount {p.index} ({p.mount.type} "
                      f"{p.mount.source!r} on {p.mount.target!r})")
            raise
    for fd in [*owned, *made.values()]:
        fd.close()
    _log.debug("mount", "mounted under %s: %s", real_root, ", ".join(
        f"{rec.mount.type or 'bind'} on {rec.target}" for rec in done))
    return Mounted(real_root, tuple(done))


def _userns_for(maps: Tuple[IDMap, IDMap], namespaces: Dict[Tuple[IDMap, IDMap], OwnedFd],
                root: str, p: Plan,
                given: Optional[Mapping[Tuple[IDMap, IDMap], HasFileno]] = None) -> int:
    """A user namespace with ``maps``: the caller's (``given``), or one made
    once per distinct pair and kept in ``namespaces``.

    Blocking (a helper child), in mount_all's section: the helper's life is
    one section of its own anyway (get_userns_fd).
    """
    if given is not None and maps in given:
        return userns_fileno(given[maps])
    from ..userns import get_userns_fd  # late: only for uidmap=/gidmap=

    ns = namespaces.get(maps)
    if ns is None:
        try:
            ns = namespaces[maps] = get_userns_fd(*maps)
        except OSError as exc:
            if isinstance(exc, Error):
                raise
            shown = root.rstrip("/") + "/" + "/".join(p.target)
            raise mount_error(exc.errno or errno.EIO, "unable to create a user "
                              f"namespace for the maps of {shown}", shown, str(exc)) from None
    return ns.fileno()


def _rollback(exc: BaseException, done: List[MountRecord], root: str) -> None:
    """Unmount ``done`` in reverse; what cannot be undone goes into ``exc``'s notes.

    With a rootfs fd of its own: the one :func:`mount_all` used may be
    closed already.
    """
    owned: List[OwnedFd] = []
    try:
        rfd, real_root = open_rootfs(root, owned)
        for rec in reversed(done):
            try:
                retrying(lambda: unmount_identified(rfd.fileno(), real_root, rec.identity,
                                                    real_root.rstrip("/") + rec.target))
            except BaseException as err:  # an unmount that failed, or another signal
                note(exc, f"rollback: {err}")
    except BaseException as err:
        note(exc, f"rollback: {err}; left mounted: "
                  + ", ".join(root.rstrip("/") + rec.target for rec in done))
    finally:
        close_all(owned)
