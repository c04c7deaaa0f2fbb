"""The ``delete`` action: clean up after a shim that is gone; fast when all is gone.

containerd runs it after *every* container, once its connection to the
daemon has closed (normally right after ``Shutdown``), and for dead shims
after a restart (runtime/v2/shim.go, ``cleanupAfterDeadShim``).  It must exit 0 when everything is
already gone and print a raw ``containerd.task.v2.DeleteResponse`` on
stdout (``pid`` from ``init.pid``, ``exit_status`` 137, ``exited_at``
now, as the runc shim's ``manager.Stop`` answers).

The common case costs a few ``stat()`` calls: the daemon deleted the
container and removed its socket, so nothing of pidsafe is imported.  What
a daemon that was killed (SIGKILL, OOM) leaves behind is found from the
container's state file (``<bundle>/pidsafe/<id>.json``), which records
every resource before it exists: ``Container.load(...).delete(force=True)``
kills what still runs (through pidfds, after open-then-prove), unmounts the
rootfs, removes the cgroup and the state.  A socket the dead daemon left in
``/run/containerd/s`` is removed if nobody answers on it (a pod's daemon
still serving other containers keeps it).
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._cli import Flags

STATE_SUBDIR = "pidsafe"    # _create.STATE_SUBDIR, without importing it
SIGKILL_STATUS = 128 + 9


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1          # int64 two's complement, as protobuf encodes it
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def delete_response(pid: int, exit_status: int, exited_at_ns: int) -> bytes:
    """``DeleteResponse{pid=1, exit_status=2, exited_at=3}`` in the protobuf wire format.

    Written out here so that the action needs no message classes (tests
    check it against ``messages.DeleteResponse``).  Like Go, the timestamp
    is always sent; zero scalars are left out (proto3).
    """
    seconds, nanos = divmod(exited_at_ns, 1_000_000_000)
    ts = (b"\x08" + _varint(seconds) if seconds else b"") + \
         (b"\x10" + _varint(nanos) if nanos else b"")
    out = b""
    if pid:
        out += b"\x08" + _varint(pid)
    if exit_status:
        out += b"\x10" + _varint(exit_status)
    return out + b"\x1a" + _varint(len(ts)) + ts


def read_pid(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _warn(message: str) -> None:
    # containerd logs the action's stderr as "cleanup warnings".
    sys.stderr.write(f"warning: {message}\n")


def cleanup_container(bundle: str, cid: str) -> None:
    """Kill and delete what the container's state says still exists."""
    state_dir = os.path.join(bundle, STATE_SUBDIR)
    if not os.path.exists(os.path.join(state_dir, f"{cid}.json")):
        return
    from ..container import Container
    from ..errors import ContainerLookupError

    try:
        Container.load(state_dir, cid).delete(force=True)
    except ContainerLookupError:
        return    # deleted meanwhile (a daemon still serving it)


def remove_dead_socket(bundle: str) -> None:
    """The socket named in ``<bundle>/address``, if it exists and nobody answers on it."""
    try:
        with open(os.path.join(bundle, "address")) as f:
            address = f.read().strip()
    except OSError:
        return
    path = address[len("unix://"):] if address.startswith("unix://") else address
    if not path.startswith("/") or not os.path.exists(path):
        return
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
        s.settimeout(1.0)
        try:
            s.connect(path)
            return    # a daemon serves it (another container of its group)
        except OSError:
            pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def delete(flags: Flags) -> int:
    """The action: clean up, print the DeleteResponse, return 0."""
    bundle = flags.bundle or os.getcwd()
    try:
        cleanup_container(bundle, flags.id)
    except Exception as exc:   # a warning: containerd goes on to remove the bundle
        _warn(f"cleaning up container {flags.id}: {exc}")
    try:
        remove_dead_socket(bundle)
    except OSError as exc:
        _warn(f"removing the shim socket: {exc}")
    pid = read_pid(os.path.join(bundle, "init.pid"))
    sys.stdout.buffer.write(delete_response(pid, SIGKILL_STATUS, time.time_ns()))
    return 0
