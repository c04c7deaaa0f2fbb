"""Terminals: what a pty master is."""

from __future__ import annotations

from ._core import _retry, ffi, lib


def pty_number(fd: int) -> int:
    """ioctl(TIOCGPTN) (pty(7)): the number N of a pty master's peer, /dev/pts/N.

    Raises:
        OSError: ``ENOTTY``/``EINVAL``: ``fd`` is not a pty master; ``EBADF``.
    """
    out = ffi.new("unsigned int *")
    _retry("ioctl(TIOCGPTN)", lib.pidsafe_pty_number, fd, out)
    return int(out[0])
