"""Namespaces: joining one from the calling thread, telling an fd's type."""

from __future__ import annotations

from ._core import _retry, lib


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread (a pidfd as ``fd`` since Linux 5.8).

    With ``CLONE_NEWPID`` it changes only the thread's pid namespace for its
    future children (csrc/native/ns.h).

    Raises:
        PermissionError: not allowed to join.
        OSError: ``EINVAL`` for a namespace the thread cannot join.
    """
    _retry("setns", lib.pidsafe_setns, fd, nstype)


def ns_type(fd: int) -> int:
    """ioctl(NS_GET_NSTYPE) (ioctl_ns(2), Linux 4.11): the ``CLONE_NEW*`` type of ``fd``.

    Raises:
        OSError: ``ENOTTY`` (or ``EINVAL``): ``fd`` is not a namespace file;
            ``EBADF``.
    """
    return _retry("ioctl(NS_GET_NSTYPE)", lib.pidsafe_ns_type, fd)
