"""Mount errors a user can act on: the step, the errno, and why.

Each ``*_error()`` turns the ``OSError`` of one step into a
:class:`~pidsafe.errors.MountError` (or :class:`UnsupportedError` for
``ENOSYS``) whose hint names what the errno alone does not: the filesystem
that lacks idmapped-mount support, the capability that is missing, a
directory mounted on a file.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import MountError, UnsupportedError, mount_error
from ..errors import note as note   # re-exported: the mount layer's name for it
from ._mountinfo import describe_fs, is_idmapped

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, TypeVar, Union

    StrPath = Union[str, "os.PathLike[str]"]

    _F = TypeVar("_F", bound=Callable[..., OSError])


def _ns_link(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


_NEEDS_MOUNT_CAP = ("needs CAP_SYS_ADMIN in the user namespace that owns this "
                    "process's mount namespace")


def _privilege(err: int) -> str:
    """``"CAP_SYS_ADMIN"`` when ``err`` is EPERM and the caller lacks it, else ``""``:
    the error is then also a :class:`pidsafe.PrivilegeError`."""
    if err != errno.EPERM:
        return ""
    from .. import _sys

    try:
        return "" if _sys.capget().has("SYS_ADMIN") else "CAP_SYS_ADMIN"
    except OSError:
        return ""


def _unsupported(feature: str, call: str) -> Callable[[_F], _F]:
    """A ``*_error(exc, ...)`` that answers an ``ENOSYS`` of ``call`` with
    :class:`UnsupportedError` naming ``feature``, before any hint."""
    def wrap(error: _F) -> _F:
        def hinted(exc: OSError, *args: Any, **kwargs: Any) -> OSError:
            if exc.errno == errno.ENOSYS:
                return UnsupportedError(feature, f"{call} failed with ENOSYS")
            return error(exc, *args, **kwargs)
        # functools.wraps, without functools (and the collections it imports)
        for name in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(hinted, name, getattr(error, name))
        hinted.__dict__.update(error.__dict__)
        hinted.__wrapped__ = error  # type: ignore[attr-defined]
        return hinted  # type: ignore[return-value]
    return wrap


@_unsupported("mount_api", "open_tree(2)")
def open_tree_error(exc: OSError, source: StrPath) -> OSError:
    """What to raise when ``open_tree(source, OPEN_TREE_CLONE)`` failed."""
    err = exc.errno or errno.EIO
    hint = _NEEDS_MOUNT_CAP if err == errno.EPERM else ""
    if err == errno.EINVAL:
        hint = "the source is unbindable (a mount with MS_UNBINDABLE), or not in this mount namespace"
    return mount_error(err, f"unable to clone mount tree of {os.fspath(source)}", source, hint,
                       privilege=_privilege(err))


@_unsupported("mount_setattr_idmap", "mount_setattr(2)")
def idmap_error(exc: OSError, source: StrPath, userns_fd: int) -> OSError:
    """What to raise when ``mount_setattr(MOUNT_ATTR_IDMAP)`` failed on ``source``."""
    err = exc.errno or errno.EIO
    src = os.fspath(source)
    hint = ""
    link = _ns_link(userns_fd)
    if err == errno.EINVAL:
        if not link.startswith("user:"):
            hint = f"userns fd {userns_fd} is not a user namespace but {link}"
        else:
            hint = (f"the filesystem of {src}, {describe_fs(source)}, does not support "
                    "idmapped mounts, or the user namespace has no uid/gid map")
    elif err == errno.EPERM:
        try:
            own = os.stat("/proc/self/ns/user")
            st = os.fstat(userns_fd)
            same = (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)
        except OSError:
            same = False
        if same:
            hint = ("the user namespace given is this process's own; an idmapped mount needs "
                    "another one (the initial user namespace can never be used)")
        elif is_idmapped(source):
            hint = f"{src} is already an idmapped mount, and a mount's idmap cannot change"
        else:
            hint = (f"needs CAP_SYS_ADMIN in the user namespace given ({link}) and in the "
                    f"user namespace that owns the filesystem of {src}")
            return mount_error(err, f"unable to idmap mount tree of {src}", source, hint,
                               privilege=_privilege(err))
    return mount_error(err, f"unable to idmap mount tree of {src}", source, hint)


@_unsupported("mount_setattr_idmap", "mount_setattr(2)")
def setattr_error(exc: OSError, what: str, path: StrPath) -> OSError:
    """What to raise when a plain ``mount_setattr()`` (ro, nosuid, ...) failed."""
    err = exc.errno or errno.EIO
    hint = ""
    if err == errno.EPERM:
        hint = ("a locked mount attribute (a mount inherited from a less privileged "
                "mount namespace keeps ro/nosuid/nodev/noexec), or " + _NEEDS_MOUNT_CAP)
    return mount_error(err, f"unable to set {what} on {os.fspath(path)}", path, hint,
                       privilege=_privilege(err))


def _kinds_differ(source: Union[int, StrPath], target: Union[int, StrPath]) -> bool:
    try:
        a = os.fstat(source).st_mode if isinstance(source, int) else os.stat(source).st_mode
        b = os.fstat(target).st_mode if isinstance(target, int) else os.stat(target).st_mode
    except OSError:
        return False  # only for a message: say less
    return stat.S_ISDIR(a) != stat.S_ISDIR(b)


@_unsupported("mount_api", "move_mount(2)")
def attach_error(exc: OSError, target: StrPath, tree_fd: int = -1,
                 target_fd: Optional[int] = None, *,
                 source: Optional[StrPath] = None) -> OSError:
    """What to raise when ``move_mount()`` onto ``target`` failed.

    ``tree_fd`` (or else the ``source`` path) and ``target_fd`` (or else
    the ``target`` path) tell a directory-on-file mismatch from other EINVALs.
    """
    err = exc.errno or errno.EIO
    hint = ""
    if err == errno.EPERM:
        hint = _NEEDS_MOUNT_CAP
    elif err == errno.EINVAL and (tree_fd >= 0 or source is not None) and _kinds_differ(
            tree_fd if tree_fd >= 0 else source,  # type: ignore[arg-type]
            target if target_fd is None else target_fd):
        hint = "a directory cannot be mounted on a file, nor a file on a directory"
    elif err == errno.EINVAL:
        hint = "the target is not in this mount namespace, or the tree was already attached"
    return mount_error(err, f"unable to attach mount tree to {os.fspath(target)}", target, hint,
                       privilege=_privilege(err))
