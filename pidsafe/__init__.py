"""pidsafe: processes, user namespaces and idmapped mounts with no pid races.

Every process pidsafe touches is held by a pidfd from birth
(``clone3(CLONE_PIDFD)``) to reaping (``waitid(P_PIDFD)``), so a recycled pid
can never be signalled, waited on or opened by mistake.
"""

from .errors import TimeoutExpired, UnsupportedError
from ._fd import OwnedFd
from .userns._idmap import IDMap, IDMapError, IDRange
from .mount._mount import MountError, idmapped_bind
from ._features import Features, features
from .reaper._claim import Claim
from .process._process import Process
from .reaper._reaper import Reaper
from .mount._rootfs import InvalidMountError, Mount, mount_all, unmount_all
from .process._spawn import DEVNULL, PIPE, STDOUT, spawn
from .state._statefile import StateError, StateFile
from .reaper._subscription import (Exit, ReaperError, Subscription, SubscriptionClosed,
                            SubscriptionOverflow)
from .userns._userns import HelperDiedError, Namespace, UsernsCache, get_userns_fd
from ._version import __version__

__all__ = [
    "Claim",
    "DEVNULL",
    "Exit",
    "Features",
    "HelperDiedError",
    "IDMap",
    "IDMapError",
    "IDRange",
    "InvalidMountError",
    "Mount",
    "MountError",
    "Namespace",
    "OwnedFd",
    "PIPE",
    "Process",
    "Reaper",
    "ReaperError",
    "STDOUT",
    "StateError",
    "StateFile",
    "Subscription",
    "SubscriptionClosed",
    "SubscriptionOverflow",
    "TimeoutExpired",
    "UnsupportedError",
    "UsernsCache",
    "__version__",
    "features",
    "get_userns_fd",
    "idmapped_bind",
    "mount_all",
    "spawn",
    "unmount_all",
]
