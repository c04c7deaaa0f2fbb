"""pidsafe.container.config: an OCI bundle's ``config.json`` as a typed spec.

:func:`load_spec` (or :func:`read_config`, which also returns the document)
reads and checks ``config.json`` into typed, frozen records (:class:`Spec`,
:class:`LinuxSpec`, :class:`ProcessSpec`, :class:`Hooks`, ...), refusing by
JSON path every field pidsafe does not implement and listing the ones it
ignores.  Nothing here touches the kernel: the cgroup and init layers take
the records from here.

_spec.py       Spec, Root, MountSpec; load_spec, parse_spec, read_config
_process.py    process (and an exec's process.json): user, capabilities, rlimits
_linux.py      linux: namespaces, maps, devices, resources, paths, sysctl
_seccomp.py    linux.seccomp: actions, operators, architectures, flags
_hooks.py      hooks
_reader.py     reading JSON with a path for every value; what is ignored
_spec_keys.py  the properties runtime-spec defines, object by object
_lsm.py        whether SELinux or AppArmor is on, for the messages that refuse labels

Names load on first use (pidsafe/_lazy.py), as in :mod:`pidsafe.container`.
"""

from ... import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._hooks import Hook, Hooks
    from ._linux import (NAMESPACE_TYPES, CpuLimits, Device, DeviceRule, LinuxSpec,
                         MemoryLimits, NamespaceSpec, Resources, parse_resources)
    from ._process import CAPABILITIES, Capabilities, ProcessSpec, Rlimit, User, parse_process
    from ._reader import (OTHER_PLATFORMS, JsonObject, check_env, check_ignored,
                          ignored_properties)
    from ._seccomp import (ACTIONS, ARCHITECTURES, ERRNO_ACTIONS, FLAGS, OPERATORS, SeccompSpec,
                           SeccompSyscall)
    from ._spec import MountSpec, Root, Spec, load_spec, parse_spec, read_config

_EXPORTS = {
    "ACTIONS": "._seccomp",
    "ARCHITECTURES": "._seccomp",
    "CAPABILITIES": "._process",
    "Capabilities": "._process",
    "CpuLimits": "._linux",
    "Device": "._linux",
    "DeviceRule": "._linux",
    "ERRNO_ACTIONS": "._seccomp",
    "FLAGS": "._seccomp",
    "Hook": "._hooks",
    "Hooks": "._hooks",
    "JsonObject": "._reader",
    "LinuxSpec": "._linux",
    "MemoryLimits": "._linux",
    "MountSpec": "._spec",
    "NAMESPACE_TYPES": "._linux",
    "NamespaceSpec": "._linux",
    "OPERATORS": "._seccomp",
    "OTHER_PLATFORMS": "._reader",
    "ProcessSpec": "._process",
    "Resources": "._linux",
    "Rlimit": "._process",
    "Root": "._spec",
    "SeccompSpec": "._seccomp",
    "SeccompSyscall": "._seccomp",
    "Spec": "._spec",
    "User": "._process",
    "check_env": "._reader",
    "ignored_properties": "._reader",
    "check_ignored": "._reader",
    "load_spec": "._spec",
    "parse_process": "._process",
    "parse_resources": "._linux",
    "parse_spec": "._spec",
    "read_config": "._spec",
}

__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)

__all__ = ["ACTIONS", "ARCHITECTURES", "CAPABILITIES", "Capabilities", "CpuLimits", "Device",
           "DeviceRule", "ERRNO_ACTIONS", "FLAGS", "Hook", "Hooks", "JsonObject", "LinuxSpec",
           "MemoryLimits", "MountSpec", "NAMESPACE_TYPES", "NamespaceSpec", "OPERATORS",
           "OTHER_PLATFORMS", "ProcessSpec", "Resources", "Rlimit", "Root", "SeccompSpec",
           "SeccompSyscall", "Spec", "User", "check_env", "check_ignored", "ignored_properties",
           "load_spec", "parse_process", "parse_resources", "parse_spec", "read_config"]
