"""Exit records and subscriptions to them (the reaper's delivery side).

A :class:`Subscription` is a bounded queue the reaper thread appends to and
one or more consumers read from.  Appending never blocks on a consumer: the
reaper takes the subscription's own lock only to append, so a subscriber
that stops reading can stall neither reaping nor the other subscribers.

Slow-subscriber policy (fail-stop, never silent): a subscription holds at
most ``maxsize`` undelivered exits.  The exit that would exceed it is not
queued; instead the subscription is detached from its reaper (it receives
nothing more, so its memory stops growing) and, once the consumer has read
the exits queued before the gap, ``get()`` raises
:class:`SubscriptionOverflow`.  What a subscriber reads is therefore always
a gap-free prefix of the exit stream, and a gap is always reported: the
consumer resubscribes and resynchronises (e.g. from ``Process.returncode``).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Callable, Deque, List, Optional, Sequence, Tuple, TypeVar

from .._owned import Closable
from .._value import Frozen, init_fields
from ..errors import ReaperError, SubscriptionClosed, SubscriptionOverflow

if TYPE_CHECKING:
    import asyncio

    from ..process import Process

_T = TypeVar("_T")

#: Default bound of a subscription's queue (see the module docstring).
DEFAULT_MAXSIZE = 10_000


class Exit(Frozen):
    """One reaped process, as the reaper publishes it.

    Attributes:
        pid: the process id (no longer valid: the process is gone).
        returncode: ``Popen``'s convention: the exit status, or ``-N`` for
            signal ``N``.  ``None`` only if another waiter in this process
            took the status and the kernel kept none (before Linux 6.15).
        process: the :class:`pidsafe.Process` for an owned child; ``None``
            for an orphan.
        orphan: a descendant reparented to a subreaper and reaped by it.
        timestamp: ``time.monotonic()`` when the reaper reaped it.
    """

    # A Frozen, not a dataclass: ``import dataclasses`` (with inspect, ast,
    # dis) was a third of the CPU a containerd shim's daemon spends before
    # it serves.
    __slots__ = ("pid", "returncode", "process", "orphan", "timestamp")
    pid: int
    returncode: Optional[int]
    process: Optional["Process"]
    orphan: bool
    timestamp: float

    def __init__(self, pid: int, returncode: Optional[int], process: Optional["Process"],
                 orphan: bool, timestamp: float) -> None:
        init_fields(self, pid, returncode, process, orphan, timestamp)


class AsyncWaiters:
    """Futures of coroutines waiting for a thread-side event.

    The thread that makes the event happen calls :meth:`wake_all`, which
    hands each future to its own loop with ``call_soon_threadsafe``: no
    thread per waiter, and the loop never blocks.  The owner guards calls
    with its own lock.
    """

    __slots__ = ("_futs",)

    def __init__(self) -> None:
        self._futs: List[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]] = []

    def add(self) -> "asyncio.Future[None]":
        import asyncio   # here: a caller of get_async() has it; the reaper need not load it

        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[None]" = loop.create_future()
        self._futs.append((loop, fut))
        return fut

    def discard(self, fut: "asyncio.Future[None]") -> None:
        self._futs = [(lp, f) for lp, f in self._futs if f is not fut]

    async def until(self, cond: threading.Condition, ready: Callable[[], Optional[_T]]) -> _T:
        """Await until ``ready()``, called with ``cond`` held, gives a value.

        ``ready`` may raise (the stream ended); each time it gives ``None``
        this coroutine sleeps until :meth:`wake_all`.
        """
        while True:
            with cond:
                value = ready()
                if value is not None:
                    return value
                fut = self.add()
            try:
                await fut
            finally:
                with cond:
                    self.discard(fut)

    def wake_all(self) -> None:
        futs, self._futs = self._futs, []
        for loop, fut in futs:
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:
                pass  # that loop is closed: nobody is waiting any more


def _resolve(fut: "asyncio.Future[None]") -> None:
    if not fut.done():
        fut.set_result(None)


class Subscription(Closable):
    """Every exit its reaper publishes after :meth:`pidsafe.Reaper.subscribe`.

    Each subscriber gets each exit once, in the order the reaper published
    them.  Use it as an iterator (ends when the subscription is closed or the
    reaper stops), with :meth:`get`, with ``await``
    :meth:`get_async` / ``async for``, and as a context manager (which closes
    it, i.e. unsubscribes).  Several threads may consume one subscription;
    each exit then goes to one of them.

    At most ``maxsize`` exits wait in the queue; see the module docstring
    (fail-stop: :class:`SubscriptionOverflow` after the queued exits).
    """

    def __init__(self, detach: Callable[["Subscription"], None], maxsize: int) -> None:
        self._detach = detach
        self._maxsize = maxsize
        self._cond = threading.Condition(threading.Lock())
        self._queue: Deque[Exit] = collections.deque()
        # Why the stream ended (raised once the queue is empty), or None.
        self._end: Optional[Callable[[], BaseException]] = None
        self._overflowed = False
        self._waiters = AsyncWaiters()

    @property
    def maxsize(self) -> int:
        """The queue bound given to :meth:`pidsafe.Reaper.subscribe`."""
        return self._maxsize

    @property
    def overflowed(self) -> bool:
        """Whether this subscription fell ``maxsize`` behind (and was detached)."""
        return self._overflowed

    def qsize(self) -> int:
        """How many exits wait to be read."""
        with self._cond:
            return len(self._queue)

    # -- reaper side ----------------------------------------------------------

    def _put_many(self, exits: Sequence[Exit]) -> bool:
        """Queue ``exits``; True if this overflowed the bound (then detach us)."""
        with self._cond:
            if self._end is not None:
                return False
            room = self._maxsize - len(self._queue)
            overflow = len(exits) > room
            if overflow:
                self._queue.extend(exits[:max(room, 0)])
                maxsize = self._maxsize
                self._end = lambda: SubscriptionOverflow(maxsize)
                self._overflowed = True
            else:
                self._queue.extend(exits)
            self._cond.notify_all()
            self._waiters.wake_all()
        return overflow

    def _finish(self, reason: Callable[[], BaseException]) -> None:
        """End the stream (the reaper stopped or failed): readers drain, then raise."""
        with self._cond:
            if self._end is None:
                self._end = reason
            self._cond.notify_all()
            self._waiters.wake_all()

    def _forget_after_fork(self, reason: Callable[[], BaseException]) -> None:
        """In a forked child: the lock may be held by a thread that is gone."""
        self._cond = threading.Condition(threading.Lock())
        self._queue.clear()
        self._end = reason
        self._waiters = AsyncWaiters()

    # -- consumer side --------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> Exit:
        """The next exit; blocks until there is one.

        Args:
            timeout: seconds to wait; ``None`` waits for ever, ``0`` polls.

        Raises:
            TimeoutError: no exit within ``timeout``.
            SubscriptionClosed: closed, or the reaper stopped, and nothing is
                left to read.
            SubscriptionOverflow: the subscriber fell ``maxsize`` behind;
                every exit queued before that has been returned.
            ReaperError: the reaper thread failed, or this process is a
                forked child of the one that ran the reaper.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                ev = self._next_locked()
                if ev is not None:
                    return ev
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no exit within {timeout} s")
                self._cond.wait(remaining)

    async def get_async(self) -> Exit:
        """``await`` the next exit without blocking the event loop.

        No thread per waiter: the reaper thread wakes the loop with
        ``call_soon_threadsafe``.  Bound the wait with ``asyncio.wait_for``
        or ``asyncio.timeout``; cancelling loses no exit.

        Raises:
            SubscriptionClosed, SubscriptionOverflow, ReaperError: as
                :meth:`get`.
        """
        return await self._waiters.until(self._cond, self._next_locked)

    def _next_locked(self) -> Optional[Exit]:
        """With ``_cond`` held: the next exit, ``None`` if there is none yet.

        Raises:
            SubscriptionClosed, SubscriptionOverflow, ReaperError: why the
                stream ended, once nothing is left to read.
        """
        if self._queue:
            return self._queue.popleft()
        if self._end is not None:
            raise self._end()
        return None

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Exit:
        try:
            return self.get()
        except SubscriptionClosed:
            raise StopIteration from None

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Exit:
        try:
            return await self.get_async()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        """Unsubscribe and drop what is queued.  Idempotent.

        Wakes every blocked :meth:`get` / :meth:`get_async`, which then
        raise :class:`SubscriptionClosed` (iteration ends).
        """
        with self._cond:
            self._queue.clear()
            self._end = lambda: SubscriptionClosed("subscription closed")
            self._cond.notify_all()
            self._waiters.wake_all()
        self._detach(self)

    def __repr__(self) -> str:
        return f"<pidsafe.Subscription queued={len(self._queue)} maxsize={self._maxsize}>"
