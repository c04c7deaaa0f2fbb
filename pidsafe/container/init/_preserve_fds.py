"""``preserve_fds``: the caller's fds 3 .. 3+N-1 reach the container's program.

runc's ``--preserve-fds N``: whatever the runtime was started with at fds
3 and up (a socket, a pipe, a file) is open in the container's process at
the same numbers.  The parent passes them to pidsafe-init like its own fds
(which therefore all lie above them) and init clears their close-on-exec
flag last, just before the exec (``OP_PRESERVE_FDS``).
"""

from __future__ import annotations

import errno
import os

from ._builder import InitPlan
from ._protocol import OP_EXEC, OP_PRESERVE_FDS, Op


def preserved_fds(count: int) -> range:
    """The fd numbers ``count`` preserves, after checking that each is open.

    Raises:
        ValueError: ``count`` is not a non-negative int.
        OSError: ``EBADF``, one of them is not open (it is named).
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"preserve_fds must be a non-negative int, not {count!r}")
    fds = range(3, 3 + count)
    for fd in fds:
        try:
            os.fstat(fd)
        except OSError:
            raise OSError(errno.EBADF, f"preserve_fds={count}: fd {fd} is not open") from None
    return fds


def with_preserved(plan: InitPlan, count: int) -> InitPlan:
    """``plan`` with the op that keeps fds 3 .. 3+count-1 open, just before the exec."""
    if count == 0:
        return plan
    ops = list(plan.ops)
    at = max(i for i, op in enumerate(ops) if op.code == OP_EXEC)
    ops.insert(at, Op(OP_PRESERVE_FDS, (count,), "preserve_fds", f"fds 3-{2 + count}"))
    return InitPlan(plan.clone_flags, tuple(ops), plan.root_in_userns)
