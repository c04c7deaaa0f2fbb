"""OwnedFd: the one way pidsafe hands out a file descriptor."""

from __future__ import annotations

import os

from . import _lite
from ._owned import Closable
from ._sigsafe import critical

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional


class OwnedFd(Closable):
    """Owns one file descriptor and closes it exactly once.

    Public pidsafe APIs never return bare ``int`` fds.  The number is thrown
    away (set to ``-1``) the moment the fd is closed or detached, so it cannot
    be used after it has been given back to the kernel and possibly reused.

    Dropping an ``OwnedFd`` that is still open closes it and warns with
    ``ResourceWarning``.
    """

    __slots__ = ("_fd", "_what", "_lock", "__weakref__")

    def __init__(self, fd: int, what: str = "fd") -> None:
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise ValueError(f"OwnedFd needs a non-negative int fd, got {fd!r}")
        self._fd = fd
        self._what = what
        self._lock = _lite.Lock()

    def fileno(self) -> int:
        """The fd number.

        Raises:
            ValueError: the fd has been closed or detached.
        """
        fd = self._fd
        if fd < 0:
            raise ValueError(f"{self._what} is closed")
        return fd

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` or :meth:`detach` has been called."""
        return self._fd < 0

    def close(self) -> None:
        """Close the fd.  Idempotent, safe to call from several threads, and
        a signal handler that raises cannot split "forget the number" from
        "close the fd" (the fd would stay open with nothing owning it)."""
        with critical:
            with self._lock:
                fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)

    def detach(self) -> int:
        """Give up ownership: return the fd number, which the caller now owns.

        Raises:
            ValueError: the fd has already been closed or detached.
        """
        with self._lock:
            fd, self._fd = self._fd, -1
        if fd < 0:
            raise ValueError(f"{self._what} is closed")
        return fd

    def dup(self) -> "OwnedFd":
        """A new close-on-exec ``OwnedFd`` for the same open file."""
        import fcntl

        return type(self)(fcntl.fcntl(self.fileno(), fcntl.F_DUPFD_CLOEXEC, 0), self._what)

    def __repr__(self) -> str:
        state = "closed" if self._fd < 0 else f"fd={self._fd}"
        return f"<{type(self).__name__} {self._what} {state}>"

    def _release_dropped(self) -> Optional[str]:
        fd = getattr(self, "_fd", -1)
        if fd < 0:
            return None
        self._fd = -1
        os.close(fd)
        return f"unclosed {self._what} (fd {fd})"
