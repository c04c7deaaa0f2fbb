"""Kernel features by name: what each is and the first kernel that has it.

A leaf module: both :mod:`pidsafe.errors` (for UnsupportedError's message)
and :mod:`pidsafe._features` (the probes) use it, so neither imports the
other.
"""

from __future__ import annotations

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

# name -> (what it is, the first kernel that has it)
FEATURES: Dict[str, Tuple[str, str]] = {
    "clone3": ("clone3(2) with a child stack", "5.3"),
    "clone_pidfd": ("clone3(CLONE_PIDFD): pid and pidfd created together", "5.3"),
    "waitid_pidfd": ("waitid(P_PIDFD): reaping through a pidfd", "5.4"),
    "pidfd_open": ("pidfd_open(2)", "5.3"),
    "pidfd_send_signal": ("pidfd_send_signal(2)", "5.1"),
    "pidfd_getfd": ("pidfd_getfd(2)", "5.6"),
    "close_range": ("close_range(2)", "5.9"),
    "mount_api": ("open_tree(2) and move_mount(2)", "5.2"),
    "mount_setattr_idmap": ("mount_setattr(2) with MOUNT_ATTR_IDMAP", "5.12"),
    "openat2": ("openat2(2) with RESOLVE_IN_ROOT", "5.6"),
    "pidfd_info_exit": ("ioctl(PIDFD_GET_INFO) with PIDFD_INFO_EXIT", "6.15"),
}

# Features :func:`pidsafe.features` does not list, named by UnsupportedError:
# probed where they are used (overlay_layer_fds, once per process), or not
# the kernel's at all (pidsafe_init: part of this install; no version).
OTHER_FEATURES: Dict[str, Tuple[str, Optional[str]]] = {
    # lowerdir+ with FSCONFIG_SET_FD came in 6.13; detached mounts as
    # layers, which pidsafe's idmapped layers are, in 6.15.
    "overlay_layer_fds": ("overlayfs layers given as fds of detached mounts", "6.15"),
    "pidsafe_init": ("pidsafe-init, the container init program installed with pidsafe",
                     None),
}


def describe(feature: str) -> str:
    """A readable name for a feature, with the kernel that brought it (if a kernel's)."""
    what, since = FEATURES.get(feature) or OTHER_FEATURES.get(feature) or (feature, None)
    return f"{what} (Linux {since})" if since else what
