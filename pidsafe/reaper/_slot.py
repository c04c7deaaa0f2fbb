"""One subreaper per process: the slot, and ``PR_SET_CHILD_SUBREAPER``.

Two subreaper-mode reapers in one process would split orphans and claims
between them, so the first one to start takes the process-wide slot and the
others are refused until it stops.  The previous value of the prctl flag is
kept and restored, so a process that was a subreaper already stays one.
"""

from __future__ import annotations

import os
import threading
from typing import Optional

from .. import _sys
from ..errors import ReaperError

_lock = threading.Lock()
_owner: Optional[object] = None


def take(owner: object) -> None:
    """Take the slot for ``owner``.

    Raises:
        ReaperError: another subreaper-mode Reaper holds it.
    """
    global _owner
    with _lock:
        if _owner is not None:
            raise ReaperError("another Reaper(subreaper=True) is running in this process; two "
                              "would split orphans and claims between them")
        _owner = owner


def give_back(owner: object) -> None:
    """Free the slot if ``owner`` holds it.  Idempotent."""
    global _owner
    with _lock:
        if _owner is owner:
            _owner = None


def become_subreaper() -> int:
    """Set ``PR_SET_CHILD_SUBREAPER``; returns the previous value for :func:`restore`."""
    previous = int(_sys.child_subreaper())
    _sys.set_child_subreaper(True)
    return previous


def restore(previous: int) -> None:
    """Put the flag back as :func:`become_subreaper` found it."""
    _sys.set_child_subreaper(bool(previous))


def _after_fork_in_child() -> None:
    global _lock, _owner
    _lock = threading.Lock()
    _owner = None   # the parent's reaper thread does not exist here


os.register_at_fork(after_in_child=_after_fork_in_child)
