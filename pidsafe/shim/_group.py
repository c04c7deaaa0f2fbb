"""The daemon's life as its group's: who joined it, and when it closes.

One daemon serves a group (a pod, with CRI).  ``start`` of a later
container of the group finds it and *joins* it (``Join``, pidsafe's one
ttrpc method of its own), under ``start``'s lock on the socket directory:
from then on the daemon waits for that container's Create (or until the
join's lease ends) before it closes.  The daemon decides to close under
the same lock, only once no container is left and no join is pending, and
then, still under it, removes its socket (``closing``): a ``start`` after
that makes a daemon of its own.  So no container is ever handed to a
daemon that is going away (containerd 1.6's runc shim has that race: its
``start`` finds the socket, then the daemon exits before the Create).
"""

from __future__ import annotations

import threading
import time

from ..errors import RpcError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ContextManager, Dict, Optional

    from ._table import ContainerTable

#: How long a ``start`` that joined the daemon keeps it from closing without a Create.
LEASE = 30.0
UNAVAILABLE = 14


class Group:
    """Joins and the decision to close, over the service's table of containers.

    Args:
        table: the service's table of containers; every method but
            :meth:`close_if_idle` and :meth:`cancel` is called holding its lock.
        shutdown: called once, when the daemon closes.
        group_lock: ``start``'s lock on the socket directory, held around the
            decision to close.
        closing: called under ``group_lock`` once the daemon closes, before
            ``shutdown`` (the daemon removes its socket).
    """

    def __init__(self, table: ContainerTable, *,
                 shutdown: Callable[[], None], group_lock: Callable[[], ContextManager[Any]],
                 closing: Callable[[], None]) -> None:
        self._table = table
        self._shutdown = shutdown
        self._group_lock = group_lock
        self._on_closing = closing
        self.closing = False
        self._leases: Dict[str, float] = {}     # container id -> until (monotonic)
        self._recheck: Optional[threading.Timer] = None

    def join(self, cid: str) -> None:
        """``start`` of ``cid`` found this daemon (under the lock).

        Raises:
            RpcError: Unavailable, the daemon is closing.
        """
        if self.closing:
            raise RpcError(UNAVAILABLE, "join: the shim is shutting down")
        self._leases[cid] = time.monotonic() + LEASE

    def reserve(self, cid: str) -> None:
        """The Create of ``cid`` came (under the lock): its join is used up.

        Raises:
            RpcError: Unavailable, the daemon is closing (no start joined it).
        """
        if self.closing:
            raise RpcError(UNAVAILABLE, "create: the shim is shutting down")
        self._leases.pop(cid, None)

    def close_if_idle(self) -> None:
        """Close once no container is left and no join is pending (``Shutdown``)."""
        with self._group_lock():
            with self._table.lock:
                if self.closing or not self._table.empty():
                    return         # still serving containers (or already going)
                now = time.monotonic()
                self._leases = {k: t for k, t in self._leases.items() if t > now}
                if self._leases:       # a Create is on its way: look again after its lease
                    if self._recheck is not None:
                        self._recheck.cancel()
                    self._recheck = threading.Timer(min(self._leases.values()) - now,
                                                    self.close_if_idle)
                    self._recheck.daemon = True
                    self._recheck.start()
                    return
                self.closing = True
                self._on_closing()
        self._shutdown()

    def cancel(self) -> None:
        """Stop a pending look (the daemon is exiting)."""
        with self._table.lock:
            if self._recheck is not None:
                self._recheck.cancel()
