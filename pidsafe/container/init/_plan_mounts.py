"""The ops of the config's mounts and devices, for :func:`plan_init`.

Each mount is checked with the mount layer's own option rules; a bind's
source is opened by the caller (``open_tree``) and attached by init; a
``cgroup`` mount follows the host's hierarchies (v1, v2, hybrid).
"""

from __future__ import annotations

import os
import posixpath
import stat

from ... import _sys
from ...errors import ConfigError, InvalidMountError
from ...mount import Mount, MountPlan, plan_mount
from ..cgroup import CgroupLayout
from ..config import Device, MountSpec, Spec
from ._builder import _Builder
from ._protocol import KIND_DIR, KIND_FILE, OP_MKNOD, OP_MOUNT_FS, OP_MOUNT_TREE, nul_list

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

#: Where a host mounts its cgroup hierarchies, and a container sees them.
CGROUP_ROOT = "/sys/fs/cgroup"


def _attr_and_params(index: int, m: MountSpec, have_userns: bool) -> Tuple[MountPlan, str]:
    """Validate one config mount with the mount layer's own option rules.

    Filesystem options on a bind (``mode=755`` ...) are ignored, as runc
    and crun ignore them: they pass them to mount(2) with ``MS_BIND``,
    which takes no data.
    """
    try:
        p = plan_mount(index, Mount(m.type or "bind", m.source, m.destination, m.options),
                       have_userns, bind_ignores_fs_options=True)
    except InvalidMountError as exc:
        raise ConfigError(f"mounts[{index}]", str(exc).split(": ", 1)[-1]) from None
    return p, m.destination


def _mount(b: _Builder, spec: Spec, bundle: str, i: int, m: MountSpec,
           idmap_fds: Dict[int, int], layout: Optional[CgroupLayout], in_userns: bool,
           fresh: bool = True) -> None:
    """The ops of ``spec.mounts[i]``.  ``fresh``: init clones a bind's tree again
    where it attaches it (no OP_ROOT_CLONE follows)."""
    where = f"mounts[{i}]"
    if m.type == "cgroup" and not m.is_bind:
        _cgroup_mount(b, i, m, layout or CgroupLayout.detect(), in_userns)
        return
    p, dest = _attr_and_params(i, m, have_userns=i in idmap_fds)
    if p.kind == "bind":
        # runtime-spec: bind sources are absolute or relative to the bundle.
        source = os.path.join(bundle, m.source)
        target_kind = KIND_DIR if _is_dir(source) else KIND_FILE
        tree = b.open_tree(source, p.recursive, p.attr_set, p.attr_clr,
                           idmap_fds.get(i, -1), where)
        b.add(OP_MOUNT_TREE, tree, dest, int(p.recursive), _propagation(p), target_kind,
              int(fresh), field_=where, what=dest)
    else:
        params = nul_list([k if v is None else f"{k}={v}" for k, v in p.params])
        b.add(OP_MOUNT_FS, m.type, m.source or m.type, dest, p.attr_set, _propagation(p),
              params, KIND_DIR, field_=where, what=dest)


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return True   # let the mount itself report a missing source


def _propagation(p: MountPlan) -> int:
    return 0 if p.propagation is None else int(p.propagation[0])


def _device(b: _Builder, d: Device, in_userns: bool, where: str, fresh: bool = True) -> None:
    if in_userns:
        # No mknod in a user namespace: bind the host's node (runc does the same).
        tree = b.open_tree(d.path, False, 0, 0, -1, where)
        b.add(OP_MOUNT_TREE, tree, d.path, 0, 0, KIND_FILE, int(fresh), field_=where,
              what=d.path)
        return
    mode = d.kind | (0o666 if d.file_mode is None else d.file_mode)
    b.add(OP_MKNOD, d.path, mode, d.major, d.minor, -1 if d.uid is None else d.uid,
          -1 if d.gid is None else d.gid, field_=where, what=d.path)


def _cgroup_mount(b: _Builder, index: int, m: MountSpec, layout: CgroupLayout,
                  in_userns: bool) -> None:
    """``cgroup`` in config.json: cgroup2 on a v2 host; per-hierarchy v1 mounts otherwise.

    The v1 hierarchies mounted under ``/sys/fs/cgroup/`` each get a mount of
    their own under the destination, by the same name; a v2 hierarchy
    mounted beside them (hybrid) is mounted at ``unified``.
    """
    where = f"mounts[{index}]"
    p, dest = _attr_and_params(index, MountSpec(m.destination, "tmpfs", "tmpfs", m.options),
                               have_userns=False)
    attr = p.attr_set
    v1 = [h for h in layout.v1 if h.mountpoint.startswith(CGROUP_ROOT + "/")]
    v2 = layout.v2
    if v2 is not None and v2.mountpoint == CGROUP_ROOT and not v1:
        b.add(OP_MOUNT_FS, "cgroup2", "cgroup2", dest, attr, 0, b"", KIND_DIR, field_=where,
              what=dest)
        return
    b.add(OP_MOUNT_FS, "tmpfs", "tmpfs", dest, attr & ~_sys.MOUNT_ATTR_RDONLY, 0,
          nul_list(["mode=755"]), KIND_DIR, field_=where, what=dest)
    if in_userns:
        return   # cgroup v1 cannot be mounted from a non-initial user namespace
    for h in v1:
        sub = posixpath.join(dest, posixpath.basename(h.mountpoint))
        b.add(OP_MOUNT_FS, "cgroup", "cgroup", sub, attr, 0, nul_list(list(h.options)),
              KIND_DIR, field_=where, what=sub)
    if v2 is not None and v2.mountpoint != CGROUP_ROOT:
        sub = posixpath.join(dest, "unified")
        b.add(OP_MOUNT_FS, "cgroup2", "cgroup2", sub, attr, 0, b"", KIND_DIR, field_=where,
              what=sub)
