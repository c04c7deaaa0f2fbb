"""Bring-ups of one sandbox, one at a time where the sandbox asks for it.

One shim serves every container of a pod (``start`` groups them by
``io.kubernetes.cri.sandbox-id``), and by default their bring-ups (rootfs
mounts, cgroup, init) run at once, each in its own request thread.  A
sandbox whose config carries ``org.pidsafe.bringup=serial`` gets a lock of
its own, held across the whole bring-up of each of its containers, so
they come up one at a time (as hcsshim serializes a confidential
sandbox's bring-ups: a per-sandbox lock, taken only where it is needed).
It is never a global lock: another sandbox's bring-ups, and every other
request of this one (State, Wait, Kill, Exec...), never wait for it.

A bring-up can be traced (``BringUp.trace``): each one reports ``wait``
(before it asks for its sandbox's lock), ``enter`` and ``leave``, with the
sandbox, the container id and ``time.monotonic_ns()``; the daemon writes
them to ``PIDSAFE_SHIM_TRACE`` and the tests check their order.
"""

from __future__ import annotations

import contextlib
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, Optional

    Trace = Callable[[str, str, str, int], None]

#: The annotation CRI puts on a pod's containers (and on the sandbox itself).
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
#: CRI's kind of container: "sandbox" (the pause container) or "container".
CONTAINER_TYPE = "io.kubernetes.cri.container-type"
#: The annotation (and value) that asks for serial bring-ups in a sandbox.
BRINGUP = "org.pidsafe.bringup"
SERIAL = "serial"


def annotations_of(config: Any) -> Dict[str, Any]:
    """config.json's annotations (``{}`` if it has none, or they are malformed)."""
    ann = config.get("annotations") if isinstance(config, dict) else None
    return ann if isinstance(ann, dict) else {}


def sandbox_of(config: Any) -> Optional[str]:
    """The CRI sandbox a config's container belongs to, or None."""
    sandbox = annotations_of(config).get(SANDBOX_ID)
    return sandbox if isinstance(sandbox, str) and sandbox else None


class BringUp:
    """Per-sandbox bring-up locks, made for the sandboxes that ask for them.

    Attributes:
        trace: called as ``trace(what, sandbox, container_id, monotonic_ns)``
            around each bring-up (``wait``, ``enter``, ``leave``), if set.
    """

    def __init__(self, trace: Optional[Trace] = None) -> None:
        self.trace = trace
        self._lock = threading.Lock()
        self._serial: Dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def turn(self, config: Any, container_id: str = "") -> Iterator[None]:
        """Around one container's bring-up; ``config`` is its config.json (a dict).

        A sandbox is serial from the first of its containers whose config
        carries the annotation on (CRI gives it to the sandbox container
        first, and to each of its containers).
        """
        sandbox = sandbox_of(config)
        lock = None
        if sandbox is not None:
            with self._lock:
                lock = self._serial.get(sandbox)
                if lock is None and annotations_of(config).get(BRINGUP) == SERIAL:
                    lock = self._serial[sandbox] = threading.Lock()
        trace, where = self.trace, sandbox or ""
        if trace is not None:
            trace("wait", where, container_id, time.monotonic_ns())
        with lock if lock is not None else contextlib.nullcontext():
            if trace is not None:
                trace("enter", where, container_id, time.monotonic_ns())
            try:
                yield
            finally:
                if trace is not None:
                    trace("leave", where, container_id, time.monotonic_ns())

    def serial(self, sandbox: str) -> bool:
        """Whether ``sandbox``'s bring-ups are serialized."""
        with self._lock:
            return sandbox in self._serial

    def forget(self, sandbox: str) -> None:
        """The sandbox is gone: drop its lock (a bring-up holding it keeps it)."""
        with self._lock:
            self._serial.pop(sandbox, None)
