"""spawn()'s namespace arguments -> what the child needs (a :class:`SpawnPlan`).

Validation only; nothing is created here.  :func:`plan_spawn` decides, per
case, whether the child execs the program directly or through the helper
(csrc/helper/) that changes credentials in memory of its own.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Optional, Tuple, Union

from .. import _sys
from .._value import Record
from ..userns import ALL_NAMESPACES, IDMap, IDMapLike, Namespace, spawn_map


class SpawnPlan(Record):
    """How spawn() sets up the child's namespaces (see :func:`plan_spawn`).

    Attributes:
        clone_flags: ``CLONE_NEW*`` for clone3 itself.
        helper: the helper's work, or ``None`` to exec the program directly.
        maps: the (uid, gid) maps to write for a new user namespace.
    """

    clone_flags: int = 0
    helper: Optional[_sys.HelperSpec] = None
    maps: Optional[Tuple[IDMap, IDMap]] = None


#: spawn() without namespace arguments.
PLAIN = SpawnPlan()


def _userns_fd_of(userns: Any) -> int:
    if isinstance(userns, bool):
        raise TypeError(f"userns must be a user namespace fd or an object with fileno(), "
                        f"not {userns!r}")
    if isinstance(userns, int):
        fd = userns
    elif hasattr(userns, "fileno"):
        fd = userns.fileno()
    else:
        raise TypeError(f"userns must be a user namespace fd or an object with fileno(), "
                        f"not {type(userns).__name__}")
    try:
        nstype = _sys.ns_type(fd)
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EINVAL):  # EBADF, ...
            raise _sys.make_oserror(exc.errno or errno.EIO, f"userns: fd {fd}") from None
        raise ValueError(f"userns: fd {fd} is not a namespace fd "
                         f"({os.strerror(exc.errno or 0)})") from None
    if nstype != _sys.CLONE_NEWUSER:
        raise ValueError(f"userns: fd {fd} is a namespace, but not a user namespace "
                         f"(type {nstype:#x})")
    return int(fd)


def plan_spawn(userns: Any, uidmap: Optional[IDMapLike], gidmap: Optional[IDMapLike],
               namespaces: Union[Namespace, int]) -> SpawnPlan:
    """Validate spawn()'s namespace arguments; nothing is created here.

    Three designs, one per case.  None copies our address space, and none
    changes credentials in a child that shares it (invariant 8):

    * ``uidmap``/``gidmap``: the child comes from
      clone3(CLONE_NEWUSER|namespaces|CLONE_VM|CLONE_VFORK|CLONE_PIDFD) and
      execs the helper at once.  The helper waits while we write the maps
      (open, prove, write, as for get_userns_fd), then becomes root of the
      namespace and execs the program (pidsafe/process/_child.py, run by _start.py).
      Creating every namespace in the same clone3 makes them all owned by
      the new user namespace, and makes the child pid 1 of a new pid
      namespace.
    * ``userns``: the child execs the helper, which joins the namespace with
      setns(), makes the other namespaces with unshare() (so the joined
      namespace owns them), becomes its root and execs the program.  A new
      pid namespace cannot be made that way for the process itself, so
      NEWPID is refused with ``userns`` (create the user namespace with
      ``uidmap`` instead).
    * neither: namespaces come from the clone3 itself, owned by our user
      namespace; no helper.

    In a user namespace the child becomes its uid and gid 0 where the maps
    give it one (as ``nsenter --user`` and ``unshare --map-root-user`` do).

    Raises:
        ValueError, TypeError: bad or conflicting arguments.
        IDMapError: a bad map.
        OSError(EBADF): ``userns`` is not an open fd.
    """
    if isinstance(namespaces, bool) or not isinstance(namespaces, int):
        raise TypeError(f"namespaces must be pidsafe.Namespace flags, not {namespaces!r}")
    flags = int(namespaces)
    if flags & _sys.CLONE_NEWUSER:
        raise ValueError("namespaces: a user namespace is made with uidmap= and gidmap= "
                         "(or joined with userns=), not with a flag")
    if flags & ~ALL_NAMESPACES:
        raise ValueError(f"namespaces: unknown flags {flags & ~ALL_NAMESPACES:#x} "
                         f"(use pidsafe.Namespace)")
    if (uidmap is None) != (gidmap is None):
        raise ValueError("uidmap and gidmap go together: give both or neither")
    if userns is not None and uidmap is not None:
        raise ValueError("give either userns= (join a user namespace) or uidmap=/gidmap= "
                         "(make one), not both")
    if uidmap is not None:
        assert gidmap is not None
        um = spawn_map(uidmap, "uidmap")
        gm = spawn_map(gidmap, "gidmap")
        return SpawnPlan(clone_flags=flags | _sys.CLONE_NEWUSER,
                         helper=_sys.HelperSpec(new_userns=True), maps=(um, gm))
    if userns is not None:
        if flags & _sys.CLONE_NEWPID:
            raise ValueError("namespaces=NEWPID cannot be combined with userns=: a pid "
                             "namespace made after joining would hold only the child's "
                             "children; use uidmap=/gidmap= to make the user namespace "
                             "together with the pid namespace")
        return SpawnPlan(helper=_sys.HelperSpec(userns_fd=_userns_fd_of(userns),
                                                unshare_flags=flags))
    return SpawnPlan(clone_flags=flags) if flags else PLAIN
