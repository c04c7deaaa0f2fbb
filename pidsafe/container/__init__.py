"""pidsafe.container: OCI containers in-process (see DESIGN.md, "Layers").

``load_spec(bundle)`` reads and checks a bundle's ``config.json`` into
typed, frozen dataclasses (:class:`Spec`), refusing by JSON path every
field pidsafe does not implement.  :class:`Cgroup` is a container's cgroup
on cgroup v1, v2 or both (hybrid).
"""

from ._cgroup_layout import CgroupLayout
from ._cgroup_stats import CgroupStats
from ._cgroups import Cgroup
from ._config import MountSpec, Root, Spec, load_spec, parse_spec
from ._config_linux import (CpuLimits, Device, DeviceRule, LinuxSpec, MemoryLimits,
                            NamespaceSpec, Resources)
from ._config_process import Capabilities, ProcessSpec, Rlimit, User

__all__ = ["Capabilities", "Cgroup", "CgroupLayout", "CgroupStats", "CpuLimits", "Device",
           "DeviceRule", "LinuxSpec", "MemoryLimits", "MountSpec", "NamespaceSpec",
           "ProcessSpec", "Resources", "Rlimit", "Root", "Spec", "User", "load_spec",
           "parse_spec"]
