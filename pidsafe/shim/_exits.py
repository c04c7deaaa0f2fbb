"""Exits, from the reaper to the shim process that owns them, keyed by process object.

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

The rest of the ordering (an init's exit after its execs') is the
service's, in :meth:`pidsafe.shim._service.TaskService._on_exit`, which
this router calls.
"""

from __future__ import annotations

import threading

from ..errors import ReaperError, SubscriptionClosed, SubscriptionOverflow
from . import _log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional

    from ..process import Process
    from ..reaper import Exit, Reaper, Subscription
    from ._task import ShimProcess



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
