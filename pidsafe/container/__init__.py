"""pidsafe.container: OCI containers in-process (see DESIGN.md, "Layers").

``load_spec(bundle)`` reads and checks a bundle's ``config.json`` into
typed, frozen records (:class:`Spec`), refusing by JSON path every
field pidsafe does not implement.  :class:`Cgroup` is a container's cgroup
on cgroup v1, v2 or both (hybrid).

Names are imported on first use (pidsafe/_lazy.py): importing
``pidsafe.container._container`` for ``Container.load`` (pidsafe-runc's
start, state, kill, delete) runs this file first, and must not pay for the
config parser and the cgroup layer.
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._cgroup_layout import CgroupLayout
    from ._cgroup_stats import CgroupStats
    from ._cgroups import Cgroup
    from ._config import MountSpec, Root, Spec, load_spec, parse_spec
    from ._config_linux import (CpuLimits, Device, DeviceRule, LinuxSpec, MemoryLimits,
                                NamespaceSpec, Resources)
    from ._config_process import Capabilities, ProcessSpec, Rlimit, User

_EXPORTS = {
    "Capabilities": "._config_process",
    "Cgroup": "._cgroups",
    "CgroupLayout": "._cgroup_layout",
    "CgroupStats": "._cgroup_stats",
    "CpuLimits": "._config_linux",
    "Device": "._config_linux",
    "DeviceRule": "._config_linux",
    "LinuxSpec": "._config_linux",
    "MemoryLimits": "._config_linux",
    "MountSpec": "._config",
    "NamespaceSpec": "._config_linux",
    "ProcessSpec": "._config_process",
    "Resources": "._config_linux",
    "Rlimit": "._config_process",
    "Root": "._config",
    "Spec": "._config",
    "User": "._config_process",
    "load_spec": "._config",
    "parse_spec": "._config",
}

__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)


__all__ = ["Capabilities", "Cgroup", "CgroupLayout", "CgroupStats", "CpuLimits", "Device",
           "DeviceRule", "LinuxSpec", "MemoryLimits", "MountSpec", "NamespaceSpec",
           "ProcessSpec", "Resources", "Rlimit", "Root", "Spec", "User", "load_spec",
           "parse_spec"]
