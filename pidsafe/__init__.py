"""pidsafe: processes, user namespaces and idmapped mounts with no pid races.

Every process pidsafe touches is held by a pidfd from birth
(``clone3(CLONE_PIDFD)``) to reaping (``waitid(P_PIDFD)``), so a recycled pid
can never be signalled, waited on or opened by mistake.

Names are imported on first use (PEP 562): a program that needs one layer
(``pidsafe-runc`` needs the container layer, not the reaper) does not pay
for the others at start-up.
"""

from . import _lazy
from ._version import __version__

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._fd import OwnedFd
    from ._features import Features, features
    from .container import Container, Terminal, receive_terminal
    from .errors import (CalledProcessError, CgroupError, ConfigError, ConnectionClosedError,
                         ContainerError, ContainerLookupError, ContainerStateError, DecodeError,
                         Error, ForeignChildWarning, HelperDiedError, HookError,
                         IDMapError, IgnoredConfigWarning, InvalidMountError, MountError,
                         PrivilegeError, ReaperError, RpcError,
                         StaleProcessError, StateError, SubscriptionClosed, SubscriptionOverflow,
                         TimeoutExpired, UnsupportedConfigError, UnsupportedError, UsageError)
    from .mount import Mount, MountRecord, Mounted, idmapped_bind, mount_all, unmount_all
    from .process import (DEVNULL, PIPE, STDOUT, AsyncProcess, CompletedProcess, Process,
                          ProcessIdentity, create_subprocess_exec, create_subprocess_shell, run,
                          spawn)
    from .reaper import Claim, Exit, Reaper, Subscription
    from .state import StateFile
    from .userns import IDMap, IDRange, Namespace, UsernsCache, get_userns_fd

_EXPORTS = {
    "AsyncProcess": ".process",
    "CalledProcessError": ".errors",
    "CgroupError": ".errors",
    "Claim": ".reaper",
    "CompletedProcess": ".process",
    "ConfigError": ".errors",
    "ConnectionClosedError": ".errors",
    "Container": ".container",
    "ContainerError": ".errors",
    "ContainerLookupError": ".errors",
    "ContainerStateError": ".errors",
    "DEVNULL": ".process",
    "DecodeError": ".errors",
    "Error": ".errors",
    "Exit": ".reaper",
    "Features": "._features",
    "ForeignChildWarning": ".errors",
    "HelperDiedError": ".errors",
    "HookError": ".errors",
    "IDMap": ".userns",
    "IDMapError": ".errors",
    "IDRange": ".userns",
    "IgnoredConfigWarning": ".errors",
    "InvalidMountError": ".errors",
    "Mount": ".mount",
    "MountError": ".errors",
    "MountRecord": ".mount",
    "Mounted": ".mount",
    "Namespace": ".userns",
    "OwnedFd": "._fd",
    "PIPE": ".process",
    "PrivilegeError": ".errors",
    "Process": ".process",
    "ProcessIdentity": ".process",
    "Reaper": ".reaper",
    "ReaperError": ".errors",
    "RpcError": ".errors",
    "STDOUT": ".process",
    "StaleProcessError": ".errors",
    "StateError": ".errors",
    "StateFile": ".state",
    "Subscription": ".reaper",
    "SubscriptionClosed": ".errors",
    "SubscriptionOverflow": ".errors",
    "Terminal": ".container",
    "TimeoutExpired": ".errors",
    "UnsupportedConfigError": ".errors",
    "UnsupportedError": ".errors",
    "UsageError": ".errors",
    "UsernsCache": ".userns",
    "create_subprocess_exec": ".process",
    "create_subprocess_shell": ".process",
    "features": "._features",
    "get_userns_fd": ".userns",
    "idmapped_bind": ".mount",
    "mount_all": ".mount",
    "receive_terminal": ".container",
    "run": ".process",
    "spawn": ".process",
    "unmount_all": ".mount",
}


__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)


__all__ = [
    "AsyncProcess",
    "CalledProcessError",
    "CgroupError",
    "Claim",
    "CompletedProcess",
    "Container",
    "ConfigError",
    "ConnectionClosedError",
    "ContainerError",
    "ContainerLookupError",
    "ContainerStateError",
    "DEVNULL",
    "DecodeError",
    "Error",
    "Exit",
    "Features",
    "ForeignChildWarning",
    "HelperDiedError",
    "HookError",
    "IDMap",
    "IDMapError",
    "IDRange",
    "IgnoredConfigWarning",
    "InvalidMountError",
    "Mount",
    "MountError",
    "MountRecord",
    "Mounted",
    "Namespace",
    "OwnedFd",
    "PIPE",
    "PrivilegeError",
    "Process",
    "ProcessIdentity",
    "Reaper",
    "ReaperError",
    "RpcError",
    "STDOUT",
    "StaleProcessError",
    "StateError",
    "StateFile",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionOverflow",
    "Terminal",
    "TimeoutExpired",
    "UnsupportedConfigError",
    "UnsupportedError",
    "UsageError",
    "UsernsCache",
    "__version__",
    "create_subprocess_exec",
    "create_subprocess_shell",
    "features",
    "get_userns_fd",
    "idmapped_bind",
    "mount_all",
    "receive_terminal",
    "run",
    "spawn",
    "unmount_all",
]
