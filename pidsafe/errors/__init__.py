"""Every exception pidsafe raises of its own.

System errors are plain ``OSError`` subclasses chosen by errno (see
``_sys.make_oserror``); the types here add what errno cannot say.  Each
keeps a builtin base (``ValueError``, ``OSError``, ``RuntimeError`` ...) so
that existing handlers catch it, and every one is also a
:class:`pidsafe.Error`, so ``except pidsafe.Error`` catches all of
pidsafe's own.

The exceptions live in modules by what they are about: ``_base`` (``Error``,
``UnsupportedError``, ``PrivilegeError``, the errno-crossed classes),
``_process`` (waits, recorded processes, state files), ``_reaper``,
``_mount`` (user namespaces, mounts), ``_container``, ``_config`` (a
container's config), ``_cgroup`` and ``_frontends`` (the command lines,
the shim's wire).  This face is where every one is found, and what each
names as its ``__module__``, so pickle, ``repr`` and ``help()`` see one
module.  Names load on first use (PEP 562): ``pidsafe-runc`` pays only for
the families it touches.  The package is a leaf: it imports no layer of
pidsafe.
"""

from .._lazy import exports

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from ._base import Error, PrivilegeError, UnsupportedError, note, privilege_error
    from ._cgroup import CgroupError, cgroup_error
    from ._config import ConfigError, IgnoredConfigWarning, UnsupportedConfigError
    from ._container import (ContainerError, ContainerLookupError, ContainerStateError,
                             HookError, container_error, hook_error)
    from ._frontends import ConnectionClosedError, DecodeError, RpcError, UsageError
    from ._mount import HelperDiedError, IDMapError, InvalidMountError, MountError, mount_error
    from ._process import CalledProcessError, StaleProcessError, StateError, TimeoutExpired
    from ._reaper import (ForeignChildWarning, ReaperError, SubscriptionClosed,
                          SubscriptionOverflow)

#: Name -> the module that defines it.  The underscore names are what
#: pickle calls to rebuild an exception (found here, as before the split),
#: and the shim's code names.
_EXPORTS = {
    "Error": "._base",
    "PrivilegeError": "._base",
    "UnsupportedError": "._base",
    "note": "._base",
    "privilege_error": "._base",
    "_rebuild_privilege_error": "._base",
    "CalledProcessError": "._process",
    "ForeignChildWarning": "._reaper",
    "ReaperError": "._reaper",
    "StaleProcessError": "._process",
    "StateError": "._process",
    "SubscriptionClosed": "._reaper",
    "SubscriptionOverflow": "._reaper",
    "TimeoutExpired": "._process",
    "HelperDiedError": "._mount",
    "IDMapError": "._mount",
    "InvalidMountError": "._mount",
    "MountError": "._mount",
    "mount_error": "._mount",
    "_rebuild_mount_error": "._mount",
    "ConfigError": "._config",
    "ContainerError": "._container",
    "ContainerLookupError": "._container",
    "ContainerStateError": "._container",
    "HookError": "._container",
    "IgnoredConfigWarning": "._config",
    "UnsupportedConfigError": "._config",
    "container_error": "._container",
    "hook_error": "._container",
    "_rebuild_container_error": "._container",
    "_rebuild_hook_error": "._container",
    "CgroupError": "._cgroup",
    "cgroup_error": "._cgroup",
    "_rebuild_cgroup_error": "._cgroup",
    "ConnectionClosedError": "._frontends",
    "DecodeError": "._frontends",
    "RpcError": "._frontends",
    "UsageError": "._frontends",
    "_RPC_CODE_NAMES": "._frontends",
}

__getattr__, __dir__ = exports(__name__, _EXPORTS)

__all__ = [
    "CalledProcessError", "CgroupError", "ConfigError", "ConnectionClosedError",
    "ContainerError", "ContainerLookupError", "ContainerStateError", "DecodeError", "Error",
    "ForeignChildWarning", "HelperDiedError", "HookError", "IDMapError", "IgnoredConfigWarning",
    "InvalidMountError",
    "MountError", "PrivilegeError", "ReaperError", "RpcError", "StaleProcessError",
    "StateError", "SubscriptionClosed", "SubscriptionOverflow", "TimeoutExpired",
    "UnsupportedConfigError", "UnsupportedError", "UsageError", "cgroup_error",
    "container_error", "hook_error", "mount_error", "note", "privilege_error",
]
