"""pidsafe.container: OCI containers in-process (see DESIGN.md, "Layers").

``load_spec(bundle)`` reads and checks a bundle's ``config.json`` into
typed, frozen dataclasses (:class:`Spec`), refusing by JSON path every
field pidsafe does not implement.
"""

from ._config import MountSpec, Root, Spec, load_spec, parse_spec
from ._config_linux import (CpuLimits, Device, DeviceRule, LinuxSpec, MemoryLimits,
                            NamespaceSpec, Resources)
from ._config_process import Capabilities, ProcessSpec, Rlimit, User

__all__ = ["Capabilities", "CpuLimits", "Device", "DeviceRule", "LinuxSpec", "MemoryLimits",
           "MountSpec", "NamespaceSpec", "ProcessSpec", "Resources", "Rlimit", "Root", "Spec",
           "User", "load_spec", "parse_spec"]
