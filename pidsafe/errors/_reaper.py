"""Errors of the reaper and its subscriptions.

Apart from the other process errors (``_process``): pidsafe-runc's commands
load those (state files, recorded processes) and never run a reaper.
"""

from __future__ import annotations

from ._base import Error, at_face

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Tuple


class ReaperError(Error, RuntimeError):
    """A :class:`pidsafe.Reaper` was used in a state that cannot work.

    Not started, already stopped, inherited by a forked child (whose reaper
    thread does not exist), a second subreaper, or a reaper thread that
    failed.
    """


class ForeignChildWarning(Error, RuntimeWarning):
    """A child was started outside pidsafe while a subreaper-mode Reaper runs.

    That reaper will reap it like an orphan, so its own waiter gets nothing
    (``Popen.wait()`` returns 0).  Open ``reaper.claim()`` before starting
    it.  Turn it into an error (``-W error::pidsafe.ForeignChildWarning``)
    to refuse such starts.
    """


class SubscriptionClosed(Error, EOFError):
    """The subscription has ended and holds no more exits.

    It was closed, or its reaper stopped.  Iteration ends quietly instead.
    """


class SubscriptionOverflow(ReaperError):
    """The subscriber fell ``maxsize`` exits behind and was detached.

    Every exit queued before the overflow has been delivered; later exits
    were not.  ``maxsize`` says what the bound was.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(
            f"subscription fell {maxsize} exits behind and was detached: exits after the "
            "last one delivered were dropped (resubscribe, then resynchronise)")
        self.maxsize = maxsize

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.maxsize,), self.__dict__


at_face(ReaperError, ForeignChildWarning, SubscriptionClosed, SubscriptionOverflow)
