"""Start's gate: the byte that lets init exec the program, and what init says after.

Init waits at the gate, a FIFO in the state directory that it holds open
read-write (close-on-exec).  ``start`` writes one byte into it; init then
execs the program.  The FIFO losing its last reader (``POLLERR`` on our
write end) means the program runs, or init is gone.  Only the process that
created the container holds init's status pipe: EOF on it means the exec
worked, a record says why it did not.  Once the gate has opened (or the
container is deleted), the FIFO is removed.
"""

from __future__ import annotations

import errno
import os
import select

from .._sigsafe import critical, interruptibly
from ..errors import ContainerError, ContainerStateError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional

    from .._fd import OwnedFd
    from ..process import Process
    from .init import Deadline


def open_gate(fifo: str, init: Optional[Process], container_id: str, *,
              wait_exec: bool) -> None:
    """Write the byte init waits for; with ``wait_exec``, return once it has exec'd.

    Raises:
        ContainerStateError: nobody reads the FIFO (init is gone).
        ContainerError: with ``wait_exec``, init did not exec within the
            entry deadline (ETIMEDOUT: stopped or frozen); it is killed.
        OSError: the FIFO cannot be opened or written.
    """
    w = -1
    try:
        try:
            with critical:   # owned by the finally below before a handler can raise
                w = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:   # no reader: init is gone
                raise ContainerStateError(f"container {container_id!r} is not waiting to "
                                          "start (its init is gone)") from None
            raise
        os.write(w, b"\0")
        if wait_exec and init is not None:
            deadline = _deadline()
            poller = select.poll()
            poller.register(w, 0)   # POLLERR: no reader left
            poller.register(init.fileno(), select.POLLIN)   # init exited
            try:
                while True:
                    with interruptibly:   # a wait: Ctrl-C may end it (_sigsafe)
                        if poller.poll(deadline.remaining_ms()):
                            break
            except ContainerError:   # the deadline: init is stopped or frozen
                init.kill()          # the program must not run after a start that failed
                raise
    finally:
        if w >= 0:
            with critical:
                os.close(w)


def remove_gate(fifo: str) -> None:
    """Remove the gate's FIFO (already gone is fine)."""
    try:
        os.unlink(fifo)
    except FileNotFoundError:
        pass


def check_exec(status: OwnedFd, init: Optional[Process]) -> None:
    """Read init's status pipe (closing it) to learn whether the program was exec'd.

    Raises:
        ContainerError: the exec (or what init does right before it: the
            seccomp filter) failed; the program and the field are named.
            Or init did not exec within the entry deadline (ETIMEDOUT:
            stopped or frozen); it is killed.
    """
    from .init import exec_error, read_record

    with status:
        try:
            rec = read_record(status.fileno(), _deadline())
        except ContainerError:   # the deadline: init is stopped or frozen
            if init is not None:
                init.kill()      # the program must not run after a start that failed
            raise
    if rec is not None:
        args = init.args if init is not None else None
        raise exec_error(rec, "container init", args[0] if args else None)


def _deadline() -> Deadline:
    """How long init may take from the gate to its program's execve.

    Normally microseconds; but init is in a pod's pid namespace when the
    container joined one, where the pod's processes see it and, as its
    uid, may SIGSTOP it at the gate (init of a pid namespace of its own is
    safe from that, but not from a container that freezes its cgroup).
    """
    from .init import enter_deadline

    return enter_deadline("start")
