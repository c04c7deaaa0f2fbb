"""Bring a container up for ``Create``: rootfs, stdio, init; all of it or none.

The runc shim's ``NewContainer`` + ``Init.Create`` (runtime/v2/runc/
container.go, pkg/process/init.go), in-process: the rootfs mounts, the
cgroup, the state and init come from one ``pidsafe.Container.create``
(which undoes its own work on any error); the shim adds the stdio FIFOs or
the terminal relay, and undoes those, and the container, if anything after
it fails.  Init is owned by the exit router from ``on_created`` on, before
the reaper watches it, and holds its exit until ``TaskCreate`` is out.

Where state lives: ``<bundle>/pidsafe/`` (the container's state file, lock
and start gate).  The bundle is per containerd and per container, found
again by the ``delete`` action from its ``-bundle``, and removed by
containerd after it; two containerds with the same namespace and ids never
meet there.
"""

from __future__ import annotations

import json
import os
import socket

from ..container import Container
from .._sigsafe import critical
from ._rootfs import rootfs_mounts
from ._task import ShimContainer, ShimProcess, Stdio, drop_started

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple

    from ..process import Process
    from ..reaper import Reaper
    from ._exits import ExitRouter

#: The bundle's subdirectory that holds the container's pidsafe state.
STATE_SUBDIR = "pidsafe"
#: The file the runc shim writes init's pid to (its ``delete`` action reads it).
INIT_PID_FILE = "init.pid"
#: How much of config.json the shim reads itself (create reads it again, whole).
_MAX_CONFIG = 4 << 20


def state_dir(bundle: str) -> str:
    """Where the container of ``bundle`` keeps its state."""
    return os.path.join(bundle, STATE_SUBDIR)


def read_config(bundle: str) -> Dict[str, Any]:
    """config.json as JSON, or ``{}`` if unreadable: ``Container.create`` then says
    why, naming the field, before anything exists."""
    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            doc = json.loads(f.read(_MAX_CONFIG))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def write_pid_file(path: str, pid: int) -> None:
    """``path`` holds ``pid``, written atomically (a temp file of a random name, rename)."""
    tmp = f"{path}.{os.urandom(8).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def bring_up(req: Any, config: Dict[str, Any], *, namespace: str, reaper: Reaper,
             router: ExitRouter, idmap: Optional[Tuple[str, str]] = None) -> ShimContainer:
    """Create the container of a ``CreateTaskRequest``; its init holds its exit.

    ``config`` is the bundle's config.json as :func:`read_config` gives it;
    ``idmap``, the ``(uidmap, gidmap)`` of a user namespace the container
    joins, for its rootfs (one it makes has them in ``config``).

    The caller publishes ``TaskCreate`` and then ends the hold
    (``container.init.release()``).

    Raises:
        ConfigError, UnsupportedConfigError, MountError, ContainerError,
        OSError, ...: as ``Container.create`` and the stdio; nothing is left.
    """
    from ._stdio import open_io
    from ._tty import console_pair, relay_console

    cid = req.id
    bundle = os.path.abspath(req.bundle)
    stdio = Stdio(req.stdin, req.stdout, req.stderr, bool(req.terminal))
    init = ShimProcess(cid, "", stdio)
    mounts = rootfs_mounts(req.rootfs, config, idmap) if req.rootfs else None
    owned: List[Process] = []
    io: Any = None
    relay: Any = None
    socks: List[socket.socket] = []
    container: Optional[Container] = None

    def on_created(c: Container) -> None:
        p = c.process()
        if p is not None:
            owned.append(p)
            router.own(p, init)

    try:
        if stdio.terminal:
            console_pair(socks)
        else:
            io = open_io(stdio, container_id=cid, namespace=namespace, reaper=reaper)
        init.hold()
        child = io.child if io is not None else (None, None, None)
        container = Container.create(
            cid, bundle, state_dir=state_dir(bundle), rootfs_mounts=mounts,
            stdin=child[0], stdout=child[1], stderr=child[2], reaper=reaper,
            on_created=on_created, console_socket=socks[1] if socks else None)
        if io is not None:
            io.close_child_side()
        if socks:
            relay = relay_console(socks, stdio.stdin, stdio.stdout)
        process = container.process()
        assert process is not None   # create() returns with init created
        init.process, init.pid = process, process.pid
        init.io, init.console = io, relay
        write_pid_file(os.path.join(bundle, INIT_PID_FILE), process.pid)
        pid_ns = container.spec().linux.namespace("pid")
        c = ShimContainer(cid, bundle, container, init,
                          own_pid_ns=pid_ns is not None and pid_ns.path is None)
        init.container = c
        return c
    except BaseException:
        with critical:
            drop_started(router, owned, socks, relay, io)
        if container is not None:
            container.delete(force=True)
        raise
