"""Where the cgroup hierarchies are, and where a ``cgroupsPath`` lands in each.

A machine has cgroup v1 hierarchies (one mount per controller set, e.g.
``memory`` or ``cpu,cpuacct``), a cgroup v2 hierarchy (one mount, type
``cgroup2``), or both ("hybrid": v1 controllers plus a v2 mount, often at
``/sys/fs/cgroup/unified``, whose ``cgroup.controllers`` lists only what no
v1 hierarchy holds).  The layout is read at run time from
``/proc/self/mountinfo`` (with :func:`pidsafe.mount.parse_mountinfo`) and
``/proc/self/cgroup``; kernel versions are never compared.  It is the one
description of the host's cgroups: the cgroup of a container, the cgroups
an exec joins and the ``cgroup`` mounts in a container all come from it.  A controller is used where it is mounted: on its v1
hierarchy if it has one, else on v2 if the v2 root lists it.

``cgroupsPath`` is resolved as runc's cgroupfs driver does: an absolute path
is relative to each hierarchy's (mounted) root; a relative path is relative
to the calling process's own cgroup in each hierarchy.
"""

from __future__ import annotations

import posixpath

from ... import errors   # its config errors: loaded only to raise one
from ..._value import Frozen, init_fields
from ...mount import mountinfo, parse_mountinfo
from ._files import _err, read_file

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, FrozenSet, List, Optional, Tuple

    from ...mount import MountInfo

#: Where errors about the path point.
PATH_FIELD = "linux.cgroupsPath"

#: v1 hierarchies a container always gets a directory in (where mounted):
#: the ones whose limits a container may be given, plus freezer (pause,
#: kill --all) and cpuacct (usage).
DEFAULT_V1 = frozenset({"memory", "pids", "cpu", "cpuacct", "devices", "freezer"})


def _systemd_form(path: str) -> bool:
    """Whether ``path`` is ``slice:prefix:name`` (no ``/``; slice and name not empty).

    Not a regular expression: :mod:`re` (and :mod:`enum`) would be a sixth
    of pidsafe-runc ``delete``'s start-up, which reads the cgroup path.
    """
    parts = path.split(":")
    return "/" not in path and len(parts) == 3 and bool(parts[0]) and bool(parts[2])


class Hierarchy(Frozen):
    """One mounted cgroup hierarchy (an immutable value, pidsafe/_value.py).

    Attributes:
        key: the controller field of ``/proc/PID/cgroup`` (``"memory"``,
            ``"cpu,cpuacct"``, ``"name=systemd"``; ``""`` for v2).
        controllers: the controllers it holds (v2: the root's
            ``cgroup.controllers``).
        mountpoint: where it is mounted.
        root: the cgroup mounted there (``"/"`` unless a sub-tree is mounted).
        own: this process's cgroup in it, as ``/proc/self/cgroup`` says.
        options: v1: what mounting it again takes, its superblock options
            but ``rw``/``ro`` and ``release_agent`` (the controllers,
            ``name=``, ``xattr`` ...); ``()`` for v2.
    """

    __slots__ = ("key", "controllers", "mountpoint", "root", "own", "options")
    key: str
    controllers: FrozenSet[str]
    mountpoint: str
    root: str
    own: str
    options: Tuple[str, ...]

    def __init__(self, key: str, controllers: FrozenSet[str], mountpoint: str, root: str,
                 own: str, options: Tuple[str, ...] = ()) -> None:
        init_fields(self, key, controllers, mountpoint, root, own, options)

    @property
    def v2(self) -> bool:
        """Whether this is the cgroup v2 hierarchy."""
        return self.key == ""

    def directory(self, cgroup: str) -> str:
        """The directory of ``cgroup`` (a hierarchy path like ``/a/b``).

        Raises:
            ConfigError: ``cgroup`` lies outside the mounted sub-tree.
        """
        if self.root == "/":
            rel = cgroup
        elif cgroup == self.root or cgroup.startswith(self.root + "/"):
            rel = cgroup[len(self.root):] or "/"
        else:
            raise errors.ConfigError(PATH_FIELD, f"cgroup {cgroup} is outside the part of the "
                                                 f"{self.key or 'v2'} hierarchy mounted at "
                                                 f"{self.mountpoint} ({self.root})")
        return self.mountpoint.rstrip("/") + (rel if rel != "/" else "")


class CgroupLayout(Frozen):
    """The cgroup hierarchies this process sees (an immutable value, pidsafe/_value.py).

    Attributes:
        v1: the v1 hierarchies (``name=`` ones included), in
            ``/proc/self/cgroup`` order.
        v2: the v2 hierarchy, or ``None`` if none is mounted.
    """

    __slots__ = ("v1", "v2")
    v1: Tuple[Hierarchy, ...]
    v2: Optional[Hierarchy]

    def __init__(self, v1: Tuple[Hierarchy, ...], v2: Optional[Hierarchy]) -> None:
        init_fields(self, v1, v2)

    @classmethod
    def detect(cls, mountinfo: str = "/proc/self/mountinfo",
               proc_cgroup: str = "/proc/self/cgroup") -> "CgroupLayout":
        """Read the layout from mountinfo and ``/proc/self/cgroup``.

        Raises:
            CgroupError: a file could not be read (``filename`` names it).
            ValueError: ``mountinfo`` is not in mountinfo's form.
        """
        own_text = read_file(proc_cgroup)
        own: Dict[str, str] = {}
        for line in own_text.splitlines():
            hid, _, rest = line.partition(":")
            key, _, path = rest.partition(":")
            if hid == "0" and key == "":
                own[""] = path
            elif key:
                own[key] = path
        mounts = tuple(_cgroup_mounts(mountinfo))
        # A read-only cgroup2 mount is never ours to make cgroups in: it is
        # some container's view (its rootfs/sys/fs/cgroup/unified, seen from a
        # mount namespace whose own v2 mount was taken away), not the host's.
        v2_mount = next((m for m in mounts if m.fstype == "cgroup2" and "" in own
                         and "ro" not in m.options), None)
        controllers = "" if v2_mount is None else read_file(
            posixpath.join(v2_mount.mountpoint, "cgroup.controllers"))
        # The same inputs give the same layout: a handle's exec, pids, kill
        # and delete (each loads its cgroup) do not work it out again.
        memo_key = (own_text, mounts, controllers)
        if _memo and _memo[0][0] == memo_key:
            return _memo[0][1]
        v1: List[Hierarchy] = []
        v2: Optional[Hierarchy] = None
        if v2_mount is not None:
            v2 = Hierarchy("", frozenset(controllers.split()), v2_mount.mountpoint,
                           v2_mount.root, own[""])
        seen = set()
        for m in mounts:
            if m.fstype == "cgroup":
                options = tuple(o for o in m.super_options
                                if o not in ("rw", "ro") and not o.startswith("release_agent"))
                for key in own:
                    if key and key not in seen and set(key.split(",")) <= set(options):
                        seen.add(key)
                        v1.append(Hierarchy(key, frozenset(key.split(",")), m.mountpoint,
                                            m.root, own[key], options))
                        break
        order = list(own)
        v1.sort(key=lambda h: order.index(h.key))
        layout = cls(tuple(v1), v2)
        _memo[:] = [(memo_key, layout)]
        return layout

    @staticmethod
    def remembered() -> Optional["CgroupLayout"]:
        """The layout :meth:`detect` worked out last in this process (nothing
        is read), or None before the first."""
        return _memo[0][1] if _memo else None

    def v1_for(self, controller: str) -> Optional[Hierarchy]:
        """The v1 hierarchy that holds ``controller``, if one is mounted."""
        for h in self.v1:
            if controller in h.controllers:
                return h
        return None

    def location(self, controller: str) -> Optional[Hierarchy]:
        """Where ``controller`` is used: its v1 hierarchy, else v2 if v2 has it."""
        h = self.v1_for(controller)
        if h is None and self.v2 is not None and controller in self.v2.controllers:
            h = self.v2
        return h

    def without_v2(self) -> "CgroupLayout":
        """This layout with its v2 hierarchy left out (v1 only)."""
        return CgroupLayout(self.v1, None)


#: The last layout :meth:`CgroupLayout.detect` worked out, with what it read.
_memo: List[Tuple[Tuple[str, Tuple[MountInfo, ...], str], CgroupLayout]] = []


def _cgroup_mounts(path: str) -> List[MountInfo]:
    """The cgroup and cgroup2 mounts of the mountinfo file ``path``.

    This process's own table comes from the mount layer, which reads it again
    only once the kernel says it changed; another file is read here, and only
    its cgroup lines are parsed (a field's own spaces are escaped as
    ``\\040``, so " - " is the separator before the type).

    Raises:
        CgroupError: the file could not be read (``filename`` names it).
    """
    if path == "/proc/self/mountinfo":
        try:
            return [m for m in mountinfo() if m.fstype in ("cgroup", "cgroup2")]
        except OSError as exc:
            raise _err(exc, f"unable to read {path}", path) from None
    return parse_mountinfo("\n".join(line for line in read_file(path).splitlines()
                                     if " - cgroup" in line))


def check_cgroups_path(path: Optional[str], container_id: str,
                       default_parent: str = "/pidsafe") -> str:
    """Check ``linux.cgroupsPath``; return it, or the default for ``container_id``.

    The default is ``<default_parent>/<container_id>``.

    Raises:
        ConfigError: the path is the root cgroup, is not normalised (``..``,
            ``.``, ``//``, a trailing ``/``) or holds a NUL.
        UnsupportedConfigError: the systemd driver's ``slice:prefix:name`` form.
    """
    if not path:
        path = posixpath.join(default_parent, container_id)
    if _systemd_form(path):
        raise errors.UnsupportedConfigError(
            PATH_FIELD, f"{path!r} is the systemd cgroup driver's slice:prefix:name form; "
            "pidsafe uses cgroupfs")
    if "\0" in path:
        raise errors.ConfigError(PATH_FIELD, f"holds a NUL byte: {path!r}")
    if path == "/":
        raise errors.ConfigError(PATH_FIELD, "is the root cgroup, which a container cannot own")
    parts = path[1:].split("/") if path.startswith("/") else path.split("/")
    bad = next((p for p in parts if p in ("", ".", "..")), None)
    if bad is not None:
        raise errors.ConfigError(PATH_FIELD, f"{path!r} is not a normalised path "
                                             f"(component {bad!r})")
    return path


def cgroup_path_in(h: Hierarchy, path: str) -> str:
    """``path`` (checked) as a cgroup of hierarchy ``h`` (``/proc/PID/cgroup`` form)."""
    if path.startswith("/"):
        return posixpath.join(h.root, path[1:])
    return posixpath.join(h.own, path)
