"""The exit stream: the reaper thread publishes, each Subscription receives.

Every exit, owned children's, orphans' and claims' alike, is published from
the reaper thread only (``_thread``), through one :class:`Publisher`, so
every subscriber sees one order.  Publishing never blocks on a consumer: it
takes each subscription's own lock only to append (see ``_subscription``),
and the tuple of subscriptions is replaced, never changed in place, so it
is read without a lock.
"""

from __future__ import annotations

import threading
from typing import Callable, Protocol, Sequence, Tuple

from ._subscription import Exit, Subscription


class Publisher(Protocol):
    """Where the reaper thread hands each batch of exits, in order."""

    def publish(self, exits: Sequence[Exit]) -> None:
        """Deliver ``exits`` (the reaper thread only; never blocks on a reader)."""


class ExitPublisher:
    """A reaper's subscriptions, and the one way exits reach them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()   # guards replacing the tuple
        self._subs: Tuple[Subscription, ...] = ()

    def subscribe(self, maxsize: int) -> Subscription:
        """A new subscription: it receives every exit published from now on."""
        sub = Subscription(self._unsubscribe, maxsize)
        with self._lock:
            self._subs = self._subs + (sub,)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def publish(self, exits: Sequence[Exit]) -> None:
        """Hand ``exits`` to every subscriber (the reaper thread only).

        A subscriber that falls ``maxsize`` behind is detached (see
        :class:`Subscription`).
        """
        if not exits:
            return
        for sub in self._subs:
            if sub._put_many(exits):
                self._unsubscribe(sub)

    def end(self, reason: Callable[[], BaseException]) -> None:
        """The stream ends: each subscriber drains what is queued, then gets ``reason()``."""
        with self._lock:
            subs, self._subs = self._subs, ()
        for sub in subs:
            sub._finish(reason)

    def forget_after_fork(self, reason: Callable[[], BaseException]) -> None:
        """In a forked child: the publishing thread is gone, and maybe a lock holder."""
        self._lock = threading.Lock()
        subs, self._subs = self._subs, ()
        for sub in subs:
            sub._forget_after_fork(reason)
