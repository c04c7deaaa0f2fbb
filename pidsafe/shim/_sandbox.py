"""Bring-ups of one sandbox, one at a time where the sandbox asks for it.

One shim serves every container of a pod (``start`` groups them by
``io.kubernetes.cri.sandbox-id``), and by default their bring-ups (rootfs
mounts, cgroup, init) run at once, each in its own request thread.  A
sandbox whose config carries ``org.pidsafe.bringup=serial`` gets a lock of
its own, held across the whole bring-up of each of its containers, so
they come up one at a time (as hcsshim serializes a confidential
sandbox's bring-ups: a per-sandbox lock, taken only where it is needed).  It is never a global lock: another sandbox's bring-ups,
and every other request of this one (State, Wait, Kill, Exec...), never
wait for it.
"""

from __future__ import annotations

import contextlib
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator

#: The annotation CRI puts on a pod's containers (and on the sandbox itself).
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
#: The annotation (and value) that asks for serial bring-ups in a sandbox.
BRINGUP = "org.pidsafe.bringup"
SERIAL = "serial"


class BringUp:
    """Per-sandbox bring-up locks, made for the sandboxes that ask for them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._serial: Dict[str, threading.Lock] = {}

    @contextlib.contextmanager
    def turn(self, config: Any) -> Iterator[None]:
        """Around one container's bring-up; ``config`` is its config.json (a dict).

        A sandbox is serial from the first of its containers whose config
        carries the annotation on (CRI gives it to the sandbox container
        first).
        """
        ann = config.get("annotations") if isinstance(config, dict) else None
        ann = ann if isinstance(ann, dict) else {}
        sandbox = ann.get(SANDBOX_ID)
        lock = None
        if isinstance(sandbox, str) and sandbox:
            with self._lock:
                lock = self._serial.get(sandbox)
                if lock is None and ann.get(BRINGUP) == SERIAL:
                    lock = self._serial[sandbox] = threading.Lock()
        if lock is None:
            yield
            return
        with lock:
            yield

    def serial(self, sandbox: str) -> bool:
        """Whether ``sandbox``'s bring-ups are serialized."""
        with self._lock:
            return sandbox in self._serial
