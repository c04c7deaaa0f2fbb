"""Mount lists into a container rootfs: ``Mount``, ``mount_all``, ``unmount_all``.

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
import posixpath
import stat
from dataclasses import dataclass, field
from typing import (Dict, Iterable, List, Optional, Sequence, Tuple, Union)

from .. import _sys
from .._fd import OwnedFd
from .._features import features
from ..userns._idmap import IDMap
from ..errors import IDMapError
from ._mount import HasFileno, attach, clone_idmapped, mount_id_of, note, open_tree_error, set_attrs, unmount_at, userns_fileno
from ..errors import mount_error
from ._overlay import fs_mount, overlay_mount, split_lowerdir
from ..errors import InvalidMountError

StrPath = Union[str, "os.PathLike[str]"]

#: Symlinks followed per target before giving up with ELOOP (the kernel's 40).
MAX_SYMLINKS = 40

_ATTR_SET = {
    "ro": _sys.MOUNT_ATTR_RDONLY, "nosuid": _sys.MOUNT_ATTR_NOSUID,
    "nodev": _sys.MOUNT_ATTR_NODEV, "noexec": _sys.MOUNT_ATTR_NOEXEC,
    "nodiratime": _sys.MOUNT_ATTR_NODIRATIME, "nosymfollow": _sys.MOUNT_ATTR_NOSYMFOLLOW,
}
_ATTR_CLEAR = {
    "rw": _sys.MOUNT_ATTR_RDONLY, "suid": _sys.MOUNT_ATTR_NOSUID,
    "dev": _sys.MOUNT_ATTR_NODEV, "exec": _sys.MOUNT_ATTR_NOEXEC,
    "diratime": _sys.MOUNT_ATTR_NODIRATIME, "symfollow": _sys.MOUNT_ATTR_NOSYMFOLLOW,
}
_ATIME = {
    "relatime": _sys.MOUNT_ATTR_RELATIME, "noatime": _sys.MOUNT_ATTR_NOATIME,
    "strictatime": _sys.MOUNT_ATTR_STRICTATIME,
}
_PROPAGATION = {
    "private": _sys.MS_PRIVATE, "shared": _sys.MS_SHARED, "slave": _sys.MS_SLAVE,
    "unbindable": _sys.MS_UNBINDABLE,
}


@dataclass(frozen=True)
class Mount:
    """One mount, as containerd and OCI spell it.

    ``type`` is a filesystem type (``"tmpfs"``, ``"proc"``, ``"overlay"``
    ...) or ``"bind"``; ``source`` a host path (or a filesystem's source
    name); ``target`` a path inside the rootfs given to :func:`mount_all`.

    ``options`` (any iterable of str; stored as a tuple):

    * ``bind`` / ``rbind``: a bind mount (non-recursive / with submounts),
      whatever ``type`` says;
    * ``ro``/``rw``, ``nosuid``/``suid``, ``nodev``/``dev``,
      ``noexec``/``exec``, ``relatime``/``noatime``/``strictatime``,
      ``nodiratime``/``diratime``, ``nosymfollow``: mount attributes (the
      last of a pair wins; on an ``rbind`` they apply to every submount);
    * ``[r]private``, ``[r]shared``, ``[r]slave``, ``[r]unbindable``:
      propagation, set once the mount is attached;
    * ``uidmap=c:h:s[,...]`` and ``gidmap=...`` (containerd; both or
      neither): on a bind, an idmapped bind (its submounts idmapped too for
      ``rbind``); on an overlay, its lowerdirs are idmapped;
    * ``idmap`` / ``ridmap`` (OCI): idmap a bind, the top mount only /
      every submount too.  The maps come from ``uidmap=``/``gidmap=``, or
      else from ``mount_all(..., userns=)`` (the container's namespace, as
      OCI says);
    * any other option of a filesystem (``size=64m``, ``mode=755``, for an
      overlay ``lowerdir=``, ``upperdir=``, ``workdir=`` ...) goes to the
      kernel with ``fsconfig()``: ``key=value`` as a string, a bare word as
      a flag.  The kernel's own complaint ends up in the error.  Binds take
      no such options.
    """

    type: str
    source: str
    target: str
    options: Tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        opts = self.options
        if isinstance(opts, (str, bytes)):
            raise TypeError(f"Mount options must be a list of str, not one {type(opts).__name__}: "
                            f"{opts!r}")
        opts = tuple(opts)
        object.__setattr__(self, "options", opts)
        for name in ("type", "source", "target"):
            if not isinstance(getattr(self, name), str):
                raise TypeError(f"Mount.{name} must be a str, not "
                                f"{type(getattr(self, name)).__name__}")
        for o in opts:
            if not isinstance(o, str):
                raise TypeError(f"Mount options must be str, not {type(o).__name__}: {o!r}")


@dataclass
class _Plan:
    """A validated :class:`Mount`, ready to mount."""

    index: int
    mount: Mount
    kind: str                              # "bind", "overlay" or "fs"
    target: Tuple[str, ...]
    recursive: bool = False                # rbind
    maps: Optional[Tuple[IDMap, IDMap]] = None
    idmap: bool = False
    idmap_recursive: bool = False
    attr_set: int = 0
    attr_clr: int = 0
    propagation: Optional[Tuple[int, bool]] = None
    params: List[Tuple[str, Optional[str]]] = field(default_factory=list)
    lowerdirs: List[str] = field(default_factory=list)


def _components(path: str) -> List[str]:
    return [c for c in path.split("/") if c and c != "."]


def _plan(index: int, m: Mount, have_userns: bool) -> _Plan:
    def bad(reason: str) -> InvalidMountError:
        return InvalidMountError(index, m, reason)

    for name in ("type", "source", "target"):
        if "\0" in getattr(m, name):
            raise bad(f"{name} contains a NUL byte")
    if not m.target:
        raise bad("target is empty")
    # ".." in the target itself is taken lexically (as runc and containerd
    # clean mount destinations), so that unmount_all() finds the mount again
    # after a component that ".." stepped back out of got covered by it.
    target = _components(posixpath.normpath("/" + m.target))
    if not target:
        raise bad(f"target {m.target!r} is the rootfs itself")
    opts = m.options
    is_bind = m.type == "bind" or "bind" in opts or "rbind" in opts
    kind = "bind" if is_bind else "overlay" if m.type == "overlay" else "fs"
    if kind == "fs" and not m.type:
        raise bad("type is empty (say \"bind\" or a filesystem type)")
    p = _Plan(index, m, kind, tuple(target), recursive="rbind" in opts)
    maps: Dict[str, IDMap] = {}
    idmap_opts = []
    upper_work = []
    for o in opts:
        key, eq, value = o.partition("=")
        if "\0" in o:
            raise bad(f"option {o!r} contains a NUL byte")
        if key in ("uidmap", "gidmap") and eq:
            if key in maps:
                raise bad(f"{key}= given twice")
            try:
                maps[key] = IDMap.parse(value)
            except IDMapError as exc:
                raise bad(f"option {o!r}: {exc}") from None
        elif o in ("bind", "rbind") or o == "defaults":
            pass
        elif o in ("idmap", "ridmap"):
            idmap_opts.append(o)
        elif o in _ATTR_SET:
            p.attr_set |= _ATTR_SET[o]
            p.attr_clr &= ~_ATTR_SET[o]
        elif o in _ATTR_CLEAR:
            p.attr_clr |= _ATTR_CLEAR[o]
            p.attr_set &= ~_ATTR_CLEAR[o]
        elif o in _ATIME:
            p.attr_set = (p.attr_set & ~_sys.MOUNT_ATTR__ATIME) | _ATIME[o]
            p.attr_clr |= _sys.MOUNT_ATTR__ATIME
        elif o in _PROPAGATION or (o[:1] == "r" and o[1:] in _PROPAGATION):
            p.propagation = (_PROPAGATION[o.lstrip("r")], o[0] == "r")
        elif kind == "bind":
            raise bad(f"option {o!r} does not apply to a bind mount")
        elif kind == "overlay" and key == "lowerdir" and eq:
            p.lowerdirs = split_lowerdir(value)
            if not all(os.path.isabs(d) for d in p.lowerdirs):
                raise bad(f"option {o!r}: lowerdir needs one or more absolute paths, "
                          "separated by ':'")
        else:
            if kind == "overlay" and key in ("upperdir", "workdir"):
                if not (eq and os.path.isabs(value)):
                    raise bad(f"option {o!r}: {key} needs an absolute path")
                upper_work.append(key)
            p.params.append((key, value) if eq else (o, None))
    if len(maps) == 1:
        have, lack = ("uidmap", "gidmap") if "uidmap" in maps else ("gidmap", "uidmap")
        raise bad(f"{have}= is given without {lack}=: give both or neither")
    if maps:
        p.maps = (maps["uidmap"], maps["gidmap"])
    if len(idmap_opts) > 1:
        raise bad("give one of idmap and ridmap, not both")
    if kind == "overlay":
        if not p.lowerdirs:
            raise bad("an overlay needs a lowerdir= option")
        if len(set(upper_work)) == 1:
            raise bad("upperdir= and workdir= go together: give both or neither")
        if idmap_opts:
            raise bad(f"{idmap_opts[0]} applies to bind mounts; an overlay takes "
                      "uidmap=/gidmap= to idmap its lowerdirs")
    elif kind == "fs" and (maps or idmap_opts):
        raise bad(f"idmapping applies to bind and overlay mounts, not to {m.type!r}")
    if kind == "bind":
        if not m.source:
            raise bad("a bind mount needs a source")
        if idmap_opts:
            p.idmap = True
            p.idmap_recursive = idmap_opts[0] == "ridmap"
            if p.maps is None and not have_userns:
                raise bad(f"{idmap_opts[0]} needs uidmap=/gidmap= options, or "
                          "mount_all(..., userns=) for the container's user namespace")
        elif p.maps is not None:
            p.idmap = True
            p.idmap_recursive = p.recursive
    return p


# --- targets, resolved inside the rootfs by fd ---------------------------------

_BENEATH = _sys.RESOLVE_BENEATH | _sys.RESOLVE_NO_MAGICLINKS


@dataclass
class _Target:
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


def _resolve_existing(rootfd: int, parts: Sequence[str], rootfs: str) -> Optional[_Target]:
    """The common case in two lookups, or None for :func:`_resolve` to walk.

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
    if stat.S_ISLNK(os.fstat(fd.fileno()).st_mode):
        fd.close()
        parent.close()
        return None
    return _Target(parent, parts[-1], fd, shown)


def _resolve(rootfd: int, parts: Sequence[str], rootfs: str,
             create: Optional[str]) -> _Target:
    """Resolve ``parts`` inside the rootfs; create what is missing if asked.

    ``create`` is ``"dir"``, ``"file"`` (the last component is an empty
    file) or None (raise ``FileNotFoundError`` instead).
    """
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
                todo.extend(reversed(_components(dest)))
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
        return _Target(parent, done[-1], cur, rootfs + "/" + "/".join(done))
    except BaseException:
        cur.close()
        if parent is not None:
            parent.close()
        raise


# --- mount_all, unmount_all ------------------------------------------------------

@dataclass
class _Done:
    parent: OwnedFd
    name: str
    mount_id: int
    shown: str


def _mount_one(p: _Plan, rootfd: int, rootfs: str, userns_fd: Optional[int],
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
        target = _resolve(rootfd, p.target, rootfs, create)
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
    plans = [_plan(i, m, userns_fd is not None) for i, m in enumerate(mlist)]
    needed = ["mount_api", "openat2"]
    if any(p.idmap or p.maps for p in plans):
        needed.append("mount_setattr_idmap")
    features().require(*needed)
    root = os.fspath(rootfs).rstrip("/") or "/"
    from ..userns import get_userns_fd  # late: only for uidmap=/gidmap=

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
    plans = [_plan(i, m, True) for i, m in enumerate(mlist)]
    features().require("mount_api", "openat2")
    root = os.fspath(rootfs).rstrip("/") or "/"
    first: Optional[BaseException] = None
    with OwnedFd(os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC), "rootfs") as rfd:
        for p in reversed(plans):
            try:
                target = _resolve(rfd.fileno(), p.target, root, None)
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
