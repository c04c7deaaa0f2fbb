"""Exits, from the reaper to the shim process that owns them, keyed by process object,
then published in containerd's order.

The daemon has one :class:`pidsafe.Reaper` (a subreaper: orphans of the
containers are reaped too).  The router subscribes to it before any
container exists and runs one thread that takes each :class:`pidsafe.Exit`
and finds its owner by the :class:`pidsafe.Process` it carries, never by
pid: a pid recycled while an exit was in flight can never be mistaken for
another process (the runc shim's ``processExits`` warns of
exactly that).  An exit whose process nobody owns (an orphan, a logging
binary) is dropped.

Order: a process is owned (:meth:`ExitRouter.own`) *before* the reaper
watches it: ``Container.create(on_created=)`` and
``Container.exec(on_started=)`` call back before the registration, and the
reaper publishes an exit only after it.  The owner is then holding
(``ShimProcess.hold``) until its create or start event is published, so
the exit of a process that dies at once still comes after that event.

The rest of the ordering is :class:`ExitOrder`'s, which this router calls:
each exit is recorded, then ``Wait`` released, then TaskExit published; an
init's TaskExit comes only after every exec of its container has published
its own (without a pid namespace of its own, the rest of the cgroup is
killed first); no exec starts once init has exited.
"""

from __future__ import annotations

import signal
import threading

from ..errors import ContainerStateError, ReaperError, SubscriptionClosed, SubscriptionOverflow
from . import _log
from . import _messages as m
from ._events import Topic

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional

    from ..process import Process
    from ..reaper import Exit, Reaper, Subscription
    from ._codec import Message
    from ._task import ShimContainer, ShimProcess

#: Go's zero time.Time, which the runc shim sends as ``exited_at`` before an exit.
GO_ZERO_SECONDS = -62135596800


def timestamp(ns: int) -> m.Timestamp:
    """``exited_at`` of an exit at ``ns`` (0: not exited, Go's zero time)."""
    return m.Timestamp.from_ns(ns) if ns else m.Timestamp(seconds=GO_ZERO_SECONDS)



class ExitRouter:
    """Hands each exit the reaper publishes to the :class:`ShimProcess` that owns it.

    Args:
        reaper: the daemon's running reaper.
        handle: called with (owner, exit) once the owner is not holding it;
            on the router's thread, or on the thread that ends the hold.
    """

    def __init__(self, reaper: Reaper, handle: Callable[[ShimProcess, Exit], None]) -> None:
        self._reaper = reaper
        self._handle = handle
        self._lock = threading.Lock()
        self._owners: Dict[Process, ShimProcess] = {}
        self._sub: Subscription = reaper.subscribe()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shim-exits", daemon=True)
        self._thread.start()

    def own(self, process: Process, owner: ShimProcess) -> None:
        """``owner`` gets ``process``'s exit.  Call it before the reaper watches it."""
        with self._lock:
            self._owners[process] = owner

    def disown(self, process: Process) -> None:
        """Forget a process that was never watched (its start failed)."""
        with self._lock:
            self._owners.pop(process, None)

    @property
    def owned(self) -> int:
        with self._lock:
            return len(self._owners)

    def _route(self, exit: Exit) -> None:
        if exit.process is None:
            return    # an orphan: reaped, and nobody asked for it
        with self._lock:
            owner = self._owners.pop(exit.process, None)
        if owner is not None and owner.deliver(exit):
            self._handle(owner, exit)

    def _run(self) -> None:
        while True:
            try:
                for exit in self._sub:
                    try:
                        self._route(exit)
                    except Exception:   # a bug in a handler must not stop exits
                        _log.exception(f"handling the exit of pid {exit.pid}")
                return   # the reaper stopped
            except SubscriptionOverflow:
                self._resync()
            except (SubscriptionClosed, ReaperError):
                return

    def _resync(self) -> None:
        """After an overflow: subscribe again, then route whoever exited meanwhile.

        An exit published while no subscription existed is found from its
        process's return code; one published after the new subscription
        arrives through it (and finds no owner if already routed here).
        """
        _log.log("error", "the exit subscription overflowed: resynchronising")
        self._sub = self._reaper.subscribe()
        with self._lock:
            done: List[Process] = [p for p in self._owners if p.returncode is not None]
        from ..reaper import Exit
        import time

        for p in done:
            self._route(Exit(pid=p.pid, returncode=p.returncode, process=p, orphan=False,
                             timestamp=time.monotonic()))

    def stop(self) -> None:
        """Stop routing (the reaper is stopped, or about to be)."""
        self._sub.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)


class ExitOrder:
    """Publishes the exits of one shim's processes in containerd's order.

    Args:
        publish: where TaskExit events go (the service's publisher).
    """

    def __init__(self, publish: Callable[[str, Message], None]) -> None:
        self._publish = publish

    def end_hold(self, proc: ShimProcess) -> None:
        """``proc``'s create or start event is published: an exit it held comes out now."""
        held = proc.release()
        if held is not None:
            self.on_exit(proc, held)

    def on_exit(self, proc: ShimProcess, exit: Exit) -> None:
        """The exit of one of our processes, once no start of it is in flight."""
        c = proc.container
        if c is None:   # pragma: no cover - set before any exit can be routed
            return
        if proc is not c.init:
            self._finish(c, proc, exit)
            self.exec_gone(c)
            return
        with c.lock:
            c.init_exited = True     # from now on no exec starts
        if not c.own_pid_ns:
            try:
                c.container.kill(signal.SIGKILL, all=True)   # the rest of its cgroup
            except (OSError, ContainerStateError) as exc:
                _log.log("warning",
                         f"{c.id}: killing the rest of its cgroup at init's exit: {exc}")
        with c.lock:
            if c.running_execs:
                c.stashed_init_exit = exit    # published by the last exec's exit
                return
        self._finish(c, proc, exit)

    def exec_gone(self, c: ShimContainer) -> None:
        """One started (or starting) exec fewer; the last one lets init's exit out."""
        stashed = None
        with c.lock:
            c.running_execs -= 1
            if c.running_execs == 0 and c.stashed_init_exit is not None:
                stashed, c.stashed_init_exit = c.stashed_init_exit, None
        if stashed is not None:
            self._finish(c, c.init, stashed)

    def _finish(self, c: ShimContainer, proc: ShimProcess, exit: Exit) -> None:
        proc.set_exited(exit)       # recorded, Wait released, then published
        self._publish(Topic.EXIT, m.TaskExit(
            container_id=c.id, id=proc.id, pid=proc.pid, exit_status=proc.exit_status,
            exited_at=timestamp(proc.exited_at_ns)))
