"""The task service's table of containers, by id, under one small lock.

A Create reserves its id first (the entry is None while the container is
brought up: a second Create of the id gets AlreadyExists), and puts the
container in once it exists, or drops the reservation.  The lock guards
the table only, never a create, a start or a delete: each container's own
fields have its ``lock`` (``_task``).  The group (``_group``) decides under
the same lock whether the daemon may close.
"""

from __future__ import annotations

import threading

from ._errors import already_exists, not_found

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

    from ._group import Group
    from ._task import ShimContainer, ShimProcess


class ContainerTable:
    """The containers a task service holds (created, or being created)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._by_id: Dict[str, Optional[ShimContainer]] = {}

    def get(self, cid: str) -> Optional[ShimContainer]:
        """Container ``cid``, or None (none, or still being created)."""
        with self.lock:
            return self._by_id.get(cid)

    def container(self, cid: str) -> ShimContainer:
        """Container ``cid``.

        Raises:
            RpcError: NotFound, it is not created.
        """
        c = self.get(cid)
        if c is None:
            raise not_found(f"container {cid!r} not created")
        return c

    def process(self, cid: str, exec_id: str) -> ShimProcess:
        """Process ``exec_id`` (``""``: init) of container ``cid``.

        Raises:
            RpcError: NotFound, no such container or process.
        """
        p = self.container(cid).process(exec_id)
        if p is None:
            raise not_found(f"process {exec_id!r} does not exist in container {cid!r}")
        return p

    def reserve(self, cid: str, group: Group) -> None:
        """Reserve ``cid`` for a Create (the group's join of it is used up).

        Raises:
            RpcError: AlreadyExists; Unavailable, the daemon is closing.
        """
        with self.lock:
            group.reserve(cid)
            if cid in self._by_id:
                raise already_exists(f"create: container {cid!r} already exists")
            self._by_id[cid] = None

    def put(self, cid: str, c: ShimContainer) -> None:
        """Container ``cid``, now created."""
        with self.lock:
            self._by_id[cid] = c

    def remove(self, cid: str) -> None:
        """Drop ``cid`` (deleted, or its Create failed)."""
        with self.lock:
            del self._by_id[cid]

    def empty(self) -> bool:
        """Whether no container is held or being created (with :attr:`lock` held)."""
        return not self._by_id

    def ids(self) -> List[str]:
        """The ids held, sorted."""
        with self.lock:
            return sorted(self._by_id)
