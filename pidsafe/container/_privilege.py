"""What creating a container needs, checked before anything is made.

pidsafe creates containers as root only: it mounts, makes namespaces that
the host's user namespace owns, writes cgroups and execs pidsafe-init as
host root.  Without ``CAP_SYS_ADMIN`` the first of those steps would fail
with a bare ``EPERM``/``EACCES`` (a cgroup directory, say), after the
state file and lock were made; :func:`require_root` says so up front, in a
:class:`pidsafe.PrivilegeError` naming the operation and the capability.
"""

from __future__ import annotations

from .. import _sys
from ..errors import privilege_error

#: What creating a container takes, and what for.
NEEDS = "CAP_SYS_ADMIN (root)"
WHY = "mounts, namespaces and cgroups; pidsafe has no rootless mode"


def require_root(operation: str) -> None:
    """Raise :class:`pidsafe.PrivilegeError` if the caller lacks ``CAP_SYS_ADMIN``.

    Raises:
        PrivilegeError: the caller lacks ``CAP_SYS_ADMIN``; nothing was done.
        OSError: capget(2) failed (it cannot for the calling thread; if it
            did, nothing was done either).
    """
    if not _sys.capget().has("SYS_ADMIN"):
        raise privilege_error(operation, NEEDS, WHY)
