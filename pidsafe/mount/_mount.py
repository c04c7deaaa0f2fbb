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

import errno
import os
import stat
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Protocol, Tuple, Type, Union, cast

from .. import _sys
from ..errors import UnsupportedError
from .._fd import OwnedFd
from ..errors import MountError, mount_error

StrPath = Union[str, "os.PathLike[str]"]
AT_FDCWD = -100

_CLONE = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC
_CLONE_RECURSIVE = _CLONE | _sys.AT_RECURSIVE
_AT = _sys.AT_EMPTY_PATH
_AT_RECURSIVE = _sys.AT_EMPTY_PATH | _sys.AT_RECURSIVE
_IDMAP = _sys.MOUNT_ATTR_IDMAP
_IDMAP_RO = _sys.MOUNT_ATTR_IDMAP | _sys.MOUNT_ATTR_RDONLY

#: Delays between the tries of an unmount that keeps failing with EBUSY.
UNMOUNT_BACKOFF: Tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2)


class HasFileno(Protocol):
    """Anything with a ``fileno()``: an :class:`OwnedFd`, a file object."""

    def fileno(self) -> int: ...


def note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)``, also on Python 3.10 (which only stores it)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(text)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]


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


# --- what the kernel can tell us, for error messages and bookkeeping ----------

@dataclass(frozen=True)
class MountInfo:
    """One line of ``/proc/self/mountinfo``."""

    mount_id: int
    parent_id: int
    root: str
    mountpoint: str
    options: Tuple[str, ...]
    fstype: str
    source: str


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1:i + 4].isdigit() and i + 4 <= len(field):
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mountinfo() -> List[MountInfo]:
    """Parse ``/proc/self/mountinfo`` (proc(5)), in the kernel's order."""
    out = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            a, b = left.split(), right.split()
            out.append(MountInfo(int(a[0]), int(a[1]), _unescape(a[3]), _unescape(a[4]),
                                 tuple(a[5].split(",")), b[0] if b else "",
                                 _unescape(b[1]) if len(b) > 1 else ""))
    return out


def mount_id_of(fd: int) -> int:
    """The id of the mount an fd lives on (``mnt_id`` in fdinfo, Linux 3.15)."""
    with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("mnt_id:"):
                return int(line.split()[1])
    raise OSError(errno.ENOTSUP, f"/proc/self/fdinfo/{fd} has no mnt_id")


def describe_fs(path: StrPath) -> str:
    """``"ext4 (/dev/vda, mounted at /)"`` for the mount holding ``path``.

    Only for error messages: never raises, says ``"unknown"`` instead.
    """
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            mid = mount_id_of(fd)
        finally:
            os.close(fd)
        for m in mountinfo():
            if m.mount_id == mid:
                return f"{m.fstype} ({m.source}, mounted at {m.mountpoint})"
    except (OSError, ValueError):
        pass  # an error message must not fail; say less instead
    return "unknown"


def _is_idmapped(path: StrPath) -> bool:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        try:
            mid = mount_id_of(fd)
        finally:
            os.close(fd)
        return any(m.mount_id == mid and "idmapped" in m.options for m in mountinfo())
    except (OSError, ValueError):
        return False


def _ns_link(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


# --- errors users can act on ---------------------------------------------------

_NEEDS_MOUNT_CAP = ("needs CAP_SYS_ADMIN in the user namespace that owns this "
                    "process's mount namespace")


def _unsupported(exc: OSError, feature: str, call: str) -> Optional[UnsupportedError]:
    if exc.errno == errno.ENOSYS:
        return UnsupportedError(feature, f"{call} failed with ENOSYS")
    return None


def open_tree_error(exc: OSError, source: StrPath) -> OSError:
    """What to raise when ``open_tree(source, OPEN_TREE_CLONE)`` failed."""
    err = exc.errno or errno.EIO
    unsupported = _unsupported(exc, "mount_api", "open_tree(2)")
    if unsupported is not None:
        return unsupported
    hint = _NEEDS_MOUNT_CAP if err == errno.EPERM else ""
    if err == errno.EINVAL:
        hint = "the source is unbindable (a mount with MS_UNBINDABLE), or not in this mount namespace"
    return mount_error(err, f"unable to clone mount tree of {os.fspath(source)}", source, hint)


def idmap_error(exc: OSError, source: StrPath, userns_fd: int) -> OSError:
    """What to raise when ``mount_setattr(MOUNT_ATTR_IDMAP)`` failed on ``source``."""
    err = exc.errno or errno.EIO
    unsupported = _unsupported(exc, "mount_setattr_idmap", "mount_setattr(2)")
    if unsupported is not None:
        return unsupported
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
        elif _is_idmapped(source):
            hint = f"{src} is already an idmapped mount, and a mount's idmap cannot change"
        else:
            hint = (f"needs CAP_SYS_ADMIN in the user namespace given ({link}) and in the "
                    f"user namespace that owns the filesystem of {src}")
    return mount_error(err, f"unable to idmap mount tree of {src}", source, hint)


def setattr_error(exc: OSError, what: str, path: StrPath) -> OSError:
    """What to raise when a plain ``mount_setattr()`` (ro, nosuid, ...) failed."""
    err = exc.errno or errno.EIO
    unsupported = _unsupported(exc, "mount_setattr_idmap", "mount_setattr(2)")
    if unsupported is not None:
        return unsupported
    hint = ""
    if err == errno.EPERM:
        hint = ("a locked mount attribute (a mount inherited from a less privileged "
                "mount namespace keeps ro/nosuid/nodev/noexec), or " + _NEEDS_MOUNT_CAP)
    return mount_error(err, f"unable to set {what} on {os.fspath(path)}", path, hint)


def _kinds_differ(source: Union[int, StrPath], target: Union[int, StrPath]) -> bool:
    try:
        a = os.fstat(source).st_mode if isinstance(source, int) else os.stat(source).st_mode
        b = os.fstat(target).st_mode if isinstance(target, int) else os.stat(target).st_mode
    except OSError:
        return False  # only for a message: say less
    return stat.S_ISDIR(a) != stat.S_ISDIR(b)


def attach_error(exc: OSError, target: StrPath, tree_fd: int = -1,
                 target_fd: Optional[int] = None, *,
                 source: Optional[StrPath] = None) -> OSError:
    """What to raise when ``move_mount()`` onto ``target`` failed.

    ``tree_fd`` (or else the ``source`` path) and ``target_fd`` (or else
    the ``target`` path) tell a directory-on-file mismatch from other EINVALs.
    """
    err = exc.errno or errno.EIO
    unsupported = _unsupported(exc, "mount_api", "move_mount(2)")
    if unsupported is not None:
        return unsupported
    hint = ""
    if err == errno.EPERM:
        hint = _NEEDS_MOUNT_CAP
    elif err == errno.EINVAL and (tree_fd >= 0 or source is not None) and _kinds_differ(
            tree_fd if tree_fd >= 0 else cast(StrPath, source),
            target if target_fd is None else target_fd):
        hint = "a directory cannot be mounted on a file, nor a file on a directory"
    elif err == errno.EINVAL:
        hint = "the target is not in this mount namespace, or the tree was already attached"
    return mount_error(err, f"unable to attach mount tree to {os.fspath(target)}", target, hint)


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
    if recursive:
        stage, err = _sys.idmapped_bind(source, target, _CLONE_RECURSIVE, _AT_RECURSIVE,
                                        _IDMAP_RO if readonly else _IDMAP, _sys.MS_PRIVATE,
                                        ufd, _sys.MOVE_MOUNT_F_EMPTY_PATH)
    else:
        stage, err = _sys.idmapped_bind(source, target, _CLONE, _AT,
                                        _IDMAP_RO if readonly else _IDMAP, _sys.MS_PRIVATE,
                                        ufd, _sys.MOVE_MOUNT_F_EMPTY_PATH)
    if stage:
        exc = OSError(err, os.strerror(err))
        if stage == _sys.BIND_STAGE_OPEN_TREE:
            raise open_tree_error(exc, source)
        if stage == _sys.BIND_STAGE_MOUNT_SETATTR:
            raise idmap_error(exc, source, ufd)
        raise attach_error(exc, target, source=source)


# --- attaching onto fds, and unmounting ----------------------------------------

def attach(tree_fd: int, target_fd: int, target: StrPath) -> None:
    """``move_mount()`` a detached mount onto an ``O_PATH`` fd of its target."""
    try:
        _sys.move_mount(tree_fd, "", target_fd, "",
                        _sys.MOVE_MOUNT_F_EMPTY_PATH | _sys.MOVE_MOUNT_T_EMPTY_PATH)
    except OSError as exc:
        raise attach_error(exc, target, tree_fd, target_fd) from None


def _open_beneath(dirfd: int, path: str) -> int:
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
        fd = _open_beneath(parent_fd, name)
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
            sub_fd = _open_beneath(parent_fd, sub_dir) if sub_dir else os.dup(parent_fd)
            try:
                _umount_retrying(sub_fd, sub_name, os.path.join(shown, os.path.relpath(
                    child.mountpoint, top.mountpoint)))
            finally:
                os.close(sub_fd)
    _umount_retrying(parent_fd, name, shown)
    return True
