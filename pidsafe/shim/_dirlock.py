"""The lock on the shim socket directory, shared by ``start`` and the daemon.

``start`` holds it while it finds (and joins) or makes a group's daemon;
a daemon holds it while it decides to close and removes its socket
(``_group``).  Imports only ``os`` and ``fcntl``: ``start`` is on
``ctr run``'s critical path.
"""

from __future__ import annotations

import fcntl
import os


def lock_dir(directory: str) -> int:
    """``flock`` (exclusive) ``directory``; the fd to close to unlock it.

    Raises:
        OSError: it cannot be opened or locked.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd
