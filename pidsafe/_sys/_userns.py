"""The user-namespace helper child of csrc/native/userns.c."""

from __future__ import annotations

from ._core import _retry, ffi, lib

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any


def userns_helper_start(parent_pid: int, extra_flags: int = 0) -> Any:
    """Start csrc/native/userns.c's helper: a child in a new user namespace.

    clone3(CLONE_NEWUSER|CLONE_VM|CLONE_PIDFD) (Linux 5.3).  Returns the
    ``struct pidsafe_userns_helper`` (``.pid``, ``.pidfd``); hand it to
    :func:`userns_helper_free` once the helper is dead and reaped.

    Raises:
        PermissionError, OSError(ENOSPC, EUSERS): no new user namespace.
    """
    h = ffi.new("struct pidsafe_userns_helper *")
    _retry("clone3(CLONE_NEWUSER)", lib.pidsafe_userns_helper_start, h, parent_pid,
           extra_flags)
    return h


def userns_helper_free(h: Any) -> None:
    """Unmap a dead, reaped helper's stack (idempotent)."""
    _retry("munmap(helper stack)", lib.pidsafe_userns_helper_free, h)
