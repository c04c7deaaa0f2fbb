"""Making a new cgroup: its directories, one per hierarchy, then what each needs.

:meth:`Cgroup.create <._cgroup.Cgroup.create>` (:func:`make_cgroup`):
``mkdir -p`` of the cgroup in every hierarchy it goes in (each directory
recorded as it is made, so that a failure removes exactly those), the v2
controllers enabled from the top of the hierarchy down to its parent, the
v1 cpuset filled in, then the limits written and, on v2, the device filter
attached.
"""

from __future__ import annotations

import errno
import os
import posixpath

from ... import _log
from ..._sigsafe import critical
from ...errors import CgroupError, cgroup_error
from ._files import (CgroupDir, privilege_needed, procs, read_file, rmdir_all, write_file,
                     write_values)
from ._layout import DEFAULT_V1, CgroupLayout, Hierarchy, cgroup_path_in, check_cgroups_path

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple, Type, TypeVar

    from ..config import Resources
    from ._cgroup import Cgroup

    _C = TypeVar("_C", bound=Cgroup)

#: v2 controllers enabled for a container where v2 holds them (stats, limits).
_DEFAULT_V2 = frozenset({"memory", "pids", "cpu"})


def make_cgroup(cls: Type[_C], container_id: str, cgroups_path: Optional[str],
                resources: Optional[Resources], *, shared: bool,
                layout: Optional[CgroupLayout], default_parent: str) -> _C:
    """:meth:`Cgroup.create <._cgroup.Cgroup.create>` (see there): a ``cls``."""
    from ..config import Resources
    from ._resources import controllers, device_filter_on_v2, plan

    resources = Resources() if resources is None else resources
    path = check_cgroups_path(cgroups_path, container_id, default_parent)
    layout = CgroupLayout.detect() if layout is None else layout
    writes = plan(layout, resources)
    want = DEFAULT_V1 | controllers(resources)
    hierarchies = [h for h in layout.v1 if h.controllers & want]
    if layout.v2 is not None:
        hierarchies.append(layout.v2)
    targets = [CgroupDir(h.key, h.directory(cg), cg)
               for h in hierarchies for cg in [cgroup_path_in(h, path)]]
    v1: Dict[str, CgroupDir] = {t.key: t for t in targets if t.key}
    v2 = next((t for t in targets if not t.key), None)
    remove: List[str] = []     # directories delete() removes
    parents: List[str] = []    # ancestors we made, top-down per hierarchy
    made: List[str] = []
    try:
        for h, t in zip(hierarchies, targets):
            make_dir(h, t, shared, made, remove, parents)
        if layout.v2 is not None and v2 is not None:
            v2_needs = {c for c in _DEFAULT_V2 | controllers(resources)
                        if layout.location(c) is layout.v2}
            enable_v2(layout.v2, v2.path, v2_needs)
        cpuset = layout.v1_for("cpuset")
        if cpuset is not None and cpuset.key in v1:
            init_cpuset(cpuset, v1[cpuset.key])
        # Consecutive writes to one file (the device rules: deny, then each
        # allow) go through one open.
        control = ""
        values: List[Tuple[str, str]] = []
        for w in writes:
            d = v2 if w.hierarchy.v2 and v2 is not None else v1[w.hierarchy.key]
            target = d.file(w.file)
            if target != control:
                write_values(control, values)
                control, values = target, []
            values.append((w.value, w.field))
        write_values(control, values)
        if device_filter_on_v2(layout, resources) and v2 is not None:
            # Late: the program generator, only for v2 device rules.
            from ._devices_bpf import attach_device_filter

            attach_device_filter(v2.path, resources.devices)
        # Last in the try: an exception a handler raises in it rolls back.
        _log.debug("cgroup", "cgroup %s created: %s", path, made or "(existed)")
    except BaseException as exc:
        with critical:   # a handler's exception lands after the rollback
            _log.debug("cgroup", "cgroup %s: creation failed (%r): removing %s", path,
                       exc, made)
            rmdir_all(made)
        raise
    return cls(v1, v2, remove, parents)


def make_dir(h: Hierarchy, t: CgroupDir, shared: bool, made: List[str], remove: List[str],
             parents: List[str]) -> None:
    """mkdir -p ``t.path`` in ``h``, recording each directory made.

    Each directory made goes to ``made`` (undone on a failure of create), and
    to ``remove`` (the cgroup itself) or ``parents`` (its ancestors), what
    :meth:`Cgroup.delete <._cgroup.Cgroup.delete>` removes.  An existing
    cgroup that holds processes is refused unless ``shared``; an empty one
    is taken over.

    Raises:
        CgroupError: mkdir failed, or ``EBUSY``: the cgroup holds processes.
    """
    top = h.mountpoint.rstrip("/")
    parts = t.path[len(top):].strip("/").split("/")
    # The cgroup itself first: its parents (pidsafe's own directory) exist
    # as a rule, and a mkdir of each would fail with EEXIST.  Only when
    # one is missing (ENOENT), down from the top.
    missing = False
    with critical:
        try:
            os.mkdir(t.path, 0o755)
        except FileExistsError:
            pass
        except FileNotFoundError:
            missing = True
        except OSError as exc:
            err = exc.errno or errno.EIO
            raise cgroup_error(err, f"unable to create cgroup {t.path}", t.path,
                               privilege=privilege_needed(err)) from None
        else:
            made.append(t.path)
            remove.append(t.path)
            return
    for attempt in range(5 if missing else 0):
        d = top
        try:
            for i, part in enumerate(parts):
                d = f"{d}/{part}"
                leaf = i == len(parts) - 1
                with critical:
                    try:
                        os.mkdir(d, 0o755)
                    except FileExistsError:
                        continue
                    made.append(d)
                    (remove if leaf else parents).append(d)
            break
        except FileNotFoundError:
            # A concurrent delete() of a sibling removed a shared parent
            # between our mkdirs: walk down again.
            if attempt == 4:
                raise cgroup_error(errno.ENOENT, f"unable to create cgroup {d}", d,
                                   "its parent keeps disappearing") from None
        except OSError as exc:
            err = exc.errno or errno.EIO
            raise cgroup_error(err, f"unable to create cgroup {d}", d,
                               privilege=privilege_needed(err)) from None
    if t.path in remove:
        return
    inside = procs(t.path)
    if inside and not shared:
        raise cgroup_error(errno.EBUSY, f"cgroup {t.path} already holds processes", t.path,
                           f"pids {inside[:10]}; pass shared=True to join it")
    if not shared:
        remove.append(t.path)    # an empty leftover: ours from now on


def enable_v2(h: Hierarchy, cgroup: str, needed: Set[str]) -> None:
    """Enable ``needed`` in cgroup.subtree_control from the top of ``h`` to
    the parent of the directory ``cgroup``.

    v2 offers a controller's files in a cgroup only when its parent has
    it in ``cgroup.subtree_control``.  A parent that holds processes
    itself refuses (``EBUSY``, "no internal processes").  Enabling is
    not undone: other cgroups may rely on it.

    Raises:
        CgroupError: a write failed; ``EBUSY`` names the parent that holds
            processes.
    """
    if not needed:
        return
    top = h.mountpoint.rstrip("/")
    d = top or "/"
    _enable_in(d, needed)
    for part in cgroup[len(top):].strip("/").split("/")[:-1]:
        d = f"{top}/{part}" if d == "/" else f"{d}/{part}"
        _enable_in(d, needed)


def _enable_in(d: str, needed: Set[str]) -> None:
    f = posixpath.join(d, "cgroup.subtree_control")
    missing = needed - set(read_file(f).split())
    if not missing:
        return
    value = " ".join(f"+{c}" for c in sorted(missing))
    try:
        write_file(f, value, "controllers for the container's cgroup")
    except CgroupError as exc:
        if exc.errno != errno.EBUSY:
            raise
        raise cgroup_error(errno.EBUSY, exc.step, f, "cgroup v2 allows no controllers "
                           f"below a cgroup that holds processes itself ({d}): use an "
                           "absolute linux.cgroupsPath", value=value) from None


def init_cpuset(h: Hierarchy, t: CgroupDir) -> None:
    """v1 cpuset starts empty: copy cpus/mems down from the parent where unset."""
    top = h.mountpoint.rstrip("/")
    d = top
    for part in t.path[len(top):].strip("/").split("/"):
        parent, d = d, f"{d}/{part}"
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not read_file(posixpath.join(d, name)).strip():
                write_file(posixpath.join(d, name),
                           read_file(posixpath.join(parent, name)).strip(),
                           f"inherited from {parent}")
