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
    from .container._console import Terminal, receive_terminal
    from .container._container import Container
    from .errors import (CgroupError, ConfigError, ContainerError, ContainerLookupError,
                         ContainerStateError, Error, ForeignChildWarning, HelperDiedError,
                         HookError,
                         IDMapError, InvalidMountError, MountError, ReaperError, StaleProcessError,
                         StateError, SubscriptionClosed, SubscriptionOverflow, TimeoutExpired,
                         UnsupportedConfigError, UnsupportedError, UsageError)
    from .mount._mount import idmapped_bind
    from .mount._mounted import MountRecord, Mounted
    from .mount._rootfs import mount_all
    from .mount._spec import Mount
    from .mount._unmount_all import unmount_all
    from .process._identity import ProcessIdentity
    from .userns import Namespace
    from .process._process import Process
    from .process._spawn import DEVNULL, PIPE, STDOUT, spawn
    from .reaper._claim import Claim
    from .reaper._reaper import Reaper
    from .reaper._subscription import Exit, Subscription
    from .state._statefile import StateFile
    from .userns._idmap import IDMap, IDRange
    from .userns import UsernsCache, get_userns_fd

_EXPORTS = {
    "CgroupError": ".errors",
    "Claim": ".reaper._claim",
    "ConfigError": ".errors",
    "Container": ".container._container",
    "ContainerError": ".errors",
    "ContainerLookupError": ".errors",
    "ContainerStateError": ".errors",
    "DEVNULL": ".process._spawn",
    "Error": ".errors",
    "Exit": ".reaper._subscription",
    "Features": "._features",
    "ForeignChildWarning": ".errors",
    "HelperDiedError": ".errors",
    "HookError": ".errors",
    "IDMap": ".userns._idmap",
    "IDMapError": ".errors",
    "IDRange": ".userns._idmap",
    "InvalidMountError": ".errors",
    "Mount": ".mount._spec",
    "MountError": ".errors",
    "MountRecord": ".mount._mounted",
    "Mounted": ".mount._mounted",
    "Namespace": ".userns",
    "OwnedFd": "._fd",
    "PIPE": ".process._spawn",
    "Process": ".process._process",
    "ProcessIdentity": ".process._identity",
    "Reaper": ".reaper._reaper",
    "ReaperError": ".errors",
    "STDOUT": ".process._spawn",
    "StaleProcessError": ".errors",
    "StateError": ".errors",
    "StateFile": ".state._statefile",
    "Subscription": ".reaper._subscription",
    "SubscriptionClosed": ".errors",
    "SubscriptionOverflow": ".errors",
    "Terminal": ".container._console",
    "TimeoutExpired": ".errors",
    "UnsupportedConfigError": ".errors",
    "UnsupportedError": ".errors",
    "UsageError": ".errors",
    "UsernsCache": ".userns",
    "features": "._features",
    "get_userns_fd": ".userns",
    "idmapped_bind": ".mount._mount",
    "mount_all": ".mount._rootfs",
    "receive_terminal": ".container._console",
    "spawn": ".process._spawn",
    "unmount_all": ".mount._unmount_all",
}


__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)


__all__ = [
    "CgroupError",
    "Claim",
    "Container",
    "ConfigError",
    "ContainerError",
    "ContainerLookupError",
    "ContainerStateError",
    "DEVNULL",
    "Error",
    "Exit",
    "Features",
    "ForeignChildWarning",
    "HelperDiedError",
    "HookError",
    "IDMap",
    "IDMapError",
    "IDRange",
    "InvalidMountError",
    "Mount",
    "MountError",
    "MountRecord",
    "Mounted",
    "Namespace",
    "OwnedFd",
    "PIPE",
    "Process",
    "ProcessIdentity",
    "Reaper",
    "ReaperError",
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
    "features",
    "get_userns_fd",
    "idmapped_bind",
    "mount_all",
    "receive_terminal",
    "spawn",
    "unmount_all",
]
