"""Filesystem mounts through fsopen(), and overlays with idmapped lowerdirs.

A filesystem is mounted detached: ``fsopen(type)``, one ``fsconfig()`` per
option, ``fsconfig(FSCONFIG_CMD_CREATE)``, ``fsmount()``.  The caller
attaches the returned mount fd.  When ``fsconfig()`` refuses something the
kernel usually explains why in the context's log (``read()`` on the fsopen
fd); that text goes into the error.

An overlay whose options carry ``uidmap=``/``gidmap=`` (containerd's
``doPrepareIDMappedOverlay``): the lowerdirs' common parent is cloned
(with its submounts only if a lowerdir lives on one), idmapped and made
read-only, attached on a fresh private directory
(``mkdtemp``, mode 0700), the overlay is created with its lowerdirs pointing
inside that mount, and the temporary mount is unmounted and its (empty)
directory removed before the overlay is returned.  The overlay does not need
it any more: overlayfs takes private clones of its layers' mounts when it is
created, and pidsafe closes the fs context (which holds the layer paths)
before unmounting.  Cleanup is ``umount2`` + ``rmdir`` only, so no layer data
can be deleted; if the unmount keeps failing (EBUSY), the mount and its
directory are left where they are and the error says so.
"""

from __future__ import annotations

import errno
import os
import tempfile
from typing import List, Optional, Sequence, Tuple

from .. import _sys
from ..errors import UnsupportedError
from .._fd import OwnedFd
from ._mount import attach, clone_idmapped, mount_id_of, note, unmount_at
from ..errors import mount_error

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


def fs_mount(fstype: str, source: str, params: Sequence[Tuple[str, Optional[str]]],
             attr_flags: int, shown: str) -> OwnedFd:
    """A detached mount of a new ``fstype`` filesystem, configured by ``params``.

    Args:
        fstype: the filesystem type, as in ``/proc/filesystems``.
        source: its source (``""`` for none).
        params: ``(key, value)`` pairs for ``FSCONFIG_SET_STRING``, or
            ``(flag, None)`` for ``FSCONFIG_SET_FLAG``.
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


def _mount_id(path: str, shown: str) -> int:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, f"unable to open overlay layer {path} "
                          f"for {shown}", path) from None
    try:
        return mount_id_of(fd)
    finally:
        os.close(fd)


def _drop_temp(tmp: str, parent: OwnedFd, mounted: bool) -> None:
    """Unmount the temporary idmapped mount and remove its empty directory."""
    if mounted:
        try:
            unmount_at(parent.fileno(), os.path.basename(tmp), tmp)
        except OSError as exc:
            raise mount_error(exc.errno or errno.EIO, "unable to unmount the temporary "
                              f"idmapped mount of the lowerdirs at {tmp}", tmp,
                              f"{exc.strerror}; it and its directory were left in place, "
                              "no layer data was deleted") from None
    try:
        os.rmdir(tmp)  # an empty directory only: never recursive
    except OSError as exc:
        raise mount_error(exc.errno or errno.EIO, "unable to remove the temporary directory "
                          f"{tmp}", tmp, "left in place, nothing deleted") from None


def overlay_mount(source: str, lowerdirs: Sequence[str],
                  params: Sequence[Tuple[str, Optional[str]]], attr_flags: int,
                  userns_fd: Optional[int], shown: str) -> OwnedFd:
    """A detached overlay mount; its lowerdirs idmapped if ``userns_fd`` is given.

    Raises:
        MountError: a step failed, or the temporary mount could not be
            cleaned up (then it is left in place and the message says where).
    """
    if userns_fd is None:
        return fs_mount("overlay", source or "overlay",
                        [("lowerdir", join_lowerdir(lowerdirs)), *params], attr_flags, shown)
    # Lexical prefixes of real paths: a symlink in a layer path cannot make
    # a lowerdir point outside the idmapped tree.
    real = [os.path.realpath(d) for d in lowerdirs]
    common = os.path.commonpath(real)
    # Clone just the mount holding the common parent, unless a lowerdir lives
    # on a submount of it: a recursive clone would also idmap unrelated
    # submounts, and fail on any that is already idmapped or cannot be.
    recursive = len({_mount_id(d, shown) for d in [common, *real]}) > 1
    base = tempfile.gettempdir()
    mounted = False
    with OwnedFd(os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                 "temp parent") as parent:
        tmp = tempfile.mkdtemp(prefix="pidsafe-idmap-", dir=base)  # mode 0700
        try:
            with clone_idmapped(common, userns_fd, recursive=recursive, readonly=True) as tree, \
                    OwnedFd(os.open(tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC),
                            "temp dir") as tfd:
                attach(tree.fileno(), tfd.fileno(), tmp)
                mounted = True
            lowers = [os.path.normpath(os.path.join(tmp, os.path.relpath(d, common)))
                      for d in real]
            overlay = fs_mount("overlay", source or "overlay",
                               [("lowerdir", join_lowerdir(lowers)), *params], attr_flags, shown)
        except BaseException as exc:
            try:
                _drop_temp(tmp, parent, mounted)
            except OSError as err:
                note(exc, f"cleanup: {err}")
            raise
        try:
            _drop_temp(tmp, parent, mounted)
        except BaseException:
            overlay.close()  # a detached mount: closing its fd dissolves it
            raise
    return overlay
