"""UsernsCache: one user namespace per set of maps, handed out as duplicates.

Safe against the three ways a cache of fds goes wrong in a Python process:

* **Signal handlers.**  Every method runs as one ``critical`` section
  (pidsafe/_sigsafe.py), and takes the lock only inside it: a handler never
  runs in the main thread while the lock is held there, so a handler that
  itself uses the cache cannot deadlock against the code it interrupted,
  and one that raises cannot leave an fd that nothing owns.  Making a
  namespace (about a millisecond) runs inside the section but outside the
  lock.
* **Threads.**  One lock; a namespace is made outside it, and a thread that
  loses the race to insert the same key closes its own and uses the
  winner's.
* **fork().**  A lock held by another thread at fork time would stay held
  for ever in the child.  After fork every cache gets a new lock in the
  child; the table itself is consistent (it changes only under the GIL,
  between bytecodes, with the lock held) and its fds were inherited, so the
  child's cache works as the parent's did.
"""

from __future__ import annotations

import collections
import fcntl
import os
import threading
import weakref
from typing import List, Optional, Tuple

from .._fd import OwnedFd
from .._owned import Closable
from .._sigsafe import critical, hand_out
from ._helper import get_userns_fd
from ._idmap import IDMap
from ._userns import IDMapLike, _as_idmap, _check_setgroups

__all__ = ["UsernsCache"]

_Key = Tuple[IDMap, IDMap, str]

#: Every live cache, so that fork() can give each a fresh lock in the child.
_caches: "weakref.WeakSet[UsernsCache]" = weakref.WeakSet()


class UsernsCache(Closable):
    """A bounded, thread-safe cache of user namespaces by their maps.

    ``get()`` returns a *duplicate* of the cached fd (close-on-exec), which
    the caller owns and closes; the namespace lives as long as any fd to it.
    The key ignores the order ranges were written in
    (``"0:0:1,1:100:5"`` and ``"1:100:5,0:0:1"`` are one namespace).  The
    least recently used entry is evicted (its cached fd closed) beyond
    ``maxsize``.

    A raising signal handler cannot leak or double-close a cached fd, and a
    handler may use the cache itself.  After ``os.fork()`` the cache works
    in the child too (its lock is renewed there).

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, maxsize: int = 64) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, not {maxsize!r}")
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._fds: "collections.OrderedDict[_Key, OwnedFd]" = collections.OrderedDict()
        self._closed = False
        _caches.add(self)

    def get(self, uidmap: IDMapLike, gidmap: IDMapLike, *,
            setgroups: str = "deny") -> OwnedFd:
        """An fd for a user namespace with these maps, made on first use.

        Raises:
            ValueError: the cache is closed, or a bad ``setgroups``.
            IDMapError, HelperDiedError, PermissionError, OSError: as
                :func:`get_userns_fd` (a failed ``get()`` caches nothing);
                OSError(EMFILE) also when no fd is left for the duplicate.
        """
        _check_setgroups(setgroups)
        key = (_as_idmap(uidmap, "uidmap"), _as_idmap(gidmap, "gidmap"), setgroups)
        # One critical section for the whole get(): the lookup, making a
        # namespace on a miss (short, see get_userns_fd), the insertion,
        # the eviction and the duplicate.  Inside it the try/finally is
        # exact; a handler's exception comes out of its end, where only the
        # duplicate is left: hand_out closes it (signals still diverted).
        # The lock is taken inside the section and only for table work,
        # never while a namespace is made.
        return hand_out(lambda: self._get(key), OwnedFd.close)

    def _get(self, key: _Key) -> OwnedFd:
        with self._lock:
            out = self._dup(key)
        return out if out is not None else self._make(key)

    def _make(self, key: _Key) -> OwnedFd:
        """Make the namespace for ``key``, cache it, return a duplicate.

        Call inside ``critical``, without the lock.
        """
        fresh: Optional[OwnedFd] = get_userns_fd(key[0], key[1], setgroups=key[2])
        evicted: List[OwnedFd] = []
        try:
            with self._lock:
                if key not in self._fds:  # else another thread won the race: use theirs
                    self._check_open()
                    assert fresh is not None
                    self._fds[key], fresh = fresh, None
                    evicted = self._evict()
                out = self._dup(key)
                assert out is not None
                return out
        finally:
            if fresh is not None:
                fresh.close()
            _close_each(evicted)

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("UsernsCache is closed")

    def _dup(self, key: _Key) -> Optional[OwnedFd]:
        """A duplicate of the entry for ``key`` (now the most recent), or None.

        Call inside ``critical`` with the lock held.
        """
        self._check_open()
        cached = self._fds.get(key)
        if cached is None:
            return None
        self._fds.move_to_end(key)
        return OwnedFd(fcntl.fcntl(cached.fileno(), fcntl.F_DUPFD_CLOEXEC, 0), "user namespace")

    def _evict(self) -> List[OwnedFd]:
        """Drop the least recently used entries beyond ``maxsize``; the caller closes them."""
        evicted = []
        while len(self._fds) > self.maxsize:
            evicted.append(self._fds.popitem(last=False)[1])
        return evicted

    def __len__(self) -> int:
        with critical, self._lock:
            return len(self._fds)

    def clear(self) -> None:
        """Close every cached fd (fds handed out stay open)."""
        with critical:
            with self._lock:
                items = list(self._fds.values())
                self._fds.clear()
            _close_each(items)

    def close(self) -> None:
        """Empty the cache and refuse further ``get()`` calls.  Idempotent."""
        with critical:
            with self._lock:
                self._closed = True
            self.clear()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def _after_fork_in_child(self) -> None:
        # The thread that held the lock at fork time does not exist here.
        self._lock = threading.Lock()


def _close_each(fds: List[OwnedFd]) -> None:
    """Close every fd of the list, even if closing one fails."""
    for i, fd in enumerate(fds):
        try:
            fd.close()
        except BaseException:
            _close_each(fds[i + 1:])
            raise


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
