"""Execs, signals and deletes of a task: the runc shim's pkg/process, in-process.

``Exec`` only records a process (containerd's spec, an Any holding the OCI
``process`` as JSON); ``Start`` runs it with ``Container.exec_process``,
which returns once the program has been executed.  The process is owned
by the exit router from ``on_started`` on (before the reaper watches it)
and holds its exit until ``TaskExecStarted`` is published.

Signals go through pidfds only: init's through ``Container.kill`` (``all``:
every process of its cgroup), an exec's through its :class:`pidsafe.Process`.
A process whose exit has been recorded answers NotFound ("process already
finished"), as runc's ``checkKillError`` makes it.
"""

from __future__ import annotations

import json
import socket

from .._sigsafe import critical
from ..errors import ConfigError, ContainerStateError
from ._errors import failed_precondition, invalid_argument, not_found, rpc_error
from ._task import CREATED, PAUSED, RUNNING, STOPPED, drop_started

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional

    from ..process import Process
    from ..reaper import Reaper
    from ._exits import ExitRouter
    from ._task import ShimContainer, ShimProcess

#: What containerd packs an exec's process in (runtime/typeurl.go).
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"


def parse_exec_spec(spec: Any, terminal: bool) -> Any:
    """An ``ExecProcessRequest.spec`` as a :class:`pidsafe.container.ProcessSpec`.

    ``process.terminal`` comes from the request, as the runc shim sets it.

    Raises:
        RpcError: InvalidArgument naming the JSON path of what is wrong.
    """
    from ..container import JsonObject, parse_process

    if spec is None or not spec.value:
        raise invalid_argument("exec: no process spec")
    try:
        doc = json.loads(spec.value)
    except ValueError as exc:
        raise invalid_argument(f"exec: the process spec is not JSON ({spec.type_url}): "
                               f"{exc}") from None
    if isinstance(doc, dict):
        doc = dict(doc, terminal=terminal)
    try:
        return parse_process(JsonObject(doc, "process"))
    except ConfigError as exc:
        raise invalid_argument(f"exec: {exc}") from None


def start_exec(c: ShimContainer, proc: ShimProcess, *, namespace: str, reaper: Reaper,
               router: ExitRouter) -> Process:
    """Run an exec; it holds its exit (the caller publishes TaskExecStarted, then
    ``proc.release()``).  On failure nothing of it is left running.

    Raises:
        ContainerStateError, ContainerError, OSError: from the library or the stdio.
    """
    from ._stdio import open_io
    from ._tty import console_pair, relay_console

    owned: List[Process] = []
    socks: List[socket.socket] = []
    io: Any = None
    relay: Any = None
    process: Optional[Process] = None

    def on_started(p: Process) -> None:
        owned.append(p)
        proc.hold()
        router.own(p, proc)

    try:
        if proc.stdio.terminal:
            console_pair(socks)
        else:
            io = open_io(proc.stdio, container_id=c.id, namespace=namespace, reaper=reaper)
        child = io.child if io is not None else (None, None, None)
        process = c.container.exec_process(
            proc.spec, exec_id=proc.exec_id, stdin=child[0], stdout=child[1],
            stderr=child[2], on_started=on_started,
            console_socket=socks[1] if socks else None)
        if io is not None:
            io.close_child_side()
        if socks:
            relay = relay_console(socks, proc.stdio.stdin, proc.stdio.stdout)
        proc.io, proc.console = io, relay
        return process
    except BaseException:
        with critical:
            drop_started(router, owned, socks, relay, io)
            if process is not None:
                process.kill()       # through its pidfd; the reaper reaps it
                c.container.release_exec(proc.exec_id)
        raise


def kill(proc: ShimProcess, sig: int, all: bool) -> None:
    """``Kill``: runc's rules for init (``all``: the whole cgroup) and for execs.

    Raises:
        RpcError: NotFound once the exit is recorded; FailedPrecondition for
            an exec not started yet.
    """
    c = proc.container
    assert c is not None
    if proc.status == STOPPED:
        raise not_found(f"kill: process already finished ({proc.id})")
    if proc is c.init:
        try:
            c.container.kill(sig, all=all)
        except ContainerStateError:
            raise not_found(f"kill: process already finished ({proc.id})") from None
        except Exception as exc:
            raise rpc_error(exc, "kill") from exc
        return
    if proc.process is None:
        raise failed_precondition(f"kill: process not created ({proc.id})")
    try:
        proc.process.send_signal(sig)
    except (ProcessLookupError, ValueError):
        raise not_found(f"kill: process already finished ({proc.id})") from None


def delete_exec(c: ShimContainer, proc: ShimProcess, io_wait: float = 2.0) -> None:
    """``Delete`` of an exec: refused while it runs; its stdio closed, its id free again."""
    with c.lock:
        if proc.status == RUNNING or proc.starting:
            raise failed_precondition(f"delete: process {proc.id!r} is running")
        c.execs.pop(proc.exec_id, None)
    if proc.status == CREATED:
        proc.set_failed()    # never started: a Wait on it returns
    if proc.console is not None:
        proc.console.wait(io_wait)
    proc.close()
    c.container.release_exec(proc.exec_id)


def delete_init(c: ShimContainer, *, io_wait: float, exit_wait: float) -> None:
    """``Delete`` of init: refused while it runs; a created one is killed (its
    TaskExit first).  Then the container goes (rootfs unmounted, cgroup and
    state removed) and every stdio of it is closed.

    Raises:
        RpcError: FailedPrecondition while init runs.
        OSError, pidsafe.Error: the library could not remove something (the
            container stays, and can be deleted again).
    """
    init = c.init
    status = c.status_of(init)
    if status in (RUNNING, PAUSED) or init.starting:
        raise failed_precondition(f"delete: container {c.id!r} is running")
    c.container.delete(force=True)
    if status == CREATED:
        init.exited.wait(exit_wait)    # the killed init's TaskExit before TaskDelete
    if init.console is not None:
        init.console.wait(io_wait)
    with c.lock:
        execs, c.execs = list(c.execs.values()), {}
    for proc in [init, *execs]:
        if not proc.exited.is_set():
            proc.set_failed()
        proc.close()
