"""Changing a live cgroup's limits (``runc update``): all or nothing.

:meth:`Cgroup.update <._cgroup.Cgroup.update>`: each file's setting is read
before it is written, and written and recorded as one step, so that a
failed write (or a signal handler raising) puts back every file already
changed; the record of what was changed is returned for a caller whose own
next step fails (:func:`._files.put_back`).
"""

from __future__ import annotations

import errno

from ..._sigsafe import critical
from ...errors import UnsupportedConfigError, cgroup_error
from ._files import CgroupDir, current_setting, put_back, read_optional, write_file
from ._layout import CgroupLayout
from ._resources import device_filter_on_v2, plan

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Mapping, Optional

    from ..config import Resources
    from ._files import Previous


def update_limits(v1: Mapping[str, CgroupDir], v2: Optional[CgroupDir], resources: Resources,
                  layout: CgroupLayout) -> List[Previous]:
    """Apply ``resources`` to the cgroup of directories ``v1`` and ``v2``.

    Returns:
        The writes that put every changed file back.

    Raises:
        ConfigError, UnsupportedConfigError: as for ``Cgroup.create``.
        CgroupError: a write failed; nothing is left changed.
    """
    if device_filter_on_v2(layout, resources):
        raise UnsupportedConfigError("linux.resources.devices", "changing device rules on "
                                     "cgroup v2 (its eBPF filter is set at creation)")
    mem = layout.v1_for("memory")
    memsw = None
    if mem is not None and mem.key in v1:
        text = read_optional(v1[mem.key].file("memory.memsw.limit_in_bytes"))
        memsw = int(text) if text else None
    previous: List[Previous] = []
    try:
        for w in plan(layout, resources, memsw_now=memsw):
            d = v2 if w.hierarchy.v2 else v1.get(w.hierarchy.key)
            if d is None:
                raise cgroup_error(errno.ENOENT, f"the cgroup has no {w.hierarchy.key} "
                                                 f"directory for {w.field}")
            path = d.file(w.file)
            old = current_setting(path)
            with critical:   # written and recorded as one step
                write_file(path, w.value, w.field)
                if old is not None:
                    previous.append((path, old, w.field))
    except BaseException as exc:
        put_back(previous, exc)
        raise
    return previous
