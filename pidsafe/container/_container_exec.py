"""Processes in a running container: the exec ids of a handle, and its pids.

:class:`Execs` is owned by a :class:`pidsafe.Container`: it reserves each
exec id and starts the process (:mod:`._exec`), hands it out with its
pipes, and registers it with the container's reaper.  Kept apart from the
lifecycle in :mod:`._container`: the exec path loads the config, the
planner and pidsafe-init's protocol, which ``start``, ``state``, ``kill``
and ``delete`` never need (tests/cli/test_runc_imports.py).
"""

from __future__ import annotations

import os

from .. import _lite
from .._sigsafe import critical, interruptibly, undoing
from ..errors import ContainerStateError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    from .._fd import OwnedFd
    from ..process import Process
    from .cgroup import Cgroup
    from .config import ProcessSpec, Spec, User
    from ._console import ConsoleSocket


class Execs:
    """The processes one container handle exec'd, by exec id.

    An id is reserved atomically, for as long as the handle lives: a second
    exec with it raises, even while the first is starting.
    """

    def __init__(self, container_id: str) -> None:
        self._container = container_id
        self._lock = _lite.Lock()
        self._procs: Dict[str, Optional[Process]] = {}

    def start(self, exec_id: str, process: ProcessSpec, *, ready: Callable[[], Process],
              spec: Callable[[], Spec], cgroup: Optional[Cgroup], reaper: Any,
              stdio: Sequence[Any], on_started: Optional[Callable[[Process], None]],
              preserve_fds: int, console_socket: Optional[ConsoleSocket],
              not_paused: Optional[Callable[[], None]] = None) -> Process:
        """Reserve ``exec_id``, then start ``process`` in the container.

        Args:
            ready: once the id is reserved, checks that the container can
                take an exec and returns its init (raises otherwise).
            spec: the container's spec.
            cgroup: the container's cgroup (None: init's, as read now).
            reaper: the container's reaper, or None.
            stdio, on_started, preserve_fds, console_socket: as for
                :meth:`pidsafe.Container.exec_process`.
            not_paused: if given, raises if the container is paused; called
                once pidsafe-init is cloned, before it has its ops (see
                :func:`._exec.exec_into`'s ``before_ops``).

        Raises:
            ConfigError: a ``process.env`` entry is not ``NAME=VALUE``.
            ContainerStateError: the id is in use, or ``ready`` or
                ``not_paused`` refused.
            ContainerError: the process could not be started.
        """
        from .config import check_env

        for i, item in enumerate(process.env):   # bad input before anything exists
            check_env(item, f"process.env[{i}]")
        consoles: List[OwnedFd] = []
        reserved = False

        def adopt(proc: Process) -> None:
            # The process is ours from the moment it exists, under its id: a
            # failure from anywhere after finds it here.
            with critical, self._lock:
                self._procs[exec_id] = proc

        def undo(exc: Optional[BaseException] = None) -> None:
            """End what this exec made and free its id (inside a section).
            Idempotent."""
            if reserved:
                with self._lock:
                    proc = self._procs.pop(exec_id, None)
                if proc is not None and not proc.closed:
                    from ._records import end

                    end(proc)
                    proc.close()
            while consoles:
                consoles.pop().close()

        try:
            # One section from the id's reservation to the handover, whose
            # undo ends the process and frees the id: whatever fails (a
            # handler raising included), the undo runs before any handler
            # can, so none can cut it short.  Its waits (for pidsafe-init,
            # for the process's report) are safe points where Ctrl-C is let
            # through (_sigsafe.interruptibly).
            with undoing(undo, interruptible=True):
                console_fd = console_for(process, console_socket, stdio, consoles)
                with self._lock:
                    if exec_id in self._procs:
                        raise ContainerStateError(f"exec id {exec_id!r} is already in use "
                                                  f"in container {self._container!r}")
                    self._procs[exec_id] = None
                    reserved = True
                proc = _run(ready(), spec(), process, cgroup, reaper, stdio, on_started,
                            preserve_fds, console_fd, adopt, not_paused)
                while consoles:
                    consoles.pop().close()
                with self._lock:
                    self._procs[exec_id] = proc
                return proc
        except BaseException:
            # Undone in the section already, or by _sigsafe for a handler
            # raising as the section's handlers were put back; a handler
            # that ran as __exit__ returned (see _sigsafe.undoing) lands here.
            with critical:
                undo()
            raise

    def release(self, exec_id: str) -> None:
        """Free ``exec_id`` (see :meth:`pidsafe.Container.release_exec`); an
        unknown id does nothing."""
        with self._lock:
            self._procs.pop(exec_id, None)

    def unreaped(self) -> List[Process]:
        """The processes exec'd through this handle that nobody has reaped,
        whose handles are open (a closed one is the abandoned-process
        registry's to reap)."""
        with self._lock:
            procs = [p for p in self._procs.values() if p is not None]
        return [p for p in procs if p.returncode is None and not p.closed]


def exec_spec(spec: Callable[[], Spec], args: Sequence[str], env: Optional[Sequence[str]],
              cwd: Optional[str], user: Optional[User], terminal: bool,
              console_size: Optional[Tuple[int, int]]) -> ProcessSpec:
    """The container's ``process`` (from ``spec``) to run ``args``, with the
    overrides of :meth:`pidsafe.Container.exec` (None: the container's); no rlimits."""
    if isinstance(args, (str, bytes)) or not args:
        raise ValueError("args must be a non-empty list of strings")
    base = spec().process
    return base.replace(
        args=tuple(args), env=tuple(env) if env is not None else base.env,
        cwd=cwd if cwd is not None else base.cwd,
        user=user if user is not None else base.user, rlimits=(), terminal=terminal,
        console_size=console_size)


def wait_init(init: Process, execs: Execs, reaper: Any, timeout: Optional[float]) -> int:
    """``init.wait(timeout)``, reaping meanwhile the execs of ``execs`` that exit.

    The kernel completes the exit of a pid namespace's init only once every
    other process of the namespace has been reaped (zap_pid_ns_processes),
    and an exec'd process is our child: while it is an unreaped zombie,
    init's pidfd never turns readable.  So wait on init's pidfd and on each
    exec's, and reap an exec the moment it has exited (its handle then
    reports the status).  With a reaper, the reaper reaps them.
    """
    execs_left = execs.unreaped() if reaper is None else []
    if not execs_left:
        return init.wait(timeout)
    import select
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        poller = select.poll()
        watched = {}
        for p in [init, *execs_left]:
            try:
                fd = p.fileno()
            except ValueError:   # closed meanwhile (by another thread)
                continue
            poller.register(fd, select.POLLIN)
            watched[fd] = p
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with interruptibly:   # a wait: Ctrl-C may end it (_sigsafe)
            ready = poller.poll(None if left is None else int(left * 1000) + 1)
        for fd, _ in ready:
            p = watched[fd]
            if p is init:
                return init.wait(0)
            p.poll()
        execs_left = [p for p in execs_left if p.returncode is None and not p.closed]
        if deadline is not None and time.monotonic() >= deadline:
            from ..errors import TimeoutExpired

            try:
                return init.wait(0)
            except TimeoutExpired as exc:   # as init.wait(timeout) would raise it
                exc.timeout = timeout if timeout is not None else 0.0
                raise


def _run(init: Process, spec: Spec, process: ProcessSpec, cgroup: Optional[Cgroup],
         reaper: Any, stdio_args: Sequence[Any], on_started: Optional[Callable[[Process], None]],
         preserve_fds: int, console_fd: int, adopt: Callable[[Process], None],
         before_ops: Optional[Callable[[], None]] = None) -> Process:
    """The exec, its pipes handed out, ``on_started``, the reaper: or nothing left."""
    from ._exec import exec_into
    from ._records import end
    from ._stdio import make_stdio

    stdio = make_stdio(*stdio_args)
    try:
        proc = exec_into(init, spec, process, stdio, cgroup, preserve_fds, console_fd, adopt,
                         before_ops)
    except BaseException:
        with critical:
            stdio.close_all()
        raise
    stdio.close_child_side()
    try:
        files = stdio.files()
    except BaseException:
        with critical:
            end(proc)
            proc.close()
        raise
    proc.stdin, proc.stdout, proc.stderr = files[0], files[1], files[2]
    try:
        if on_started is not None:
            on_started(proc)
        if reaper is not None:
            reaper.watch(proc)
    except BaseException:
        # The caller gets no handle: the process must not outlive this.
        with critical:
            end(proc)
            proc.close()
        raise
    return proc


def container_pids(init: Optional[Process], spec: Callable[[], Spec],
                   cgroup: Optional[Cgroup]) -> List[int]:
    """Host pids of a container's processes (those in init's pid namespace).

    From its cgroup; without one, the processes in init's pid namespace, or
    without a pid namespace of its own, init and its descendants.  ``init``
    is None once init is gone.
    """
    if cgroup is not None:
        return sorted(cgroup.pids())
    if init is None:
        return []
    from .. import _sys

    pid = init.pid
    try:
        own = os.stat(f"/proc/{pid}/ns/pid").st_ino
        _sys.pidfd_send_signal(init.fileno(), 0)   # the stat was of our init
    except (FileNotFoundError, ProcessLookupError):
        return []
    pid_ns = spec().linux.namespace("pid")
    has_ns = pid_ns is not None and pid_ns.path is None   # one of its own
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if has_ns:
                if os.stat(f"/proc/{name}/ns/pid").st_ino == own:
                    out.append(int(name))
            elif int(name) == pid or _descends(int(name), pid):
                out.append(int(name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return sorted(out)


def console_for(process: ProcessSpec, console_socket: Optional[ConsoleSocket],
                stdio: Sequence[Any], into: List[OwnedFd]) -> int:
    """:func:`._console.console_for`, whose module (and ``socket``) loads only for a terminal."""
    if not process.terminal and console_socket is None:
        return -1
    from ._console import console_for as connect

    return connect(process, console_socket, stdio, into)


def _descends(pid: int, ancestor: int) -> bool:
    """Whether ``pid``'s parent chain (read now from /proc) reaches ``ancestor``."""
    seen = 0
    while pid > 1 and seen < 4096:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        pid = int(stat[stat.rindex(b")") + 2:].split()[1])
        if pid == ancestor:
            return True
        seen += 1
    return False
