"""Mount targets, resolved inside a rootfs by fd.

Targets are resolved *inside* the rootfs, by fd.  An existing target takes
two lookups: its directory with ``openat2(rootfs_fd, dir,
RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)``, then its name there with
``O_NOFOLLOW``.  Otherwise the path is walked one component at a time from an
``O_PATH`` fd of the rootfs (``openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS)``
and ``O_NOFOLLOW`` per component): a symlink met on the way is read and its
text walked in turn, absolute ones from the rootfs, exactly as
``RESOLVE_IN_ROOT`` does, and ``..`` stops at the rootfs.  Either way a link
``rootfs/etc/evil -> /tmp/hostdir`` leads to ``rootfs/tmp/hostdir``, never
to the host's ``/tmp/hostdir``.  Missing components are created on the way
(``mkdirat``, or an empty file for a file bind) relative to the fd of their
parent, and the mount is attached with ``move_mount(MOVE_MOUNT_T_EMPTY_PATH)``
onto the final ``O_PATH`` fd: no path string is resolved again after the
check.  The parent's fd is kept to unmount on rollback, through
``/proc/self/fd/N/name`` (an fd on the mount itself would keep it busy).

Mount points created in the rootfs stay after a rollback, as with runc and
containerd: deleting anything in a rootfs is never pidsafe's call.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import List, Optional, Sequence

from .. import _sys
from .._fd import OwnedFd
from .._value import Record
from ..errors import MountError, mount_error
from ._spec import components

#: Symlinks followed per target before giving up with ELOOP (the kernel's 40).
MAX_SYMLINKS = 40

_BENEATH = _sys.RESOLVE_BENEATH | _sys.RESOLVE_NO_MAGICLINKS


class Target(Record, frozen=False):
    """A resolved target: the fd of its directory, its name there, and itself."""

    parent: OwnedFd
    name: str
    fd: OwnedFd
    shown: str          # the symlink-free path inside the rootfs, for messages

    def close(self) -> None:
        self.fd.close()
        self.parent.close()


def _open_one(dirfd: int, name: str, shown: str) -> int:
    # One component, O_NOFOLLOW: a symlink comes back as itself (O_PATH), for
    # us to read; RESOLVE_BENEATH refuses anything that would leave dirfd.
    return _sys.openat2(dirfd, name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                        resolve=_BENEATH, filename=shown)


def _resolve_existing(rootfd: int, parts: Sequence[str], rootfs: str) -> Optional[Target]:
    """The common case in two lookups, or None for :func:`resolve` to walk.

    The directory is opened with ``openat2(RESOLVE_IN_ROOT|
    RESOLVE_NO_MAGICLINKS)`` (the kernel does the walk, inside the rootfs),
    then the last component with ``O_NOFOLLOW``.  None when something is
    missing, the last component is a symlink, or a lookup fails (the walk
    then meets the same problem and says so in its own words).
    """
    shown = rootfs + "/" + "/".join(parts)
    try:
        parent = OwnedFd(_sys.openat2(rootfd, "/".join(parts[:-1]) or ".",
                                      os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
                                      resolve=_sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_MAGICLINKS,
                                      filename=shown), "rootfs directory")
    except OSError:
        return None
    try:
        fd = OwnedFd(_open_one(parent.fileno(), parts[-1], shown), "mount target")
    except OSError:
        parent.close()
        return None
    except BaseException:
        parent.close()
        raise
    try:
        link = stat.S_ISLNK(os.fstat(fd.fileno()).st_mode)
    except BaseException:
        fd.close()
        parent.close()
        raise
    if link:
        fd.close()
        parent.close()
        return None
    return Target(parent, parts[-1], fd, shown)


def resolve(rootfd: int, parts: Sequence[str], rootfs: str,
             create: Optional[str]) -> Target:
    """Resolve ``parts`` inside the rootfs; create what is missing if asked.

    ``create`` is ``"dir"``, ``"file"`` (the last component is an empty
    file) or None (raise ``FileNotFoundError`` instead).
    """
    try:
        return _walk(rootfd, parts, rootfs, create)
    except MountError:
        raise
    except OSError as exc:
        # ENAMETOOLONG from a symlink's text, EACCES, ELOOP ...: a typed
        # error naming the target, whichever lookup failed.
        shown = rootfs + "/" + "/".join(parts)
        raise mount_error(exc.errno or errno.EIO, f"unable to resolve {shown}",
                          exc.filename if isinstance(exc.filename, str) else shown) from None


def _walk(rootfd: int, parts: Sequence[str], rootfs: str, create: Optional[str]) -> Target:
    found = _resolve_existing(rootfd, parts, rootfs)
    if found is not None:
        return found
    todo = list(reversed(parts))     # a stack: next component last
    done: List[str] = []
    links = made = 0

    def reopen(path: List[str]) -> OwnedFd:
        fd = os.dup(rootfd) if not path else _sys.openat2(
            rootfd, "/".join(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC,
            resolve=_BENEATH | _sys.RESOLVE_NO_SYMLINKS, filename=rootfs + "/" + "/".join(path))
        return OwnedFd(fd, "rootfs directory")

    cur = reopen([])
    parent: Optional[OwnedFd] = None
    try:
        while todo:
            name = todo.pop()
            if name == "..":
                if done:
                    done.pop()
                    cur.close()
                    cur = reopen(done)
                    if parent is not None:
                        parent.close()
                    parent = reopen(done[:-1]) if done else None
                continue
            shown = "/" + "/".join(done + [name])
            try:
                fd = _open_one(cur.fileno(), name, rootfs + shown)
            except FileNotFoundError:
                if create is None:
                    raise
                try:
                    if create == "file" and not todo:
                        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                         | os.O_CLOEXEC, 0o644, dir_fd=cur.fileno()))
                    else:
                        os.mkdir(name, 0o755, dir_fd=cur.fileno())
                except FileExistsError:
                    made += 1  # made meanwhile, maybe a symlink: look again
                    if made > MAX_SYMLINKS:
                        raise mount_error(errno.EAGAIN, f"unable to create mount point "
                                          f"{rootfs}{shown}", rootfs + shown,
                                          "it keeps appearing and disappearing") from None
                except OSError as exc:
                    raise mount_error(exc.errno or errno.EIO, f"unable to create mount point "
                                      f"{rootfs}{shown}", rootfs + shown) from None
                todo.append(name)
                continue
            st = os.fstat(fd)
            if stat.S_ISLNK(st.st_mode):
                try:
                    dest = os.readlink("", dir_fd=fd)
                finally:
                    os.close(fd)
                links += 1
                if links > MAX_SYMLINKS:
                    raise mount_error(errno.ELOOP, f"unable to resolve {rootfs}{shown}",
                                      rootfs + shown)
                # The link's text is walked inside the rootfs: absolute from
                # its root, relative from the link's directory.
                todo.extend(reversed(components(dest)))
                if dest.startswith("/"):
                    done.clear()
                    cur.close()
                    cur = reopen([])
                    if parent is not None:
                        parent.close()
                    parent = None
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise mount_error(errno.ENOTDIR, f"unable to resolve {rootfs}{shown}",
                                  rootfs + shown)
            done.append(name)
            if parent is not None:
                parent.close()
            parent, cur = cur, OwnedFd(fd, "mount target")
        if parent is None or not done:
            raise mount_error(errno.EINVAL, f"unable to resolve {rootfs}/{'/'.join(parts)}",
                              rootfs, "the target resolves to the rootfs itself")
        return Target(parent, done[-1], cur, rootfs + "/" + "/".join(done))
    except BaseException:
        cur.close()
        if parent is not None:
            parent.close()
        raise
