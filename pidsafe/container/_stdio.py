"""stdin/stdout/stderr for a container's process, as ``subprocess`` spells them."""

from __future__ import annotations

import os

from .._value import Record, field
from ..process import open_pipe_files, stdio_fd

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import IO, Any, List, Optional, Tuple

# subprocess's values (tests/container/test_stdio.py checks), without its
# import: threading, selectors, locale ... ~2 ms of each pidsafe-runc create.
PIPE = -1
STDOUT = -2
DEVNULL = -3


class Stdio(Record, frozen=False):
    """The child's three fds, and what the parent keeps (pipe ends) or must close."""

    child: Tuple[int, int, int] = (-1, -1, -1)
    parent_ends: List[int] = field(default_factory=lambda: [-1, -1, -1])
    to_close: List[int] = field(default_factory=list)   # child-side fds we made

    def close_child_side(self) -> None:
        fds, self.to_close = self.to_close, []
        for fd in fds:
            os.close(fd)

    def close_all(self) -> None:
        self.close_child_side()
        ends, self.parent_ends = self.parent_ends, [-1, -1, -1]
        for fd in ends:
            if fd >= 0:
                os.close(fd)

    def files(self) -> List[Optional[IO[bytes]]]:
        """File objects for our pipe ends (they own the fds from here on)."""
        ends, self.parent_ends = self.parent_ends, [-1, -1, -1]
        return open_pipe_files(ends, ("wb", "rb", "rb"), -1)


def make_stdio(stdin: Any, stdout: Any, stderr: Any) -> Stdio:
    """Resolve the three arguments; on failure nothing stays open."""
    if stdin is STDOUT or stdout is STDOUT:
        raise ValueError("only stderr can be subprocess.STDOUT")
    s = Stdio()
    child = [-1, -1, -1]
    try:
        for i, (value, name) in enumerate(((stdin, "stdin"), (stdout, "stdout"),
                                           (stderr, "stderr"))):
            if value is None:
                continue
            if value is PIPE:
                r, w = os.pipe2(os.O_CLOEXEC)
                if i == 0:
                    child[0], s.parent_ends[0] = r, w
                    s.to_close.append(r)
                else:
                    child[i], s.parent_ends[i] = w, r
                    s.to_close.append(w)
            elif value is DEVNULL:
                fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                s.to_close.append(fd)
                child[i] = fd
            elif value is STDOUT:
                child[2] = child[1] if child[1] >= 0 else 1
            else:
                # One reading of an fd-like argument, spawn()'s.
                child[i] = stdio_fd(value, name)
    except BaseException:
        s.close_all()
        raise
    s.child = (child[0], child[1], child[2])
    return s
