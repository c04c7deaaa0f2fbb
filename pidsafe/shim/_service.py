"""The task service (``containerd.task.v2.Task``): every method containerd 1.6 calls.

Each method takes a request message and returns a response message (the
ttrpc binding in ``_daemon`` is one line per method), so the whole service
runs in-process in tests, with no socket.  Errors are
:class:`pidsafe.errors.RpcError` with the codes containerd acts on
(``_errors``).  Behaviour follows the runc shim of containerd 1.6
(runtime/v2/runc/task/service.go, pkg/process/*), with the later exit-order
fixes (runtime/v2/runc/task/service.go at v1.6.39).

Concurrency: the ttrpc server runs each request in a thread of its own
(``Wait`` blocks for a process's life while the rest go on).  There is no
big lock: the table of containers (``_table``) has a lock of its own, each
container's ``lock`` guards only its own fields, and neither is held
across a create, a start or a delete.  Two creates run their bring-ups at once, unless the
sandbox asks for them one at a time (``org.pidsafe.bringup=serial``,
``_sandbox``).

Exits go from the reaper through ``_exits`` (:class:`ExitRouter`, then
:class:`ExitOrder`): each is recorded, then ``Wait`` released, then TaskExit
published; an init's TaskExit only after its execs'.
"""

from __future__ import annotations

import contextlib
import json
import os

from ..errors import RpcError
from . import _messages as m
from ._create import bring_up, read_config
from ._errors import (already_exists, failed_precondition, invalid_argument, not_found,
                      rpc_error, unimplemented)
from ._events import Topic
from ._exits import ExitOrder, ExitRouter, timestamp
from ._group import Group
from ._oom import ContainerOoms
from ._pod import Pods
from ._table import ContainerTable
from ._task import CREATED, PAUSED, RUNNING, STOPPED, ShimContainer, ShimProcess, Stdio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ContextManager, Dict, List, Optional, Protocol

    from ..reaper import Reaper
    from ._codec import Message

    class Events(Protocol):
        """Where events go (``pidsafe.shim.Publisher``): queued, never blocking."""

        def publish(self, topic: str, event: Message) -> Any: ...

#: How long Delete waits for a terminal's output to be copied (the runc shim's 2 s).
IO_WAIT = 2.0
#: How long Delete of a created container waits for the killed init's exit.
EXIT_WAIT = 10.0


class TaskService:
    """The shim's task service over the containers of one namespace.

    Args:
        namespace: containerd's namespace (``-namespace``).
        events: where events are published (``Publisher``).
        reaper: the daemon's running :class:`pidsafe.Reaper` (a subreaper).
        shutdown: called once by ``Shutdown`` when no container is left.
        group_lock: held around the decision to close (the daemon's: the
            lock ``start`` takes to find or make a group's daemon).
        closing: called under ``group_lock`` once the daemon closes, before
            ``shutdown`` (the daemon's: remove the socket, so that a later
            ``start`` of the group makes a daemon of its own).
    """

    def __init__(self, *, namespace: str, events: Events, reaper: Reaper,
                 shutdown: Callable[[], None] = lambda: None,
                 group_lock: Callable[[], ContextManager[Any]] = contextlib.nullcontext,
                 closing: Callable[[], None] = lambda: None) -> None:
        self.namespace = namespace
        self._events = events
        self._reaper = reaper
        self._table = ContainerTable()
        self._group = Group(self._table, shutdown=shutdown, group_lock=group_lock,
                            closing=closing)
        self.pods = Pods(self._table.get)
        #: The per-sandbox bring-up locks (``_sandbox``); its ``trace`` may be set.
        self.bringups = self.pods.bringups
        self._ooms = ContainerOoms(lambda cid: self._publish(
            Topic.OOM, m.TaskOOM(container_id=cid)))
        self._exits = ExitOrder(self._publish)
        self._router = ExitRouter(reaper, self._exits.on_exit)
        self._router.start()

    def close(self) -> None:
        """Stop routing exits and watching OOMs (the daemon is exiting)."""
        self._group.cancel()
        self._router.stop()
        self._ooms.close()

    def _publish(self, topic: str, event: Message) -> None:
        self._events.publish(topic, event)

    # -- create, start, exec ------------------------------------------------------------

    def Create(self, req: m.CreateTaskRequest) -> m.CreateTaskResponse:
        cid = req.id
        if not cid:
            raise invalid_argument("create: the container id is empty")
        if req.checkpoint:
            raise unimplemented("create: restoring a checkpoint is not supported")
        self._table.reserve(cid, self._group)   # Unavailable while closing
        config: Optional[Dict[str, Any]] = None
        try:
            config = read_config(os.path.abspath(req.bundle))
            self.pods.check(cid, config)
            maps, userns = self.pods.userns(os.path.abspath(req.bundle), config, cid)
            try:
                with self.bringups.turn(config, cid):
                    c = bring_up(req, config, namespace=self.namespace, reaper=self._reaper,
                                 router=self._router, idmap=maps)
            finally:
                if userns is not None:
                    os.close(userns)
        except BaseException as exc:
            self._table.remove(cid)
            if config is not None and isinstance(exc, Exception):
                # Its sandbox went during the bring-up (joining the pause's
                # namespaces failed): say that, as a create refused before.
                self.pods.check(cid, config)
            raise rpc_error(exc, "create") from exc
        self.pods.created(c, config)
        self._table.put(cid, c)
        self._publish(Topic.CREATE, m.TaskCreate(
            container_id=cid, bundle=req.bundle, rootfs=req.rootfs, checkpoint=req.checkpoint,
            io=m.TaskIO(stdin=req.stdin, stdout=req.stdout, stderr=req.stderr,
                        terminal=req.terminal), pid=c.init.pid))
        self._exits.end_hold(c.init)
        return m.CreateTaskResponse(pid=c.init.pid)

    def Start(self, req: m.StartRequest) -> m.StartResponse:
        c = self._table.container(req.id)
        if req.exec_id:
            return self._start_exec(c, req.exec_id)
        init = c.init
        with c.lock:
            if init.status != CREATED or init.starting:
                raise failed_precondition(f"start: container {c.id!r} is not in the created "
                                          "state")
            init.starting = True
        cg, oom_before = self._ooms.baseline(c.container)
        init.hold()
        try:
            c.container.start()
        except BaseException as exc:
            self._exits.end_hold(init)
            raise rpc_error(exc, "start") from exc
        finally:
            init.starting = False
        assert init.process is not None
        init.set_running(init.process)
        self._publish(Topic.START, m.TaskStart(container_id=c.id, pid=init.pid))
        self._exits.end_hold(init)
        if cg is not None:
            c.oom = self._ooms.watch(c.id, cg, oom_before)
        return m.StartResponse(pid=init.pid)

    def _start_exec(self, c: ShimContainer, exec_id: str) -> m.StartResponse:
        from ._exec import start_exec

        proc = c.process(exec_id)
        if proc is None:
            raise not_found(f"start: process {exec_id!r} does not exist in container {c.id!r}")
        with c.lock:
            if c.init_exited:
                raise failed_precondition(f"container {c.id} init process is not running")
            if proc.status != CREATED or proc.starting:
                raise failed_precondition(f"start: process {exec_id!r} was started already")
            proc.starting = True
            c.running_execs += 1
        try:
            process = start_exec(c, proc, namespace=self.namespace, reaper=self._reaper,
                                 router=self._router)
        except BaseException as exc:
            proc.set_failed()
            self._exits.exec_gone(c)
            raise rpc_error(exc, "start") from exc
        finally:
            proc.starting = False
        proc.set_running(process)
        self._publish(Topic.EXEC_STARTED, m.TaskExecStarted(container_id=c.id, exec_id=exec_id,
                                                            pid=proc.pid))
        self._exits.end_hold(proc)
        return m.StartResponse(pid=proc.pid)

    def Exec(self, req: m.ExecProcessRequest) -> m.Empty:
        from ._exec import parse_exec_spec

        c = self._table.container(req.id)
        if not req.exec_id:
            raise invalid_argument("exec: the exec id is empty")
        spec = parse_exec_spec(req.spec, bool(req.terminal))
        proc = ShimProcess(c.id, req.exec_id,
                           Stdio(req.stdin, req.stdout, req.stderr, bool(req.terminal)), spec)
        proc.container = c
        with c.lock:
            if req.exec_id in c.execs:
                raise already_exists(f"exec: id {req.exec_id}")
            if c.init_exited or c.init.status == STOPPED:
                raise failed_precondition(f"exec: container {c.id!r} is stopped")
            if c.paused:
                raise failed_precondition(f"exec: container {c.id!r} is paused")
            c.execs[req.exec_id] = proc
        self._publish(Topic.EXEC_ADDED, m.TaskExecAdded(container_id=c.id, exec_id=req.exec_id))
        return m.Empty()

    # -- queries -------------------------------------------------------------------------

    def State(self, req: m.StateRequest) -> m.StateResponse:
        c = self._table.container(req.id)
        proc = self._table.process(req.id, req.exec_id)
        s = proc.stdio
        return m.StateResponse(
            id=proc.id, bundle=c.bundle, pid=proc.pid, status=c.status_of(proc),
            stdin=s.stdin, stdout=s.stdout, stderr=s.stderr, terminal=s.terminal,
            exit_status=proc.exit_status, exited_at=timestamp(proc.exited_at_ns))

    def Wait(self, req: m.WaitRequest) -> m.WaitResponse:
        proc = self._table.process(req.id, req.exec_id)
        proc.exited.wait()
        return m.WaitResponse(exit_status=proc.exit_status,
                              exited_at=timestamp(proc.exited_at_ns))

    def Connect(self, req: m.ConnectRequest) -> m.ConnectResponse:
        c = self._table.get(req.id)
        return m.ConnectResponse(shim_pid=os.getpid(), task_pid=c.init.pid if c else 0)

    def Pids(self, req: m.PidsRequest) -> m.PidsResponse:
        c = self._table.container(req.id)
        try:
            pids = c.container.pids()
        except Exception as exc:
            raise rpc_error(exc, "pids") from exc
        with c.lock:
            by_pid = {p.pid: p.exec_id for p in c.execs.values() if p.pid}
        out: List[m.ProcessInfo] = []
        for pid in pids:
            info = None
            if pid in by_pid:
                info = m.Any.pack(m.ProcessDetails(exec_id=by_pid[pid]))
            out.append(m.ProcessInfo(pid=pid, info=info))
        return m.PidsResponse(processes=out)

    def Stats(self, req: m.StatsRequest) -> m.StatsResponse:
        from ._metrics import metrics

        c = self._table.container(req.id)
        cg = c.container.cgroup()
        if cg is None:
            raise not_found(f"stats: container {c.id!r} has no cgroup")
        try:
            return m.StatsResponse(stats=metrics(cg))
        except Exception as exc:
            raise rpc_error(exc, "stats") from exc

    # -- control -------------------------------------------------------------------------

    def Kill(self, req: m.KillRequest) -> m.Empty:
        from ._exec import kill

        proc = self._table.process(req.id, req.exec_id)
        if not 0 < req.signal < 65:
            raise invalid_argument(f"kill: bad signal {req.signal}")
        kill(proc, req.signal, bool(req.all))
        return m.Empty()

    def Pause(self, req: m.PauseRequest) -> m.Empty:
        return self._pause(req.id, True)

    def Resume(self, req: m.ResumeRequest) -> m.Empty:
        return self._pause(req.id, False)

    def _pause(self, cid: str, paused: bool) -> m.Empty:
        """Pause (freeze) or resume container ``cid``, then publish TaskPaused/TaskResumed."""
        c = self._table.container(cid)
        try:
            if paused:
                c.container.pause()
            else:
                c.container.resume()
        except Exception as exc:
            raise rpc_error(exc, "pause" if paused else "resume") from exc
        c.paused = paused
        if paused:
            self._publish(Topic.PAUSED, m.TaskPaused(container_id=c.id))
        else:
            self._publish(Topic.RESUMED, m.TaskResumed(container_id=c.id))
        return m.Empty()

    def Update(self, req: m.UpdateTaskRequest) -> m.Empty:
        c = self._table.container(req.id)
        resources: Any = {}
        if req.resources is not None and req.resources.value:
            try:
                resources = json.loads(req.resources.value)
            except ValueError as exc:
                raise invalid_argument(f"update: resources are not JSON: {exc}") from None
        if not isinstance(resources, dict):
            raise invalid_argument("update: linux.resources: must be an object")
        try:
            c.container.update(resources)
        except Exception as exc:
            raise rpc_error(exc, "update") from exc
        return m.Empty()

    def ResizePty(self, req: m.ResizePtyRequest) -> m.Empty:
        proc = self._table.process(req.id, req.exec_id)
        if proc.console is not None:
            proc.console.resize(req.width, req.height)   # after the exit: a no-op
        return m.Empty()

    def CloseIO(self, req: m.CloseIORequest) -> m.Empty:
        proc = self._table.process(req.id, req.exec_id)
        if req.stdin:
            for part in (proc.console, proc.io):
                if part is not None:
                    part.close_stdin()
        return m.Empty()

    def Checkpoint(self, req: m.CheckpointTaskRequest) -> m.Empty:
        raise unimplemented("checkpoint is not supported by containerd-shim-pidsafe-v1")

    # -- delete and shutdown ------------------------------------------------------------

    def Delete(self, req: m.DeleteRequest) -> m.DeleteResponse:
        from ._exec import delete_exec, delete_init

        c = self._table.container(req.id)
        proc = self._table.process(req.id, req.exec_id)
        if proc is not c.init:
            delete_exec(c, proc)
        else:
            try:
                delete_init(c, io_wait=IO_WAIT, exit_wait=EXIT_WAIT)
            except Exception as exc:
                raise rpc_error(exc, "delete") from exc
            if c.oom is not None:
                self._ooms.remove(c.id)
            self._table.remove(c.id)
            self.pods.deleted(c)
            self._publish(Topic.DELETE, m.TaskDelete(
                container_id=c.id, pid=proc.pid, exit_status=proc.exit_status,
                exited_at=timestamp(proc.exited_at_ns)))
        return m.DeleteResponse(pid=proc.pid, exit_status=proc.exit_status,
                                exited_at=timestamp(proc.exited_at_ns))

    def Shutdown(self, req: m.ShutdownRequest) -> m.Empty:
        self._group.close_if_idle()
        return m.Empty()

    def Join(self, req: m.ConnectRequest) -> m.Empty:
        """``start`` of container ``req.id`` found this daemon (its group's): it waits for
        that Create before it closes (``_group``).  Not a containerd method.

        Raises:
            RpcError: Unavailable, the daemon is closing (``start`` makes another).
        """
        with self._table.lock:
            self._group.join(req.id)
        return m.Empty()

    @property
    def container_ids(self) -> List[str]:
        """The ids of the containers this shim holds (created or being created)."""
        return self._table.ids()
