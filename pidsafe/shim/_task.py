"""What the shim knows of each task: a container, its init and its execs.

containerd names a process by (container id, exec id); the init's exec id
is ``""``.  A :class:`ShimProcess` is one of them as containerd sees it: a
state machine (created, running, stopped; paused is the container's), its
exit (status and time, released to every ``Wait`` at once), its stdio, and
the :class:`pidsafe.Process` that runs it once it exists.  Nothing here
asks the kernel anything: ``State`` answers from these fields, as the runc
shim answers from its own state machine (pkg/process/init_state.go).

Exits and starts race.  A process whose start (or create) is
in flight *holds* its exit: :meth:`ShimProcess.deliver` parks it, and the
thread that publishes the start event then takes it with
:meth:`ShimProcess.release` and handles it right after.  One small lock per
process, never held across a start (containerd's runc shim: "handle early
exits w/o big locks").
"""

from __future__ import annotations

import threading
import time

TYPE_CHECKING = False   # not typing's: its import is a cost at each shim start
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from ..container import Container
    from ..process import Process
    from ..reaper import Exit

#: containerd.v1.types.Status (api/types/task/task.proto).
UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING = range(6)


def drop_started(router: Any, owned: Any, socks: Any, relay: Any, io: Any) -> None:
    """Undo what a failed Create or Exec set up for its process: the exit
    router's watch of ``owned``, the console sockets, the pty relay and
    the stdio.  Inside a critical section (the caller's)."""
    for p in owned:
        router.disown(p)
    for s in socks:
        s.close()
    for part in (relay, io):
        if part is not None:
            part.close()


class Stdio:
    """The stdio a process was given, as containerd spelled it (paths or URIs)."""

    __slots__ = ("stdin", "stdout", "stderr", "terminal")

    def __init__(self, stdin: str = "", stdout: str = "", stderr: str = "",
                 terminal: bool = False) -> None:
        self.stdin, self.stdout, self.stderr, self.terminal = stdin, stdout, stderr, terminal


class ShimProcess:
    """A container's init (``exec_id == ""``) or one of its execs.

    Attributes:
        container_id, exec_id: containerd's names for it.
        stdio: as the request gave it.
        spec: an exec's process (a :class:`pidsafe.container.ProcessSpec`).
        process: the running process, once started (init: once created).
        pid: its pid as the shim sees it (0 before it exists).
        status: CREATED, RUNNING or STOPPED.
        exit_status: the exit code, or 128 + N if signal N killed it.
        exited_at_ns: when it exited (Unix time, ns); 0 before.
        exited: set once the exit is recorded (``Wait`` returns then).
        io: the stdio fds the shim keeps for it (``_stdio.ProcessIO``).
        console: its terminal relay (``_tty.ConsoleRelay``), if it has one.
        container: the :class:`ShimContainer` it belongs to.
        starting: a ``Start`` of it is in flight.
    """

    def __init__(self, container_id: str, exec_id: str, stdio: Stdio,
                 spec: Any = None) -> None:
        self.container_id = container_id
        self.exec_id = exec_id
        self.stdio = stdio
        self.spec = spec
        self.process: Optional[Process] = None
        self.pid = 0
        self.status = CREATED
        self.exit_status = 0
        self.exited_at_ns = 0
        self.exited = threading.Event()
        self.io: Any = None
        self.console: Any = None
        self.container: Optional[ShimContainer] = None
        self.starting = False
        self._lock = threading.Lock()
        self._holding = False
        self._held: Optional[Exit] = None

    @property
    def id(self) -> str:
        """The id containerd's events use: the exec id, or the container id for init."""
        return self.exec_id or self.container_id

    # -- exits that race a start ---------------------------------------------------

    def hold(self) -> None:
        """From now until :meth:`release`, an exit is parked, not handled."""
        with self._lock:
            self._holding = True

    def deliver(self, exit: Exit) -> bool:
        """The exit router's call: True if the exit is to be handled now."""
        with self._lock:
            if self._holding:
                self._held = exit
                return False
            return True

    def release(self) -> Optional[Exit]:
        """End the hold; the exit that arrived meanwhile, for the caller to handle."""
        with self._lock:
            self._holding = False
            held, self._held = self._held, None
        return held

    # -- the exit itself -----------------------------------------------------------

    def set_exited(self, exit: Exit) -> None:
        """Record the exit and release every ``Wait`` (runc's ``SetExited``)."""
        code = exit.returncode
        status = 255 if code is None else (128 - code if code < 0 else code)
        # Exit.timestamp is time.monotonic() when it was reaped: as wall time.
        now_ns, mono = time.time_ns(), time.monotonic()
        at = now_ns - max(0, int((mono - exit.timestamp) * 1e9))
        with self._lock:
            self.exit_status = status
            self.exited_at_ns = at
            self.status = STOPPED
        self.exited.set()

    def set_failed(self, status: int = 255) -> None:
        """A start that failed: stopped, with no exit to publish (``Wait`` returns)."""
        with self._lock:
            self.exit_status = status
            self.exited_at_ns = time.time_ns()
            self.status = STOPPED
        self.exited.set()

    def set_running(self, process: Process) -> None:
        with self._lock:
            self.process = process
            self.pid = process.pid
            if self.status == CREATED:
                self.status = RUNNING

    def close(self) -> None:
        """Close what the shim holds for it: stdio, terminal, the process handle."""
        for part in (self.console, self.io):
            if part is not None:
                part.close()
        if self.process is not None and self.exited.is_set():
            self.process.close()


class ShimContainer:
    """A container: its :class:`pidsafe.Container`, init and execs, and the exit rules.

    Attributes:
        own_pid_ns: init has a pid namespace of its own (else, at init's exit,
            the rest of the cgroup is killed: runc's ``ShouldKillAllOnExit``).
        init_exited: the init's exit has arrived; no exec may start any more.
        running_execs: execs started or starting whose exit is not handled yet.
        stashed_init_exit: init's exit, held until ``running_execs`` is 0.
        paused: frozen by ``Pause`` (until ``Resume``).
        sandbox: the CRI sandbox (pod) it belongs to, if any; a pod's
            sandbox (pause) container has its own id here.
        lock: guards the fields above and ``execs``; never held across a start.
    """

    def __init__(self, container_id: str, bundle: str, container: Container,
                 init: ShimProcess, own_pid_ns: bool) -> None:
        self.id = container_id
        self.bundle = bundle
        self.container = container
        self.init = init
        self.own_pid_ns = own_pid_ns
        self.execs: Dict[str, ShimProcess] = {}
        self.init_exited = False
        self.running_execs = 0
        self.stashed_init_exit: Optional[Exit] = None
        self.paused = False
        self.sandbox: Optional[str] = None
        self.oom: Any = None
        self.lock = threading.Lock()

    def process(self, exec_id: str) -> Optional[ShimProcess]:
        """The init (``""``) or the exec with that id, or None."""
        if not exec_id:
            return self.init
        with self.lock:
            return self.execs.get(exec_id)

    def status_of(self, proc: ShimProcess) -> int:
        """containerd's status of ``proc``: a running init of a frozen container is paused."""
        if proc is self.init and proc.status == RUNNING and self.paused:
            return PAUSED
        return proc.status
