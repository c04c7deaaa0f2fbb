"""A container's init as one handle holds it: its pidfd, its status pipe, its owner.

:class:`InitHandle` is owned by a :class:`pidsafe.Container`.  It holds
init's :class:`pidsafe.Process` (None once init is gone, or when a loaded
container's recorded init could not be proven to be the same process) and,
in the process that created the container only, the read end of init's
status pipe, which says after start whether the program was exec'd.

A handle belongs to the process that made it: in a child of ``os.fork()``
the pidfd is the parent's, and every use but :meth:`InitHandle.close`
raises ``ValueError`` instead of reading it as "init is gone".
"""

from __future__ import annotations

import os
import select

from ..errors import ContainerStateError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional

    from .._fd import OwnedFd
    from ..process import Process
    from ._record import ContainerRecord

#: Bumped in a child of os.fork(): a handle from before belongs to the parent.
_generation = 0


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


class InitHandle:
    """Init of container ``container_id``, as this process holds it.

    Args:
        process: init, or None if it is gone.
        status: the read end of init's status pipe (its creator only).
    """

    def __init__(self, container_id: str, process: Optional[Process],
                 status: Optional[OwnedFd] = None) -> None:
        self._id = container_id
        self.process = process
        self._status = status
        self._generation = _generation

    @property
    def forked(self) -> bool:
        """Whether this handle came through fork() from the parent, whose it is."""
        return self._generation != _generation

    def check_owner(self) -> None:
        """Raise ``ValueError`` in a child of fork(): the handle is the parent's."""
        if self.forked:
            raise ValueError(
                f"pidsafe.Container {self._id!r} came through fork() from the parent process, "
                f"whose handle it is: it cannot be used in the child (pid {os.getpid()}); "
                f"only close() works here: use Container.load() in the child")

    @property
    def pid(self) -> Optional[int]:
        """Init's pid while this handle holds it."""
        return self.process.pid if self.process is not None else None

    def alive(self) -> bool:
        """Whether init still runs: its pidfd turns readable when it exits.

        A zombie init (exited, not yet reaped by its parent: a shim, or our
        subreaper) is not alive: nothing in the container runs any more.
        """
        if self.process is None:
            return False
        self.check_owner()   # the child's ValueError below is not "closed"
        if self.process.returncode is not None:
            return False
        try:
            fd = self.process.fileno()
        except ValueError:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(0)

    def running(self) -> Process:
        """Init, which still runs.

        Raises:
            ContainerStateError: init is gone.
        """
        if self.process is None or not self.alive():
            raise ContainerStateError(f"container {self._id!r} is not running")
        return self.process

    def signal(self, sig: int) -> None:
        """Send ``sig`` to init through its pidfd (never by pid).

        Raises:
            ContainerStateError: init is gone.
        """
        process = self.running()
        try:
            process.send_signal(sig)
        except ValueError:
            raise ContainerStateError(f"container {self._id!r} is not running") from None

    def waited(self) -> Process:
        """Init, to wait for.

        Raises:
            ContainerStateError: this handle has none.
        """
        self.check_owner()
        if self.process is None:
            raise ContainerStateError(f"container {self._id!r} has no init to wait for")
        return self.process

    def reopen(self, record: ContainerRecord) -> None:
        """Hold the init ``record`` names if this handle holds none: opened and
        proven (:meth:`._record.ContainerRecord.open_init`), never by a bare pid."""
        if self.process is None:
            self.process = record.open_init()

    def take_status(self) -> Optional[OwnedFd]:
        """The status pipe, which the caller now owns (None if this handle has none)."""
        status, self._status = self._status, None
        return status

    def close_if_done(self) -> None:
        """Close init's pipes' files and the status pipe; and init's pidfd once
        init has exited (reaped here if it is ours).  A running init is kept:
        a delete refused, or not forced."""
        if self._status is not None:
            self._status.close()
            self._status = None
        init = self.process
        if init is None:
            return
        for f in (init.stdin, init.stdout, init.stderr):
            if f is not None:
                f.close()
        if init.returncode is None and self.alive():
            return
        if init.returncode is None:
            try:
                init.poll()
            except Exception:   # not ours to reap: the pidfd still closes below
                pass
        init.close()

    def close(self) -> None:
        """Close the status pipe and init's pidfd (init is left as it is)."""
        if self._status is not None:
            self._status.close()
            self._status = None
        if self.process is not None:
            self.process.close()
