"""pidsafe.container.cgroup: a container's cgroup on cgroup v1, v2 or both (hybrid).

:class:`Cgroup` is one ``linux.cgroupsPath`` made real in every hierarchy
a container needs, from creation (limits applied) to removal; processes in
it are signalled through pidfds only.  :class:`CgroupLayout` is where the
hierarchies are mounted, read at run time.  :func:`is_paused` answers from
a container's state without importing the rest of this package.

_cgroup.py       Cgroup: create, add, list, signal, freeze, update, delete
_make.py         making one: directories, controllers, cpuset, limits, device filter
_update.py       changing a live one's limits, all or nothing
_layout.py       CgroupLayout, Hierarchy; where a cgroupsPath lands in each
_resources.py    linux.resources -> control-file writes, on v1 or v2
_devices_bpf.py  device rules on v2: a BPF_PROG_TYPE_CGROUP_DEVICE program
_freezer.py      freeze and thaw (v2 cgroup.freeze, else the v1 freezer)
_signal.py       signalling every process of a cgroup through pidfds
_stats.py        usage figures (for ``runc events``)
_files.py        reading and writing cgroupfs files, each failure a CgroupError
_paused.py       whether a recorded cgroup is frozen, with plain open()

Names load on first use (pidsafe/_lazy.py), as in :mod:`pidsafe.container`.
"""

from ... import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._cgroup import Cgroup
    from ._layout import CgroupLayout
    from ._paused import is_paused
    from ._stats import CgroupStats

_EXPORTS = {
    "Cgroup": "._cgroup",
    "CgroupLayout": "._layout",
    "CgroupStats": "._stats",
    "is_paused": "._paused",
}

__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)

__all__ = ["Cgroup", "CgroupLayout", "CgroupStats", "is_paused"]
