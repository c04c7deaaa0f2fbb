"""The ``Mount`` spec and its validation into a plan.

Everything a mount list can get wrong is found here, before anything is
mounted: :func:`plan` raises :class:`InvalidMountError` naming the mount
and the reason.
"""

from __future__ import annotations

import os
import posixpath

from .. import _sys
from .._value import Record, field
from ..errors import IDMapError, InvalidMountError
from ..userns import IDMap

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Tuple


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
#: An overlay option of pidsafe's own (``x-`` options are for userspace, as
#: mount(8) says): idmap the upperdir and workdir too (see :class:`Mount`).
IDMAP_UPPER = "x-pidsafe.idmap-upper"

_PROPAGATION = {
    "private": _sys.MS_PRIVATE, "shared": _sys.MS_SHARED, "slave": _sys.MS_SLAVE,
    "unbindable": _sys.MS_UNBINDABLE,
}


class Mount(Record):
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
    * ``x-pidsafe.idmap-upper`` (an overlay with ``uidmap=``/``gidmap=``):
      its ``upperdir`` and ``workdir`` are idmapped as well, so that a
      file made through the overlay lands on disk with its container-side
      owner (``0``, not the host id ``0`` maps to), as the lowers hold
      theirs: the snapshot is never shifted.  overlayfs makes its work files
      and whiteouts with the mounter's (the host root's) credentials, so
      that map also gets one container-side id for the host's root: the
      first one after the container's ranges (e.g. ``65536`` for
      ``0:100000:65536``), unless the map gives host ``0`` one already;
      work files and whiteouts are owned by it on disk.  containerd's
      ``uidmap=`` alone idmaps the lowers only (as containerd 2 does);
    * ``idmap`` / ``ridmap`` (OCI): idmap a bind, the top mount only /
      every submount too.  The maps come from ``uidmap=``/``gidmap=``, or
      else from ``mount_all(..., userns=)`` (the container's namespace, as
      OCI says);
    * any other option of a filesystem (``size=64m``, ``mode=755``, for an
      overlay ``lowerdir=``, ``upperdir=``, ``workdir=`` ...) goes to the
      kernel with ``fsconfig()``: ``key=value`` as a string, a bare word as
      a flag.  The kernel's own complaint ends up in the error.  Binds take
      no such options (:func:`plan` refuses them, unless told to ignore
      them as OCI runtimes do).
    """

    type: str
    source: str
    target: str
    options: Tuple[str, ...] = ()

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


class Plan(Record, frozen=False):
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
    idmap_upper: bool = False              # x-pidsafe.idmap-upper (an overlay)
    ignored: List[str] = field(default_factory=list)   # filesystem options of a bind


#: The longest file name, in bytes (limits.h); a longer target component
#: would fail midway with ENAMETOOLONG.
NAME_MAX = 255


def _utf8(text: str) -> bool:
    # fsopen() and fsconfig() take the type and option names as UTF-8: a str
    # with surrogates (from undecodable bytes) cannot be passed at all.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def components(path: str) -> List[str]:
    return [c for c in path.split("/") if c and c != "."]


def plan(index: int, m: Mount, have_userns: bool, *, bind_ignores_fs_options: bool = False
         ) -> Plan:
    """Validate ``m`` (the ``index``-th of its list) into a :class:`Plan`.

    ``bind_ignores_fs_options``: a filesystem option on a bind (``mode=``,
    ``size=`` ...) goes to :attr:`Plan.ignored` instead of being refused.
    OCI runtimes pass a config's options to mount(2), which ignores the
    data of an ``MS_BIND``; a config.json written for runc relies on that.

    Raises:
        InvalidMountError: what is wrong with ``m``.
    """
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
    target = components(posixpath.normpath("/" + m.target))
    if not target:
        raise bad(f"target {m.target!r} is the rootfs itself")
    for c in target:
        if len(os.fsencode(c)) > NAME_MAX:
            raise bad(f"target component {c[:16]!r}... is {len(os.fsencode(c))} bytes long, "
                      f"over NAME_MAX ({NAME_MAX})")
    if not _utf8(m.type):
        raise bad(f"type {m.type!r} is not valid UTF-8 (the kernel names filesystem types "
                  "in UTF-8)")
    opts = m.options
    is_bind = m.type == "bind" or "bind" in opts or "rbind" in opts
    kind = "bind" if is_bind else "overlay" if m.type == "overlay" else "fs"
    if kind == "fs" and not m.type:
        raise bad("type is empty (say \"bind\" or a filesystem type)")
    p = Plan(index, m, kind, tuple(target), recursive="rbind" in opts)
    maps: Dict[str, IDMap] = {}
    idmap_opts = []
    upper_work = []
    for o in opts:
        key, eq, value = o.partition("=")
        if "\0" in o:
            raise bad(f"option {o!r} contains a NUL byte")
        if not _utf8(key):
            raise bad(f"option {o!r}: its name is not valid UTF-8")
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
        elif o == IDMAP_UPPER and kind == "overlay":
            p.idmap_upper = True
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
            if not bind_ignores_fs_options:
                raise bad(f"option {o!r} does not apply to a bind mount")
            p.ignored.append(o)
        elif kind == "overlay" and key == "lowerdir" and eq:
            # Here: the overlay layer (its fs-context calls, the mount hints)
            # is ~2M instructions of every create, and only overlays need it.
            from ._overlay import split_lowerdir

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
        if p.idmap_upper and (p.maps is None or not upper_work):
            raise bad(f"{IDMAP_UPPER} needs uidmap=/gidmap= and an upperdir= and workdir=")
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
