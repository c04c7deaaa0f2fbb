"""pidsafe: processes, user namespaces and idmapped mounts with no pid races.

Every process pidsafe touches is held by a pidfd from birth
(``clone3(CLONE_PIDFD)``) to reaping (``waitid(P_PIDFD)``), so a recycled pid
can never be signalled, waited on or opened by mistake.
"""

from ._fd import OwnedFd
from ._features import Features, features
from ._version import __version__
from .container._container import Container
from .errors import (CgroupError, ConfigError, ContainerError, ContainerLookupError,
                     ContainerStateError, Error, ForeignChildWarning, HelperDiedError,
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
    "spawn",
    "unmount_all",
]
