"""Idmapped bind mounts, and the mount plumbing the rest of pidsafe shares.

Every mount pidsafe makes is built detached and attached last:

* a bind is ``open_tree(OPEN_TREE_CLONE)`` (a private copy of the source
  tree, in no mount namespace yet), then ``mount_setattr()`` (idmap,
  read-only, ...), then ``move_mount()`` onto the target;
* a filesystem is ``fsopen()`` + ``fsconfig()`` + ``fsmount()``, then the
  same ``move_mount()``.

A step that fails before the attach leaves nothing behind: closing the fd of
a detached mount dissolves it.  Unmounting is a plain ``umount2()`` (never
``MNT_DETACH``, never anything that deletes files), retried on ``EBUSY`` a
few times and then reported.

Errors are :class:`MountError`: an ``OSError`` of the errno's own subclass
(``PermissionError`` for ``EPERM`` ...), carrying the failing ``step``
("unable to attach mount tree to /x") and the ``path``, with a hint the user
can act on where the errno alone says too little.
"""

from __future__ import annotations

import os
from typing import List, Optional, Protocol, Union

from .. import _sys
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import MountError, mount_error
from ._hints import attach_error, idmap_error, note, open_tree_error, setattr_error
from ._mountinfo import MountInfo, describe_fs, mount_id_of, mountinfo
from ._unmount import UNMOUNT_BACKOFF, retrying, unmount_at

__all__ = ["HasFileno", "MountError", "MountInfo", "UNMOUNT_BACKOFF", "attach", "attach_error",
           "clone_idmapped", "describe_fs", "idmap_error", "idmapped_bind", "mount_error",
           "mount_id_of", "mountinfo", "note", "open_tree_error", "set_attrs", "setattr_error",
           "unmount_at", "userns_fileno"]

StrPath = Union[str, "os.PathLike[str]"]
AT_FDCWD = -100

_CLONE = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC
_CLONE_RECURSIVE = _CLONE | _sys.AT_RECURSIVE
_AT = _sys.AT_EMPTY_PATH
_AT_RECURSIVE = _sys.AT_EMPTY_PATH | _sys.AT_RECURSIVE
_IDMAP = _sys.MOUNT_ATTR_IDMAP
_IDMAP_RO = _sys.MOUNT_ATTR_IDMAP | _sys.MOUNT_ATTR_RDONLY


class HasFileno(Protocol):
    """Anything with a ``fileno()``: an :class:`OwnedFd`, a file object."""

    def fileno(self) -> int: ...


def userns_fileno(userns: HasFileno) -> int:
    """The fd number of a user-namespace fd object, checked to be usable."""
    fileno = getattr(userns, "fileno", None)
    if fileno is None or isinstance(userns, int):
        raise TypeError("userns must be an object with fileno() (e.g. the OwnedFd of "
                        f"pidsafe.get_userns_fd()), not {type(userns).__name__}")
    fd = fileno()
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(f"userns.fileno() gave {fd!r}")
    return fd


# --- idmapped bind mounts -------------------------------------------------------

def clone_idmapped(source: StrPath, userns_fd: int, *, recursive: bool, readonly: bool,
                   idmap_recursive: Optional[bool] = None, attr_set: int = 0,
                   attr_clr: int = 0) -> OwnedFd:
    """A detached, idmapped, private copy of the mount tree at ``source``.

    ``idmap_recursive`` (default: ``recursive``) says whether submounts of a
    recursive clone are idmapped too (OCI's ``ridmap`` vs ``idmap``).
    """
    flags = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC
    if recursive:
        flags |= _sys.AT_RECURSIVE
    try:
        tree = OwnedFd(_sys.open_tree(AT_FDCWD, source, flags), "mount tree")
    except OSError as exc:
        raise open_tree_error(exc, source) from None
    try:
        if readonly:
            attr_set |= _sys.MOUNT_ATTR_RDONLY
        if idmap_recursive is None:
            idmap_recursive = recursive
        propagation = _sys.MS_PRIVATE
        if idmap_recursive != recursive:
            # The other attributes follow the clone; only the idmap differs.
            set_attrs(tree.fileno(), source, attr_set, attr_clr, recursive, propagation)
            attr_set = attr_clr = propagation = 0
        at = _sys.AT_EMPTY_PATH | (_sys.AT_RECURSIVE if idmap_recursive else 0)
        try:
            _sys.mount_setattr(tree.fileno(), "", at,
                               attr_set=attr_set | _sys.MOUNT_ATTR_IDMAP, attr_clr=attr_clr,
                               propagation=propagation, userns_fd=userns_fd)
        except OSError as exc:
            raise idmap_error(exc, source, userns_fd) from None
    except BaseException:
        tree.close()
        raise
    return tree


def set_attrs(fd: int, path: StrPath, attr_set: int, attr_clr: int, recursive: bool,
              propagation: int = 0, what: str = "mount attributes") -> None:
    """``mount_setattr()`` on the mount an fd refers to."""
    at = _sys.AT_EMPTY_PATH | (_sys.AT_RECURSIVE if recursive else 0)
    try:
        _sys.mount_setattr(fd, "", at, attr_set=attr_set, attr_clr=attr_clr,
                           propagation=propagation)
    except OSError as exc:
        raise setattr_error(exc, what, path) from None


def idmapped_bind(source: StrPath, target: StrPath, userns: HasFileno, *,
                  recursive: bool = True, readonly: bool = False) -> None:
    """Bind ``source`` onto ``target`` through the id mapping of ``userns``.

    Files owned by uid ``u`` on disk appear owned by ``userns``'s mapping
    of ``u`` (with the map ``0:100000:65536``, uid 0 reads as 100000), and
    files created through the mount by host uid 100000 land on disk as 0.

    The steps are containerd's ``IDMapMount``:
    ``open_tree(OPEN_TREE_CLONE|OPEN_TREE_CLOEXEC[|AT_RECURSIVE])`` ->
    ``mount_setattr(MOUNT_ATTR_IDMAP[|MOUNT_ATTR_RDONLY], MS_PRIVATE)`` ->
    ``move_mount()``.  Nothing is left behind when a step fails.  Undo with
    ``umount``.

    Args:
        source: the directory (or file) to bind; a host path.
        target: where to attach it; a host path that must exist.
        userns: a user-namespace fd object (``pidsafe.get_userns_fd()``);
            only its ``fileno()`` is used, it stays open.
        recursive: clone and idmap the submounts of ``source`` too.
        readonly: make the new mount read-only (writes give ``EROFS``).

    Raises:
        UnsupportedError: the kernel lacks the mount API (``"mount_api"``)
            or idmapped mounts (``"mount_setattr_idmap"``).
        MountError: a step failed (also the errno's own ``OSError``
            subclass, e.g. ``PermissionError``).  ``EINVAL`` from the idmap
            step names the filesystem that lacks idmapped-mount support;
            ``EPERM`` names the capability that is missing.
        TypeError: ``userns`` has no ``fileno()``.
    """
    ufd = userns_fileno(userns)
    # The hot path of this module (benchmarks/bench_mount.py): the three
    # syscalls in one C call, which closes the tree fd on every path (a
    # detached tree dissolves when closed: a failed step leaves nothing
    # behind).  With three separate _sys calls a bind + umount measured
    # 1.24-1.33x its C reference; with one, 1.07-1.16x.  A kernel without
    # the mount API or idmapped mounts fails with ENOSYS, which the
    # *_error() helpers turn into UnsupportedError naming the feature.
    #
    # Exception safety: an exception from a signal handler can escape from
    # inside the call, after the C code attached the mount.  A critical
    # section would cost more than the bind itself (it diverts every
    # signal's handler: ~8x the C call here), so the hot path only takes
    # the target's identity (one lstat) and the rare exception path looks
    # whether a mount of the source now covers the target.
    try:
        before: Optional[os.stat_result] = os.stat(target, follow_symlinks=False)
    except OSError:
        before = None
    stage = -1
    try:
        if recursive:
            stage, err = _sys.idmapped_bind(source, target, _CLONE_RECURSIVE, _AT_RECURSIVE,
                                            _IDMAP_RO if readonly else _IDMAP, _sys.MS_PRIVATE,
                                            ufd, _sys.MOVE_MOUNT_F_EMPTY_PATH)
        else:
            stage, err = _sys.idmapped_bind(source, target, _CLONE, _AT,
                                            _IDMAP_RO if readonly else _IDMAP, _sys.MS_PRIVATE,
                                            ufd, _sys.MOVE_MOUNT_F_EMPTY_PATH)
    except BaseException as exc:
        if stage == -1:  # the bind may have happened: undo it before raising
            # A cleanup: one critical section, so that another signal (Ctrl-C
            # held down) cannot cut it short; its retries wait < 0.4 s.
            with critical:
                _undo_interrupted_bind(source, target, before, exc)
        raise
    if stage:
        error = OSError(err, os.strerror(err))
        if stage == _sys.BIND_STAGE_OPEN_TREE:
            raise open_tree_error(error, source)
        if stage == _sys.BIND_STAGE_MOUNT_SETATTR:
            raise idmap_error(error, source, ufd)
        raise attach_error(error, target, source=source)


def _undo_interrupted_bind(source: StrPath, target: StrPath,
                           before: Optional[os.stat_result], exc: BaseException) -> None:
    """Unmount what an interrupted :func:`idmapped_bind` attached, if it did.

    It did if the target's identity changed to the source's root.  If the
    target showed the source's root already (the same bind made twice), the
    two cannot be told apart: the mount is left and ``exc`` says so.
    """
    path = os.fspath(target)
    owned: List[OwnedFd] = []
    try:
        with critical:
            try:
                after = os.stat(target, follow_symlinks=False)
                src = os.stat(source)
            except OSError:
                return  # the target or source is gone: nothing we could have attached
            if (after.st_dev, after.st_ino) != (src.st_dev, src.st_ino):
                return  # not attached
            if before is not None and (before.st_dev, before.st_ino) == (src.st_dev, src.st_ino):
                note(exc, f"idmapped_bind was interrupted; {path} showed {os.fspath(source)} "
                          "before, so it may carry the new mount too")
                return
            owned.append(OwnedFd(os.open(os.path.dirname(path) or ".", os.O_PATH
                                         | os.O_DIRECTORY | os.O_CLOEXEC), "mount parent"))
        retrying(lambda: unmount_at(owned[0].fileno(), os.path.basename(path), path))
    except OSError as err:
        note(exc, f"idmapped_bind was interrupted and left {path} mounted: {err}")
    finally:
        with critical:
            for fd in owned:
                fd.close()


# --- attaching onto fds ------------------------------------------------------------

def attach(tree_fd: int, target_fd: int, target: StrPath) -> None:
    """``move_mount()`` a detached mount onto an ``O_PATH`` fd of its target."""
    try:
        _sys.move_mount(tree_fd, "", target_fd, "",
                        _sys.MOVE_MOUNT_F_EMPTY_PATH | _sys.MOVE_MOUNT_T_EMPTY_PATH)
    except OSError as exc:
        raise attach_error(exc, target, tree_fd, target_fd) from None
