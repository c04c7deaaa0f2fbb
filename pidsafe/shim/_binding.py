"""The task service on a ttrpc server: each rpc of ``containerd.task.v2.Task``.

One handler per method of the generated ``TaskService`` descriptor, each
the :class:`~pidsafe.shim._service.TaskService` method of the same name; a
method the service lacks is left unregistered, so the server answers it
UNIMPLEMENTED (as containerd requires of an unsupported rpc).

``PIDSAFE_SHIM_TRACE=FILE`` in the daemon's environment appends one JSON
line per request to FILE (the rpc, the container, wall-clock start and
end); ``benchmarks/bench_shim.py`` reads it to say where the time goes.
"""

from __future__ import annotations

import os

from ._messages import TaskService as TaskMethods

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ._connection import Context
    from ._server import Server
    from ._service import TaskService

TRACE_ENV = "PIDSAFE_SHIM_TRACE"


#: ttrpc's name of the one method of pidsafe's own: ``start`` joining a group's daemon.
JOIN_SERVICE, JOIN_METHOD = "pidsafe.shim.v1.Group", "Join"


def register(server: Server, service: TaskService) -> None:
    """Register every method ``service`` implements on ``server``, and ``Join``."""
    from ._messages import ConnectRequest, Empty
    from ._method import Method

    trace = os.environ.get(TRACE_ENV)
    join = Method(JOIN_SERVICE, JOIN_METHOD, ConnectRequest, Empty)
    for method in (*TaskMethods.METHODS, join):
        fn = getattr(service, method.name, None)
        if fn is not None:
            server.register(method, _traced(method.name, fn, trace) if trace else _handler(fn))


def _handler(fn: Callable[[Any], Any]) -> Callable[[Any, Context], Any]:
    def handle(req: Any, ctx: Context) -> Any:
        return fn(req)
    return handle


def trace_event(path: str, **fields: Any) -> None:
    """Append one JSON line to the trace file (one write: lines never interleave)."""
    import json

    fields.setdefault("pid", os.getpid())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (json.dumps(fields) + "\n").encode())
    finally:
        os.close(fd)


def _traced(name: str, fn: Callable[[Any], Any], path: str) -> Callable[[Any, Context], Any]:
    import time

    def handle(req: Any, ctx: Context) -> Any:
        t0, c0 = time.time(), time.thread_time()
        ok = False
        try:
            resp = fn(req)
            ok = True
            return resp
        finally:
            trace_event(path, rpc=name, id=getattr(req, "id", ""),
                        exec_id=getattr(req, "exec_id", ""), t0=t0, t1=time.time(), ok=ok,
                        cpu=time.thread_time() - c0)
    return handle
