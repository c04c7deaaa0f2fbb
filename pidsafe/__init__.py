"""pidsafe: processes, user namespaces and idmapped mounts with no pid races.

Every process pidsafe touches is held by a pidfd from birth
(``clone3(CLONE_PIDFD)``) to reaping (``waitid(P_PIDFD)``), so a recycled pid
can never be signalled, waited on or opened by mistake.
"""

from ._errors import TimeoutExpired, UnsupportedError
from ._fd import OwnedFd
from ._idmap import IDMap, IDMapError, IDRange
from ._mount import MountError, idmapped_bind
from ._features import Features, features
from ._claim import Claim
from ._process import Process
from ._reaper import Reaper
from ._rootfs import InvalidMountError, Mount, mount_all, unmount_all
from ._spawn import DEVNULL, PIPE, STDOUT, spawn
from ._state import StateError, StateFile
from ._subscription import (Exit, ReaperError, Subscription, SubscriptionClosed,
                            SubscriptionOverflow)
from ._userns import HelperDiedError, Namespace, UsernsCache, get_userns_fd
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
