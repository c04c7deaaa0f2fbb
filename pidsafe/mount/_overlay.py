"""Filesystem mounts through fsopen(), and overlays with idmapped lowerdirs.

A filesystem is mounted detached: ``fsopen(type)``, one ``fsconfig()`` per
option, ``fsconfig(FSCONFIG_CMD_CREATE)``, ``fsmount()``.  The caller
attaches the returned mount fd.  When ``fsconfig()`` refuses something the
kernel usually explains why in the context's log (``read()`` on the fsopen
fd); that text goes into the error.

An overlay whose options carry ``uidmap=``/``gidmap=``: each lowerdir is
cloned on its own (``open_tree(OPEN_TREE_CLONE)``, just the mount holding
it), idmapped and made read-only, and handed to overlayfs as the fd of that
*detached* mount (``fsconfig(FSCONFIG_SET_FD, "lowerdir+", fd)``).  The
idmapped layers are never attached anywhere: no path, in any mount
namespace, leads to them, so no other user can read through them or keep
them busy, and there is nothing to unmount or remove afterwards.  (The
first version attached an idmapped mount of the layers' common parent on a
temporary directory: while it existed a mapped host uid could read
root-only files through it, and any user could make its unmount fail.)
overlayfs takes private clones of its layers when it is created, so the
clones' fds are closed once the overlay is made.

With ``x-pidsafe.idmap-upper`` the upperdir and workdir are idmapped too:
one detached, writable, idmapped clone of their common parent (overlayfs
wants both on one mount), whose two directories are handed over as fds
(``upperdir``, ``workdir`` with ``FSCONFIG_SET_FD``).  overlayfs does its
own work (the work directory, whiteouts, copy-up temporaries) with the
mounter's credentials, through that idmapping: a mounter the map does not
cover gets ``EOVERFLOW`` and a read-only overlay, so its map
(:func:`mounter_map`) also gives the host's root a container-side id.

That needs overlayfs to take layers as fds (``lowerdir+`` with
``FSCONFIG_SET_FD``) and to accept detached mounts as layers.  It is probed
once, with the real calls on an empty detached tmpfs; a kernel without it
gets :class:`UnsupportedError` (``"overlay_layer_fds"``), never the old
attached temporary mount.
"""

from __future__ import annotations

import errno
import os

from .. import _lite, _sys
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import UnsupportedError, mount_error
from ..userns import IDMap, IDRange
from ._hints import idmap_error

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple, Union

    #: A parameter's value: a string, ``None`` for a flag, or an fd object.
    Value = Union[str, None, OwnedFd]

#: The largest id a map may use ((uid_t)-2: -1 means "no id").
MAX_ID = 4294967294


_NEEDS_CAP = "needs CAP_SYS_ADMIN in the user namespace that owns this process's mount namespace"


def split_lowerdir(value: str) -> List[str]:
    """Split overlayfs' ``lowerdir=`` value: ``:``-separated, ``\\`` escapes."""
    out: List[str] = []
    cur: List[str] = []
    it = iter(value)
    for ch in it:
        if ch == "\\":
            cur.append(next(it, ""))
        elif ch == ":":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def join_lowerdir(dirs: Sequence[str]) -> str:
    """The inverse of :func:`split_lowerdir`."""
    return ":".join(d.replace("\\", "\\\\").replace(":", "\\:") for d in dirs)


def _fs_log(fd: int) -> str:
    """The messages the kernel left in an fs context's log ("e ...", "w ...")."""
    msgs = []
    for _ in range(16):
        try:
            data = os.read(fd, 4096)
        except OSError:
            break  # ENODATA: the log is empty (or unreadable: say less)
        if not data:
            break
        text = data.decode("utf-8", "replace").strip()
        msgs.append(text[2:] if text[1:2] == " " else text)
    return "; ".join(msgs)


def fs_mount(fstype: str, source: str, params: Sequence[Tuple[str, Value]],
             attr_flags: int, shown: str) -> OwnedFd:
    """A detached mount of a new ``fstype`` filesystem, configured by ``params``.

    Meant to run inside ``with critical:`` (as :func:`mount_all` calls it):
    the mount fd is wrapped, and the context fd closed, with no signal
    handler in between.

    Args:
        fstype: the filesystem type, as in ``/proc/filesystems``.
        source: its source (``""`` for none).
        params: ``(key, value)`` pairs for ``FSCONFIG_SET_STRING``,
            ``(flag, None)`` for ``FSCONFIG_SET_FLAG``, or ``(key, fd)``
            (an :class:`OwnedFd`, which stays open) for ``FSCONFIG_SET_FD``.
        attr_flags: ``MOUNT_ATTR_*`` for ``fsmount()`` (ro, nosuid, ...).
        shown: the target, for messages.

    Raises:
        MountError: a step failed; the kernel's log text is in the message.
        UnsupportedError: no ``fsopen()`` (``"mount_api"``).
    """
    try:
        ctx = OwnedFd(_sys.fsopen(fstype, _sys.FSOPEN_CLOEXEC), "fs context")
    except OSError as exc:
        err = exc.errno or errno.EIO
        if err == errno.ENOSYS:
            raise UnsupportedError("mount_api", "fsopen(2) failed with ENOSYS") from None
        hint = {errno.ENODEV: f"this kernel knows no filesystem type {fstype!r} "
                              "(see /proc/filesystems)",
                errno.EPERM: _NEEDS_CAP}.get(err, "")
        raise mount_error(err, f"unable to start a {fstype} filesystem for {shown}", shown,
                          hint) from None
    with ctx:
        step = f"unable to set source={source!r} of a {fstype} filesystem for {shown}"
        try:
            if source:
                _sys.fsconfig(ctx.fileno(), _sys.FSCONFIG_SET_STRING, "source", source)
            for key, value in params:
                if value is None:
                    step = f"unable to set option {key!r} of a {fstype} filesystem for {shown}"
                    _sys.fsconfig(ctx.fileno(), _sys.FSCONFIG_SET_FLAG, key)
                elif isinstance(value, OwnedFd):
                    step = f"unable to set option {key} (an fd) of a {fstype} filesystem for {shown}"
                    _sys.fsconfig(ctx.fileno(), _sys.FSCONFIG_SET_FD, key, None, value.fileno())
                else:
                    step = (f"unable to set option {key}={value!r} of a {fstype} filesystem "
                            f"for {shown}")
                    _sys.fsconfig(ctx.fileno(), _sys.FSCONFIG_SET_STRING, key, value)
            step = f"unable to create a {fstype} filesystem for {shown}"
            _sys.fsconfig(ctx.fileno(), _sys.FSCONFIG_CMD_CREATE)
            step = f"unable to mount a {fstype} filesystem for {shown}"
            mnt = _sys.fsmount(ctx.fileno(), _sys.FSMOUNT_CLOEXEC, attr_flags)
        except OSError as exc:
            err = exc.errno or errno.EIO
            hint = _fs_log(ctx.fileno()) or (_NEEDS_CAP if err == errno.EPERM else "")
            raise mount_error(err, step, shown, hint) from None
    return OwnedFd(mnt, f"{fstype} mount")


# --- overlays with idmapped lowerdirs -------------------------------------------

_probe_lock = _lite.Lock()
_probed: List[str] = []      # [] until probed, then [""] (supported) or [reason]


def _probe_layer_fds() -> str:
    """``""`` if overlayfs takes detached mounts as ``lowerdir+`` fds, else why not.

    The real calls, once per process: two empty tmpfs are made detached, and
    an overlay is created with them as its two layers (no upperdir: a
    read-only overlay needs two).  Nothing is attached; every fd is closed.
    """
    with _probe_lock:
        if not _probed:
            try:
                with critical, \
                        fs_mount("tmpfs", "pidsafe-probe", [], 0, "(probe)") as upper, \
                        fs_mount("tmpfs", "pidsafe-probe", [], 0, "(probe)") as lower:
                    fs_mount("overlay", "pidsafe-probe", [("lowerdir+", upper),
                                                          ("lowerdir+", lower)], 0,
                             "(probe)").close()
                _probed.append("")
            except OSError as exc:
                _probed.append(f"probe: {exc}")
        return _probed[0]


def _idmapped_layer(path: str, userns_fd: int, shown: str) -> OwnedFd:
    """A detached, read-only, idmapped clone of the mount holding ``path``."""
    try:
        tree = OwnedFd(_sys.open_tree(_sys.AT_FDCWD, path, _sys.OPEN_TREE_CLONE
                                      | _sys.OPEN_TREE_CLOEXEC), "overlay layer")
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, f"unable to open overlay layer {path} "
                          f"for {shown}", path) from None
    try:
        _sys.mount_setattr(tree.fileno(), "", _sys.AT_EMPTY_PATH,
                           attr_set=_sys.MOUNT_ATTR_IDMAP | _sys.MOUNT_ATTR_RDONLY,
                           propagation=_sys.MS_PRIVATE, userns_fd=userns_fd)
    except OSError as exc:
        tree.close()
        raise idmap_error(exc, path, userns_fd) from None
    except BaseException:
        tree.close()
        raise
    return tree


def mounter_map(m: IDMap) -> IDMap:
    """``m``, plus a container-side id for the host's root if ``m`` gives it none.

    The id is the first one that no range uses, from the end of the
    highest range on (``65536`` for ``0:100000:65536``); if that range ends
    at the last id, the first gap from 0 on (there is one: a map that leaves
    host 0 out cannot use every container id).
    """
    if any(r.host <= 0 <= r.host_end for r in m.ranges):
        return m
    free = max(r.container_end for r in m.ranges) + 1
    if free > MAX_ID:   # the last id is taken: the first gap from 0 on
        free = 0
        for r in sorted(m.ranges, key=lambda r: r.container):
            if free < r.container:
                break
            free = r.container_end + 1
        # A valid map that leaves host 0 out uses at most MAX_ID container ids.
        assert free <= MAX_ID
    return IDMap([*m.ranges, IDRange(free, 0, 1)])


def _idmapped_upper(upper: str, work: str, userns_fd: int, shown: str,
                    into: List[OwnedFd]) -> Tuple[OwnedFd, OwnedFd]:
    """fds of ``upper`` and ``work`` in one detached, writable idmapped clone of their
    common parent; the clone and both fds are appended to ``into``."""
    parent = os.path.commonpath([upper, work])
    try:
        with critical:
            tree = OwnedFd(_sys.open_tree(_sys.AT_FDCWD, parent, _sys.OPEN_TREE_CLONE
                                          | _sys.OPEN_TREE_CLOEXEC), "overlay upper layer")
            into.append(tree)
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, f"unable to open the parent {parent} of the "
                          f"overlay upperdir for {shown}", parent) from None
    try:
        _sys.mount_setattr(tree.fileno(), "", _sys.AT_EMPTY_PATH, attr_set=_sys.MOUNT_ATTR_IDMAP,
                           propagation=_sys.MS_PRIVATE, userns_fd=userns_fd)
    except OSError as exc:
        raise idmap_error(exc, parent, userns_fd) from None
    out = []
    for path in (upper, work):
        rel = os.path.relpath(path, parent)
        try:
            with critical:
                fd = OwnedFd(_sys.openat2(tree.fileno(), rel, os.O_PATH | os.O_DIRECTORY
                                          | os.O_CLOEXEC, resolve=_sys.RESOLVE_BENEATH
                                          | _sys.RESOLVE_NO_MAGICLINKS), "overlay upper layer")
                into.append(fd)
        except OSError as exc:
            raise mount_error(exc.errno or errno.EIO, f"unable to open overlay layer {path} "
                              f"for {shown}", path) from None
        out.append(fd)
    return out[0], out[1]


def overlay_mount(source: str, lowerdirs: Sequence[str],
                  params: Sequence[Tuple[str, Value]], attr_flags: int,
                  userns_fd: Optional[int], shown: str,
                  upper_userns_fd: Optional[int] = None) -> OwnedFd:
    """A detached overlay mount; its lowerdirs idmapped if ``userns_fd`` is given,
    and its upperdir and workdir too if ``upper_userns_fd`` is (the mounter's
    map, :func:`mounter_map`).

    Meant to run inside ``with critical:`` (as :func:`mount_all` calls it):
    every fd it opens is closed on every path.

    Raises:
        MountError: a step failed (opening or idmapping a layer names it).
        UnsupportedError: ``userns_fd`` is given and the kernel cannot take
            overlay layers as fds of detached mounts (``"overlay_layer_fds"``).
    """
    if userns_fd is None:
        return fs_mount("overlay", source or "overlay",
                        [("lowerdir", join_lowerdir(lowerdirs)), *params], attr_flags, shown)
    why = _probe_layer_fds()
    if why:
        raise UnsupportedError("overlay_layer_fds", f"fsconfig FSCONFIG_SET_FD, lowerdir+: {why}",
                               errno.EINVAL)
    layers: List[OwnedFd] = []
    upper: List[OwnedFd] = []
    try:
        for d in lowerdirs:  # topmost first, as in lowerdir=
            with critical:
                layers.append(_idmapped_layer(d, userns_fd, shown))
        rest: List[Tuple[str, Value]] = list(params)
        if upper_userns_fd is not None:
            dirs = dict((k, v) for k, v in params if k in ("upperdir", "workdir"))
            up, wk = dirs.get("upperdir"), dirs.get("workdir")
            if isinstance(up, str) and isinstance(wk, str):
                ufd, wfd = _idmapped_upper(up, wk, upper_userns_fd, shown, upper)
                rest = [(k, v) for k, v in params if k not in ("upperdir", "workdir")]
                rest += [("upperdir", ufd), ("workdir", wfd)]
        return fs_mount("overlay", source or "overlay",
                        [*(("lowerdir+", fd) for fd in layers), *rest], attr_flags, shown)
    finally:
        with critical:
            for fd in [*layers, *upper]:
                fd.close()
