"""What the daemon of a CRI pod knows of the pod: its sandbox, and its rules.

A container of a pod (CRI's ``io.kubernetes.cri.sandbox-id``) comes to the
daemon that runs the pod's sandbox (pause) container: ``start`` groups
them.  So the daemon refuses, before anything is made, a container whose
sandbox it saw exit or be deleted, or does not run at all (the pod was
stopped and its daemon went: this is a new one); it hands the user
namespace of the sandbox to a container that joins it (``_userns``); and
it holds the pod's bring-up locks (``_sandbox``).
"""

from __future__ import annotations

import os
import select

from ._errors import failed_precondition
from ._sandbox import CONTAINER_TYPE, BringUp, annotations_of, sandbox_of
from ._task import STOPPED

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Set, Tuple

    from ._task import ShimContainer


class Pods:
    """The pods of one daemon.

    Args:
        lookup: the service's container of an id (None if it has none).

    Attributes:
        bringups: the per-sandbox bring-up locks; its ``trace`` may be set.
    """

    def __init__(self, lookup: Callable[[str], Optional[ShimContainer]]) -> None:
        self._lookup = lookup
        self._gone: Set[str] = set()
        self.bringups = BringUp()

    def check(self, cid: str, config: Dict[str, Any]) -> None:
        """Refuse a container of a CRI sandbox this daemon has seen stop or go, or does
        not run.

        Raises:
            RpcError: FailedPrecondition.
        """
        sandbox = sandbox_of(config)
        if sandbox is None or sandbox == cid:
            return
        s = self._lookup(sandbox)
        if sandbox in self._gone:
            raise failed_precondition(f"create: container {cid!r}: its sandbox {sandbox!r} "
                                      "has been removed")
        if s is None and annotations_of(config).get(CONTAINER_TYPE) == "container":
            raise failed_precondition(f"create: container {cid!r}: its sandbox {sandbox!r} "
                                      "is not running in this shim (stopped or removed)")
        if s is not None and _pause_exited(s):
            raise failed_precondition(f"create: container {cid!r}: its sandbox {sandbox!r} "
                                      "is not running (its pause process has exited)")

    def userns(self, bundle: str, config: Dict[str, Any], cid: str
               ) -> Tuple[Optional[Tuple[str, str]], Optional[int]]:
        """``_userns.pod_userns`` for a pod that asks for a user namespace; else nothing."""
        from ._userns import USERNS, pod_userns

        if USERNS not in annotations_of(config):
            return None, None
        return pod_userns(bundle, config, cid, self._sandbox_userns)

    def _sandbox_userns(self, sandbox: str) -> Optional[int]:
        """An fd of the user namespace of ``sandbox``'s pause, if this daemon runs it.

        Opened by pid, then proved: the pause (held by its pidfd) was not
        reaped yet, so the pid was still its own when it was opened.
        """
        s = self._lookup(sandbox)
        process = s.init.process if s is not None and not s.init_exited else None
        if process is None:
            return None
        try:
            fd = os.open(f"/proc/{process.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        if process.returncode is not None:     # reaped: the pid may be another's now
            os.close(fd)
            return None
        return fd

    def created(self, c: ShimContainer, config: Dict[str, Any]) -> None:
        c.sandbox = sandbox_of(config)

    def deleted(self, c: ShimContainer) -> None:
        """``c`` is gone; if it was a pod's sandbox, the pod is too."""
        if c.sandbox == c.id:
            self._gone.add(c.id)
            self.bringups.forget(c.id)


def _pause_exited(s: ShimContainer) -> bool:
    """Whether the sandbox's pause has exited, its exit handled or not yet.

    The exit reaches the service through the reaper a moment after the
    process is gone; its pidfd is readable at once.  (A Create that found
    the pause running can then fail to join its namespaces: /proc/PID/ns
    of a process that exited is gone.)
    """
    if s.init_exited or s.init.status == STOPPED:
        return True
    process = s.init.process
    if process is None:
        return False
    try:
        return bool(select.select([process], [], [], 0)[0])
    except (ValueError, OSError):   # closed: reaped and released
        return True
