"""pidsafe.container: OCI containers in-process (see "Layout" in README.md).

``load_spec(bundle)`` reads and checks a bundle's ``config.json`` into
typed, frozen records (:class:`Spec`), refusing by JSON path every field
pidsafe does not implement (:mod:`.config`).  :class:`Cgroup` is a
container's cgroup on cgroup v1, v2 or both, hybrid (:mod:`.cgroup`).
:mod:`.init` plans a container's init and starts it (pidsafe-init).  On
top of them, :class:`Container` (re-exported by :mod:`pidsafe`, with
:class:`Terminal` and :func:`receive_terminal`) is one container's
lifecycle.  For pidsafe-runc: the config reader's :class:`JsonObject`,
:func:`ignored_properties` and ``OTHER_PLATFORMS``, :func:`parse_process`,
and what ``features`` lists (``CAPABILITIES``, ``NAMESPACE_TYPES``,
:func:`seccomp_features`).

Names are imported on first use (pidsafe/_lazy.py): importing
``pidsafe.container._container`` for ``Container.load`` (pidsafe-runc's
start, state, kill, delete) runs this file first, and must not pay for the
config parser and the cgroup layer.
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._console import Terminal, receive_terminal
    from ._container import Container
    from ._privilege import require_root
    from .cgroup import Cgroup, CgroupLayout, CgroupStats
    from .config import (CAPABILITIES, NAMESPACE_TYPES, OTHER_PLATFORMS, Capabilities, CpuLimits,
                         Device, DeviceRule, JsonObject, LinuxSpec, MemoryLimits, MountSpec,
                         NamespaceSpec, ProcessSpec, Resources, Rlimit, Root, Spec, User,
                         ignored_properties, load_spec, parse_process, parse_spec)
    from .init import seccomp_features

_EXPORTS = {
    "CAPABILITIES": ".config",
    "Capabilities": ".config",
    "Cgroup": ".cgroup",
    "CgroupLayout": ".cgroup",
    "CgroupStats": ".cgroup",
    "Container": "._container",
    "CpuLimits": ".config",
    "Device": ".config",
    "DeviceRule": ".config",
    "JsonObject": ".config",
    "LinuxSpec": ".config",
    "MemoryLimits": ".config",
    "MountSpec": ".config",
    "NAMESPACE_TYPES": ".config",
    "NamespaceSpec": ".config",
    "OTHER_PLATFORMS": ".config",
    "ProcessSpec": ".config",
    "Resources": ".config",
    "Rlimit": ".config",
    "Root": ".config",
    "Spec": ".config",
    "Terminal": "._console",
    "User": ".config",
    "ignored_properties": ".config",
    "load_spec": ".config",
    "parse_process": ".config",
    "parse_spec": ".config",
    "receive_terminal": "._console",
    "require_root": "._privilege",
    "seccomp_features": ".init",
}

__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)


__all__ = ["CAPABILITIES", "Capabilities", "Cgroup", "CgroupLayout", "CgroupStats", "Container",
           "CpuLimits", "Device", "DeviceRule", "JsonObject", "LinuxSpec", "MemoryLimits",
           "MountSpec", "NAMESPACE_TYPES", "NamespaceSpec", "OTHER_PLATFORMS", "ProcessSpec",
           "Resources", "Rlimit", "Root", "Spec", "Terminal", "User", "ignored_properties",
           "load_spec", "parse_process", "parse_spec", "receive_terminal", "require_root",
           "seccomp_features"]
