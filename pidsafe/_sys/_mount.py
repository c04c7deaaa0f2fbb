"""The new mount API (Linux 5.2+), mount_setattr (5.12), openat2 (5.6), umount2."""

from __future__ import annotations

import errno
import os

from ._core import _retry, ffi, lib

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Optional, Tuple

    from ._core import StrPath

OPEN_TREE_CLONE: int = lib.PIDSAFE_OPEN_TREE_CLONE
OPEN_TREE_CLOEXEC: int = lib.PIDSAFE_OPEN_TREE_CLOEXEC
AT_EMPTY_PATH: int = lib.PIDSAFE_AT_EMPTY_PATH
AT_RECURSIVE: int = lib.PIDSAFE_AT_RECURSIVE
MOVE_MOUNT_F_EMPTY_PATH: int = lib.PIDSAFE_MOVE_MOUNT_F_EMPTY_PATH
MOVE_MOUNT_T_EMPTY_PATH: int = lib.PIDSAFE_MOVE_MOUNT_T_EMPTY_PATH
MOUNT_ATTR_RDONLY: int = lib.PIDSAFE_MOUNT_ATTR_RDONLY
MOUNT_ATTR_IDMAP: int = lib.PIDSAFE_MOUNT_ATTR_IDMAP
MS_PRIVATE: int = lib.PIDSAFE_MS_PRIVATE
RESOLVE_NO_XDEV: int = lib.PIDSAFE_RESOLVE_NO_XDEV
RESOLVE_NO_MAGICLINKS: int = lib.PIDSAFE_RESOLVE_NO_MAGICLINKS
RESOLVE_NO_SYMLINKS: int = lib.PIDSAFE_RESOLVE_NO_SYMLINKS
RESOLVE_BENEATH: int = lib.PIDSAFE_RESOLVE_BENEATH
RESOLVE_IN_ROOT: int = lib.PIDSAFE_RESOLVE_IN_ROOT

def open_tree(dfd: int, path: StrPath, flags: int) -> int:
    """open_tree(2) (Linux 5.2)."""
    return _retry("open_tree", lib.pidsafe_open_tree, dfd, os.fsencode(path), flags,
                  filename=path)


def move_mount(from_dfd: int, from_path: StrPath, to_dfd: int, to_path: StrPath,
               flags: int, *, filename: Optional[Any] = None) -> None:
    """move_mount(2) (Linux 5.2)."""
    _retry("move_mount", lib.pidsafe_move_mount, from_dfd, os.fsencode(from_path),
           to_dfd, os.fsencode(to_path), flags, filename=filename)


def mount_setattr(dfd: int, path: StrPath, flags: int, *, attr_set: int = 0,
                  attr_clr: int = 0, propagation: int = 0, userns_fd: int = 0,
                  filename: Optional[Any] = None) -> None:
    """mount_setattr(2) (Linux 5.12)."""
    attr = ffi.new("struct pidsafe_mount_attr *")
    attr.attr_set = attr_set
    attr.attr_clr = attr_clr
    attr.propagation = propagation
    attr.userns_fd = userns_fd
    _retry("mount_setattr", lib.pidsafe_mount_setattr, dfd, os.fsencode(path), flags,
           attr, ffi.sizeof(attr[0]), filename=filename)


def openat2(dfd: int, path: StrPath, flags: int, *, mode: int = 0, resolve: int = 0,
            filename: Optional[Any] = None) -> int:
    """openat2(2) (Linux 5.6); ``flags`` should include ``O_CLOEXEC``."""
    how = ffi.new("struct pidsafe_open_how *")
    how.flags = flags
    how.mode = mode
    how.resolve = resolve
    return _retry("openat2", lib.pidsafe_openat2, dfd, os.fsencode(path), how,
                  ffi.sizeof(how[0]), filename=path if filename is None else filename)


MOUNT_ATTR_NOSUID: int = lib.PIDSAFE_MOUNT_ATTR_NOSUID
MOUNT_ATTR_NODEV: int = lib.PIDSAFE_MOUNT_ATTR_NODEV
MOUNT_ATTR_NOEXEC: int = lib.PIDSAFE_MOUNT_ATTR_NOEXEC
MOUNT_ATTR__ATIME: int = lib.PIDSAFE_MOUNT_ATTR__ATIME
MOUNT_ATTR_RELATIME: int = lib.PIDSAFE_MOUNT_ATTR_RELATIME
MOUNT_ATTR_NOATIME: int = lib.PIDSAFE_MOUNT_ATTR_NOATIME
MOUNT_ATTR_STRICTATIME: int = lib.PIDSAFE_MOUNT_ATTR_STRICTATIME
MOUNT_ATTR_NODIRATIME: int = lib.PIDSAFE_MOUNT_ATTR_NODIRATIME
MOUNT_ATTR_NOSYMFOLLOW: int = lib.PIDSAFE_MOUNT_ATTR_NOSYMFOLLOW
MS_UNBINDABLE: int = lib.PIDSAFE_MS_UNBINDABLE
MS_SLAVE: int = lib.PIDSAFE_MS_SLAVE
MS_SHARED: int = lib.PIDSAFE_MS_SHARED
MS_REC: int = lib.PIDSAFE_MS_REC
FSOPEN_CLOEXEC: int = lib.PIDSAFE_FSOPEN_CLOEXEC
FSMOUNT_CLOEXEC: int = lib.PIDSAFE_FSMOUNT_CLOEXEC
FSCONFIG_SET_FLAG: int = lib.PIDSAFE_FSCONFIG_SET_FLAG
FSCONFIG_SET_STRING: int = lib.PIDSAFE_FSCONFIG_SET_STRING
FSCONFIG_SET_FD: int = lib.PIDSAFE_FSCONFIG_SET_FD
FSCONFIG_CMD_CREATE: int = lib.PIDSAFE_FSCONFIG_CMD_CREATE
UMOUNT_NOFOLLOW: int = lib.PIDSAFE_UMOUNT_NOFOLLOW
BIND_STAGE_OPEN_TREE: int = lib.PIDSAFE_BIND_STAGE_OPEN_TREE
BIND_STAGE_MOUNT_SETATTR: int = lib.PIDSAFE_BIND_STAGE_MOUNT_SETATTR
BIND_STAGE_MOVE_MOUNT: int = lib.PIDSAFE_BIND_STAGE_MOVE_MOUNT
AT_FDCWD = -100


def fsopen(fsname: str, flags: int) -> int:
    """fsopen(2) (Linux 5.2): a filesystem context fd for ``fsname``."""
    return _retry("fsopen", lib.pidsafe_fsopen, fsname.encode(), flags, filename=fsname)


def fsconfig(fd: int, cmd: int, key: Optional[str] = None,
             value: Optional[StrPath] = None, aux: int = 0, *,
             step: str = "fsconfig", filename: Optional[Any] = None) -> None:
    """fsconfig(2) (Linux 5.2): set a parameter or run a command."""
    key_c = ffi.new("char[]", key.encode()) if key is not None else ffi.NULL
    value_c = ffi.new("char[]", os.fsencode(value)) if value is not None else ffi.NULL
    _retry(step, lib.pidsafe_fsconfig, fd, cmd, key_c, value_c, aux, filename=filename)


def fsmount(fd: int, flags: int, attr_flags: int) -> int:
    """fsmount(2) (Linux 5.2): a detached mount of a created context."""
    return _retry("fsmount", lib.pidsafe_fsmount, fd, flags, attr_flags)


def umount2(target: StrPath, flags: int, *, step: str = "umount2",
            filename: Optional[Any] = None) -> None:
    """umount2(2).

    Raises:
        OSError: ``EBUSY`` while the mount is in use, ``EINVAL`` when
            ``target`` is not a mount point.
    """
    _retry(step, lib.pidsafe_umount2, os.fsencode(target), flags,
           filename=target if filename is None else filename)


def mnt_id_unique(dfd: int, path: StrPath = "", flags: int = AT_EMPTY_PATH) -> int:
    """statx(2) ``STATX_MNT_ID_UNIQUE`` (Linux 6.8): a mount id never reused.

    Raises:
        OSError: ``EOPNOTSUPP`` (or ``EINVAL``) when the kernel lacks it.
    """
    return _statx_mnt_id(lib.pidsafe_mnt_id_unique, dfd, path, flags)


def mnt_id(dfd: int, path: StrPath = "", flags: int = AT_EMPTY_PATH) -> int:
    """statx(2) ``STATX_MNT_ID`` (Linux 5.8): the id of the mount ``path`` (or
    ``dfd`` itself) is on, as ``/proc/self/mountinfo`` numbers it.

    Raises:
        OSError: ``EOPNOTSUPP`` (or ``EINVAL``) when the kernel lacks it.
    """
    return _statx_mnt_id(lib.pidsafe_mnt_id, dfd, path, flags)


def _statx_mnt_id(fn: Any, dfd: int, path: StrPath, flags: int) -> int:
    out = ffi.new("uint64_t *")
    _retry("statx", fn, dfd, os.fsencode(path), flags, out, filename=path or None)
    return int(out[0])


def idmapped_bind(source: StrPath, target: StrPath, clone_flags: int, setattr_flags: int,
                  attr_set: int, propagation: int, userns_fd: int,
                  move_flags: int) -> Tuple[int, int]:
    """open_tree -> mount_setattr -> move_mount in one C call (csrc/native/mount.c).

    Returns ``(0, 0)``, or ``(stage, errno)`` for the step that failed
    (``BIND_STAGE_*``); the tree fd is closed either way.
    """
    stage = 0

    def call(*args: Any) -> int:
        nonlocal stage
        stage = lib.pidsafe_idmapped_bind(*args)
        return -1 if stage else 0

    try:
        _retry("idmapped bind", call, AT_FDCWD, os.fsencode(source), clone_flags,
               setattr_flags, attr_set, propagation, userns_fd, AT_FDCWD,
               os.fsencode(target), move_flags)
    except OSError as exc:
        return stage, exc.errno or errno.EIO
    return 0, 0
