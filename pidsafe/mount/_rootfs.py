"""Mount lists into a container rootfs: ``mount_all``, ``unmount_all``.

Validation is :mod:`._spec`'s, target resolution inside the rootfs
:mod:`._resolve`'s; this module makes the mounts, all or nothing, and
undoes them.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from .. import _sys
from .._features import features
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import Error, mount_error
from ..userns._idmap import IDMap
from ._mount import (HasFileno, attach, clone_idmapped, mount_id_of, note, open_tree_error,
                     set_attrs, userns_fileno)
from ._mountinfo import MountIdentity, MountInfo, mountinfo
from ._overlay import fs_mount, overlay_mount
from ._resolve import resolve
from ._spec import Mount, Plan, plan
from ._unmount import retrying, unmount_at, unmount_identified

__all__ = ["Mount", "MountRecord", "Mounted", "mount_all", "unmount_all"]

StrPath = Union[str, "os.PathLike[str]"]


# --- what mount_all made: identities for unmount_all ------------------------------

@dataclass(frozen=True)
class MountRecord:
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


@dataclass(frozen=True)
class Mounted:
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


def _open_rootfs(root: str, owned: List[OwnedFd]) -> Tuple[OwnedFd, str]:
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


def _close_all(owned: Iterable[OwnedFd]) -> None:
    with critical:
        for fd in owned:
            fd.close()


def _close_last(owned: List[OwnedFd]) -> None:
    """Close and forget ``owned``: the last step of a successful call.

    A ``finally: _close_all(owned)`` alone would leave a window on the
    success path: a signal handler raising on entry to ``_close_all`` (before
    its section diverts anything) would leak the fds.  So the success path
    closes in its own section, and the ``finally`` only cleans up (``if
    owned:``, which checks for no signal) after an exception.
    """
    with critical:
        for fd in owned:
            fd.close()
        owned.clear()


# --- mount_all ---------------------------------------------------------------------

def _mount_one(p: Plan, rootfd: int, rootfs: str, userns_fd: Optional[int],
               done: List[MountRecord]) -> None:
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
                             userns_fd if p.maps is not None else None, shown)
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
              userns: Optional[HasFileno] = None) -> Mounted:
    """Mount each of ``mounts`` inside ``rootfs``, in order; all or nothing.

    Every mount is validated first: bad input raises
    :class:`InvalidMountError` before anything is mounted.  Each target is
    resolved inside ``rootfs`` by fd (symlinks cannot lead out of it) and
    created if missing.  On any error, the mounts already made are unmounted
    in reverse order, each found by its identity (plain ``umount2``,
    ``EBUSY`` retried with backoff), and the error is raised; a mount that
    cannot be unmounted is reported in the error's notes and left in place
    (no data is ever deleted).

    Exception safety: each mount is made, and recorded, inside one critical
    section (``pidsafe._sigsafe``), so an exception from a signal handler
    (Ctrl-C, a ``SIGALRM`` timeout) lands between two mounts, and the
    rollback above undoes everything made so far.

    Args:
        mounts: :class:`Mount` specs, in mounting order.
        rootfs: the container's root directory (a host path).
        userns: the container's user namespace (an fd object), used by
            ``idmap``/``ridmap`` mounts that give no ``uidmap=``/``gidmap=``.
            Mounts with ``uidmap=``/``gidmap=`` get a namespace of their own
            from :func:`pidsafe.get_userns_fd` (one per distinct pair of maps,
            closed before returning).

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
    from ..userns._userns import get_userns_fd  # late: only for uidmap=/gidmap=

    done: List[MountRecord] = []
    owned: List[OwnedFd] = []
    namespaces: Dict[Tuple[IDMap, IDMap], OwnedFd] = {}
    finished = False
    try:
        try:
            rfd, real_root = _open_rootfs(root, owned)
            for p in plans:
                ufd = userns_fd
                if p.maps is not None:
                    ns = namespaces.get(p.maps)
                    if ns is None:
                        # Blocking (a helper child): outside any critical
                        # section; the store follows the return directly.
                        try:
                            ns = namespaces[p.maps] = get_userns_fd(*p.maps)
                        except OSError as exc:
                            if isinstance(exc, Error):
                                raise
                            shown = real_root.rstrip("/") + "/" + "/".join(p.target)
                            raise mount_error(exc.errno or errno.EIO, "unable to create a user "
                                              f"namespace for the maps of {shown}", shown,
                                              str(exc)) from None
                    ufd = ns.fileno()
                with critical:
                    try:
                        _mount_one(p, rfd.fileno(), real_root, ufd, done)
                    except BaseException as exc:
                        note(exc, f"while making mount {p.index} ({p.mount.type} "
                                  f"{p.mount.source!r} on {p.mount.target!r})")
                        raise
            # The last section: a signal that arrives in it lands at its end,
            # still inside this try (rollback); after it nothing in this
            # function checks for signals before the caller has the result.
            with critical:
                for fd in [*owned, *namespaces.values()]:
                    fd.close()
                result = Mounted(real_root, tuple(done))
                finished = True
        except BaseException as exc:
            if done:
                _rollback(exc, done, root)
            raise
    finally:
        if not finished:
            _close_all([*owned, *namespaces.values()])
    return result


def _rollback(exc: BaseException, done: List[MountRecord], root: str) -> None:
    """Unmount ``done`` in reverse; what cannot be undone goes into ``exc``'s notes.

    With a rootfs fd of its own: the one :func:`mount_all` used may be
    closed already.
    """
    owned: List[OwnedFd] = []
    try:
        rfd, real_root = _open_rootfs(root, owned)
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
        _close_all(owned)


# --- unmount_all -------------------------------------------------------------------

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
        _unmount_records(mounts, root.rstrip("/") or "/")
        return
    if rootfs is None:
        raise TypeError("unmount_all(mounts, rootfs) needs the rootfs with a list of Mount")
    plans = [plan(i, m, True) for i, m in enumerate(list(mounts))]
    features().require("mount_api", "openat2")
    root = os.fspath(rootfs).rstrip("/") or "/"
    errors: List[BaseException] = []
    owned: List[OwnedFd] = []
    try:
        rfd, real_root = _open_rootfs(root, owned)
        unfound: List[Plan] = []
        for p in reversed(plans):
            try:
                if not retrying(lambda: _unmount_by_path(rfd.fileno(), real_root, p)):
                    unfound.append(p)
            except OSError as exc:
                errors.append(exc)
        errors.extend(_left_behind(unfound, real_root))
        _close_last(owned)
    finally:
        if owned:  # only when something raised before _close_last()
            _close_all(owned)
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
        fd = os.open(real, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return lambda m: True  # the source is gone: cannot tell, count every mount
    try:
        sid = mount_id_of(fd)
    finally:
        os.close(fd)
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
    infos = mountinfo()
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
        rfd, real_root = _open_rootfs(root, owned)
        for rec in reversed(mounted.records):
            try:
                retrying(lambda: unmount_identified(rfd.fileno(), real_root, rec.identity,
                                                    real_root.rstrip("/") + rec.target))
            except OSError as exc:
                errors.append(exc)
        _close_last(owned)
    finally:
        if owned:  # only when something raised before _close_last()
            _close_all(owned)
    _raise_first(errors)


def _raise_first(errors: List[BaseException]) -> None:
    if errors:
        first = errors[0]
        for other in errors[1:]:
            note(first, f"also: {other}")
        raise first
