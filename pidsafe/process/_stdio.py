"""A child's stdio: a caller's stdio argument read once, our ends of its pipes.

Shared by :func:`pidsafe.spawn` and the container layer's processes.
"""

from __future__ import annotations

import errno
import io
import os

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import IO, Any, List, Optional, Sequence, Union

    #: What stdin/stdout/stderr accept: None (inherit), an fd, a file object,
    #: subprocess.PIPE, subprocess.DEVNULL, and (stderr only) subprocess.STDOUT.
    StdioArg = Union[None, int, IO[Any]]


def stdio_fd(value: StdioArg, name: str) -> int:
    """The fd number behind a caller's stdio argument (not PIPE/DEVNULL)."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be None, an fd, a file object, PIPE or DEVNULL")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name}: bad file descriptor {value}")
        return value
    fileno = getattr(value, "fileno", None)
    if fileno is None:
        raise TypeError(f"{name} must be None, an fd, a file object, PIPE or DEVNULL, "
                        f"not {type(value).__name__}")
    try:
        fd = fileno()
    except (ValueError, OSError) as exc:  # closed, or no fd behind it (BytesIO)
        raise ValueError(f"{name}: {value!r} has no usable fileno(): {exc}") from None
    if not isinstance(fd, int) or fd < 0:
        raise ValueError(f"{name}: fileno() gave {fd!r}")
    return fd


def open_pipe_files(parent_fds: Sequence[int], modes: Sequence[str],
                    bufsize: int) -> List[Optional[IO[bytes]]]:
    """File objects for the parent's ends of stdio pipes (-1: none).

    Takes ownership of every fd in ``parent_fds``, also when it raises: then
    each fd is closed exactly once, by its file object if one was made (a
    second close could hit an fd number another thread has reused since).
    """
    out: List[Optional[IO[bytes]]] = []
    try:
        for fd, mode in zip(parent_fds, modes):
            out.append(None if fd < 0 else io.open(fd, mode, bufsize))
    except BaseException:
        for f in out:
            if f is not None:
                f.close()
        for i, fd in enumerate(parent_fds[len(out):]):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError as exc:
                # io.open() closes the fd itself if it fails after making
                # the raw file: only the fd it failed on can be gone.
                if i != 0 or exc.errno != errno.EBADF:
                    raise
        raise
    return out
