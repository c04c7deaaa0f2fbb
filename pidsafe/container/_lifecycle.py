"""A container's lifecycle steps after create: start, kill, delete.

Each step acts on what a :class:`pidsafe.Container` owns: its init
(:class:`._init_handle.InitHandle`) and its recorded state
(:class:`._recorded_state.RecordedState`).  start and delete read the
record again under the state's lock, act, and save or destroy it; the
hooks that runtime-spec's lifecycle puts after a step run once the lock
is released.  pidsafe-runc runs start, kill and delete as commands of
their own: what only one step needs is imported inside it.
"""

from __future__ import annotations

from .. import _lite, _log
from .._sigsafe import critical, undoing
from ..errors import ContainerStateError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Optional

    from ..errors import HookError
    from ..process import Process
    from ._container_exec import Execs
    from ._init_handle import InitHandle
    from ._recorded_state import RecordedState


def _as_it_is(exc: BaseException) -> None:
    """The undo of start's and delete's sections: nothing.  A start that
    fails leaves the container created (or, past the gate, running), a
    delete that fails leaves what the next one finishes; what each opens
    it closes itself, in a ``try`` no handler can cut short."""


def start(init: InitHandle, recorded: RecordedState) -> None:
    """:meth:`pidsafe.Container.start` (see there)."""
    init.check_owner()
    # One section: a handler runs only at its waits (the lock, the gate,
    # init's report, the hooks: _sigsafe.interruptibly), so every fd it
    # opens (the lock, the gate's write end, the status pipe) is closed by
    # its own try whatever is raised, and a handler's exception otherwise
    # comes out at its end.
    with undoing(_as_it_is, interruptible=True):
        _start(init, recorded)


def _start(init: InitHandle, recorded: RecordedState) -> None:
    from ._gate import check_exec, open_gate, remove_gate

    failed: Optional[HookError] = None
    state = recorded.state_file()
    with state.locked():
        record = recorded.reload(state)
        status = recorded.status(init.alive)
        if status != "created":
            raise ContainerStateError(f"cannot start container {recorded.id!r}: it is "
                                      f"{status}")
        if record.has_hooks("startContainer") and init.process is not None:
            from ._hooks import run_start_hooks

            failed = run_start_hooks(recorded.spec(), record, init.process, state)
        if failed is None:
            open_gate(record.fifo, init.process, recorded.id,
                      wait_exec=record.has_hooks("poststart"))
            record.started = True   # in this handle; for others, the gate is gone
            with critical:
                remove_gate(record.fifo)
                _log.debug("container", "container %s started: init pid %s", recorded.id,
                           init.pid)
    if failed is not None:
        init.close_if_done()
        recorded.run_hooks("poststop", "stopped", None)
        raise failed
    status_fd = init.take_status()
    if status_fd is not None:
        check_exec(status_fd, init.process)
    recorded.run_hooks("poststart", "running", init.pid)


def kill(init: InitHandle, recorded: RecordedState, sig: int, all: bool) -> None:
    """:meth:`pidsafe.Container.kill` (see there)."""
    init.check_owner()
    if all:
        cg = recorded.cgroup()
        if cg is not None:
            cg.kill(sig)
            return
    init.signal(sig)
    if sig == _lite.SIGKILL and recorded.record.frozen():
        # In a frozen v1 cgroup even SIGKILL waits for a thaw (runc thaws too).
        cg = recorded.cgroup()
        if cg is not None:
            cg.thaw()


def exec_ready(init: InitHandle) -> Process:
    """Init, which runs and can take an exec (see also :func:`exec_not_paused`).

    Raises:
        ContainerStateError: init is gone.
    """
    return init.running()


def exec_not_paused(recorded: RecordedState) -> None:
    """Refuse an exec into a paused container: moved into the frozen cgroup,
    the process could never report back.  Checked once pidsafe-init is
    cloned and before it has its ops (nothing has joined the cgroup yet),
    while it starts: the freezer is read off the exec's critical path.

    Raises:
        ContainerStateError: the container is paused.
    """
    if recorded.record.frozen():
        raise ContainerStateError(f"cannot exec in container {recorded.id!r}: it is paused")


def delete(init: InitHandle, recorded: RecordedState, execs: Execs, reaper: Any,
           force: bool) -> None:
    """:meth:`pidsafe.Container.delete` (see there)."""
    init.check_owner()
    # One section, as start: a handler runs only at its waits (the lock,
    # init's death), and a delete it stops is finished by the next one.
    with undoing(_as_it_is, interruptible=True):
        _delete(init, recorded, execs, reaper, force)


def _delete(init: InitHandle, recorded: RecordedState, execs: Execs, reaper: Any,
            force: bool) -> None:
    state = recorded.state_file()
    if not state.exists():   # deleted already: do not even create a lock file
        init.close_if_done()
        return
    from ._records import end, undo

    with state.locked():
        if not state.exists():
            init.close_if_done()
            return
        record = recorded.reload(state)
        init.reopen(record)
        if init.alive():
            if not force and record.status != "creating":
                raise ContainerStateError(f"cannot delete container {recorded.id!r}: it is "
                                          f"{recorded.status(init.alive)} (use force=True)")
            process = init.process
            assert process is not None
            cg = recorded.cgroup() if record.frozen() else None
            if cg is not None:
                process.kill()   # a frozen v1 init dies only once thawed
                cg.thaw()
            _end_execs(process, execs, reaper)
            end(process)
        with critical:
            undo(state, record)
            _log.debug("container", "container %s deleted from %s", recorded.id,
                       recorded.state_dir)
    init.close_if_done()
    recorded.run_hooks("poststop", "stopped", None)


def _end_execs(init: Process, execs: Execs, reaper: Any) -> None:
    """Kill init, and reap the execs of this handle as they die with it:
    until they are reaped, init's exit cannot complete."""
    if reaper is not None or not execs.unreaped():
        return
    from ._container_exec import wait_init
    from ._records import KILL_TIMEOUT

    try:
        init.kill()
    except ProcessLookupError:
        return
    wait_init(init, execs, None, KILL_TIMEOUT)
