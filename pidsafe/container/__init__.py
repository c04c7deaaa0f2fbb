"""pidsafe.container: OCI containers in-process (see DESIGN.md, "Layers").

``load_spec(bundle)`` reads and checks a bundle's ``config.json`` into
typed, frozen records (:class:`Spec`), refusing by JSON path every
field pidsafe does not implement.  :class:`Cgroup` is a container's cgroup
on cgroup v1, v2 or both (hybrid).  :class:`Container` (re-exported by
:mod:`pidsafe`, with :class:`Terminal` and :func:`receive_terminal`) is one
container's lifecycle.  For pidsafe-runc: the config reader's
:class:`JsonObject`, :func:`ignored_properties` and ``OTHER_PLATFORMS``,
:func:`parse_process`, and what ``features`` lists (``CAPABILITIES``,
``NAMESPACE_TYPES``, :func:`seccomp_features`).

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
    from ._config_linux import (NAMESPACE_TYPES, CpuLimits, Device, DeviceRule, LinuxSpec,
                                MemoryLimits, NamespaceSpec, Resources)
    from ._config_process import (CAPABILITIES, Capabilities, ProcessSpec, Rlimit, User,
                                  parse_process)
    from ._console import Terminal, receive_terminal
    from ._container import Container
    from ._reader import OTHER_PLATFORMS, JsonObject, ignored_properties
    from ._seccomp import seccomp_features

_EXPORTS = {
    "CAPABILITIES": "._config_process",
    "Capabilities": "._config_process",
    "Cgroup": "._cgroups",
    "CgroupLayout": "._cgroup_layout",
    "CgroupStats": "._cgroup_stats",
    "Container": "._container",
    "CpuLimits": "._config_linux",
    "Device": "._config_linux",
    "DeviceRule": "._config_linux",
    "JsonObject": "._reader",
    "LinuxSpec": "._config_linux",
    "MemoryLimits": "._config_linux",
    "MountSpec": "._config",
    "NAMESPACE_TYPES": "._config_linux",
    "NamespaceSpec": "._config_linux",
    "OTHER_PLATFORMS": "._reader",
    "ProcessSpec": "._config_process",
    "Resources": "._config_linux",
    "Rlimit": "._config_process",
    "Root": "._config",
    "Spec": "._config",
    "Terminal": "._console",
    "User": "._config_process",
    "ignored_properties": "._reader",
    "load_spec": "._config",
    "parse_process": "._config_process",
    "parse_spec": "._config",
    "receive_terminal": "._console",
    "seccomp_features": "._seccomp",
}

__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)


__all__ = ["CAPABILITIES", "Capabilities", "Cgroup", "CgroupLayout", "CgroupStats", "Container",
           "CpuLimits", "Device", "DeviceRule", "JsonObject", "LinuxSpec", "MemoryLimits",
           "MountSpec", "NAMESPACE_TYPES", "NamespaceSpec", "OTHER_PLATFORMS", "ProcessSpec",
           "Resources", "Rlimit", "Root", "Spec", "Terminal", "User", "ignored_properties",
           "load_spec", "parse_process", "parse_spec", "receive_terminal", "seccomp_features"]
