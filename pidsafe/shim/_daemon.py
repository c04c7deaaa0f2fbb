"""The shim daemon: the task service on ttrpc, until containerd shuts it down.

What the Go shim's ``run``/``serve`` do (runtime/v2/shim/shim.go,
shim_unix.go at v1.6.20), with pidsafe underneath:

- logs go to the bundle's ``log`` FIFO (containerd holds it open and copies
  it into its own log), which also becomes fd 2; never stdout;
- one :class:`pidsafe.Reaper` in subreaper mode: every container process
  is held by its pidfd and reaped through it, orphans of the containers
  are reaped too, and exits reach the service by process object;
- events go to containerd's ``TTRPC_ADDRESS`` through the wire layer's
  :class:`~pidsafe.shim.Publisher` (ordered, retried, never blocking);
- the task service answers on the socket ``start`` bound (or ``-socket``);
- ``Shutdown`` (once no container is left), SIGTERM or SIGINT end it: the
  server stops, the socket named in ``address`` is removed, the publisher
  gets up to 5 s to deliver what is queued, and the process exits.

The daemon serves every container of its group (a pod, with CRI), each by
its id; it exits only when the last one has been deleted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading

from . import _log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator, Optional, Tuple

    from ._cli import Flags


#: How long the publisher may take to deliver the last events at exit (Go: 5 s).
PUBLISH_DRAIN = 5.0
#: How long requests in flight get to finish once the daemon stops.
SERVER_DRAIN = 1.0


def open_log(bundle: str, debug: bool) -> None:
    """Make fd 2 the bundle's ``log`` FIFO (containerd holds it open for reading);
    keep /dev/null if it cannot be opened (started by hand, containerd gone)."""
    _log.debug = debug
    try:
        fd = os.open(os.path.join(bundle, "log"), os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    os.set_blocking(fd, True)
    os.dup2(fd, 2)       # not close-on-exec; containers get their stdio explicitly
    os.close(fd)


def _unix_path(address: str) -> str:
    return address[len("unix://"):] if address.startswith("unix://") else address


def _listener(flags: Flags, sock: Optional[socket.socket]) -> socket.socket:
    if sock is not None:
        return sock
    if flags.socket:
        path = _unix_path(flags.socket)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.bind(path)
        os.chmod(path, 0o600)
        s.listen(128)
        return s
    return socket.socket(fileno=3)     # the Go shim's way: the socket as fd 3


def socket_path(bundle: str) -> Optional[str]:
    """The socket named in ``<bundle>/address`` (``start`` wrote it before the fork)."""
    try:
        with open(os.path.join(bundle, "address")) as f:
            address = f.read().strip()
    except OSError:
        return None
    return address[len("unix://"):] if address.startswith("unix://") else address


def socket_id(path: Optional[str]) -> Optional[Tuple[int, int]]:
    """The (device, inode) of the socket at ``path`` now, or None."""
    try:
        st = os.lstat(path) if path else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st is not None else None


def remove_socket(path: Optional[str], ours: Optional[Tuple[int, int]] = None) -> None:
    """Remove our socket (its path read at start-up: the bundle that named it may be
    gone by then, deleted with the first container of a group); with ``ours``, only
    if the path is still that socket, not a later daemon's of the same group."""
    if path and (ours is None or socket_id(path) == ours):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


@contextlib.contextmanager
def group_lock(path: Optional[str]) -> Iterator[None]:
    """``start``'s lock on the socket directory (``_dirlock``), if we have a path."""
    if not path:
        yield
        return
    from ._dirlock import lock_dir

    fd = lock_dir(os.path.dirname(path))
    try:
        yield
    finally:
        os.close(fd)


def serve(flags: Flags, sock: Optional[socket.socket] = None) -> int:
    """Run the daemon until it is shut down; the exit status."""
    bundle = flags.bundle or os.getcwd()
    os.chdir(bundle)
    open_log(bundle, flags.debug)
    try:
        return _serve(flags, bundle, _listener(flags, sock))
    except BaseException:
        _log.exception("the shim daemon failed")
        return 1


def _serve(flags: Flags, bundle: str, listener: socket.socket) -> int:
    path = socket_path(bundle) if flags.socket == "" else _unix_path(flags.socket)
    ours = socket_id(path)
    from ..reaper import Reaper
    from . import Publisher, Server
    from ._binding import register
    from ._service import TaskService

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    reaper = Reaper(subreaper=True).start()
    publisher = Publisher.from_env(flags.namespace)
    # Once it decides to close, under start's lock, the socket goes: a later start
    # of the group then makes a daemon of its own instead of joining this one.
    service = TaskService(namespace=flags.namespace, events=publisher, reaper=reaper,
                          shutdown=stop.set, group_lock=lambda: group_lock(path),
                          closing=lambda: remove_socket(path, ours))
    trace = os.environ.get("PIDSAFE_SHIM_TRACE")
    if trace:
        from ._binding import trace_event

        def bringup(what: str, sandbox: str, cid: str, t_ns: int) -> None:
            trace_event(trace, bringup=what, sandbox=sandbox, id=cid, t_ns=t_ns)

        service.bringups.trace = bringup
    server = Server()
    register(server, service)
    server.start(listener)
    if os.environ.get("PIDSAFE_SHIM_TRACE"):
        import time

        from ._binding import trace_event

        trace_event(os.environ["PIDSAFE_SHIM_TRACE"], event="serving", t=time.time(),
                    cpu=time.process_time())
    _log.log("info", f"serving containerd's {flags.id} requests (namespace {flags.namespace})")
    while not stop.wait(3600):
        pass
    _log.log("info", f"shutting down (containers left: {service.container_ids or 'none'})")
    server.shutdown(SERVER_DRAIN)
    remove_socket(path, ours)
    service.close()
    if not publisher.close(PUBLISH_DRAIN):
        _log.log("warning", "events were still queued at exit")
    reaper.stop()
    return 0
