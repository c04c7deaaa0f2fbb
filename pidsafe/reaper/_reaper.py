"""Reaper: its API (spawn, watch, subscribe, claim) and its lifecycle.

How the package works, and why no big lock is needed: the docstring of
:mod:`pidsafe.reaper`.
"""

from __future__ import annotations

import os
import threading
import weakref
from types import TracebackType
from typing import Any, Optional, Type

from .. import _log
from .._sigsafe import critical, undoing
from ..process import Process
from . import _foreign, _orphans, _slot
from ._claim import Claim, ClaimBook
from ._pidfdset import PidfdSet
from ._publisher import ExitPublisher
from ._subscription import DEFAULT_MAXSIZE, Subscription
from ._thread import ReaperLoop
from ..errors import ReaperError, SubscriptionClosed

_NEW, _STARTING, _RUNNING, _STOPPING, _STOPPED, _FORKED = (
    "new", "starting", "running", "stopping", "stopped", "forked")

# Reapers of this process, for the fork handler.
_reapers: "weakref.WeakSet[Reaper]" = weakref.WeakSet()


class Reaper:
    """Reaps the children it owns and publishes each exit to subscribers.

    ::

        reaper = pidsafe.Reaper()
        reaper.start()
        with reaper.subscribe() as exits:     # subscribe first: nothing is missed
            p = reaper.spawn(["sh", "-c", "exit 7"])
            ev = exits.get(timeout=5)         # Exit(pid=p.pid, returncode=7, ...)
        assert p.wait() == 7
        reaper.stop()

    Guarantees: every owned child is reaped through its pidfd and its exact
    return code reaches ``Process.wait()``/``wait_async()`` and every
    subscriber that subscribed before it was registered, exactly once, and
    only after ``spawn()``/``watch()`` has registered it (a child that exits
    earlier is held, not lost).  To publish your own "started" event strictly
    first, ``pidsafe.spawn`` the child, publish, then :meth:`watch` it.

    Children it does not own are never waited on in the default mode.  With
    ``subreaper=True`` the process becomes a child subreaper
    (``PR_SET_CHILD_SUBREAPER``) and the reaper also reaps orphans that are
    reparented to it, publishing ``Exit(orphan=True)``.

    .. warning:: In subreaper mode, children started by ``subprocess``,
       ``os.fork``, ``os.posix_spawn`` or ``os.system`` are reaped like
       orphans unless :meth:`claim`\\ ed first: their own waiter then finds
       nothing, and ``Popen.wait()`` returns **0** whatever the exit status
       (Popen's rule for ``ECHILD``).  Each such unclaimed start is reported
       with a :class:`pidsafe.ForeignChildWarning` at the call site (an
       audit hook sees it).  Use :meth:`claim` (or ``pidsafe.spawn``).

    At most one subreaper-mode Reaper runs in a process; any number of
    default-mode ones may (each reaps what it owns).

    Lifecycle: :meth:`start` once, :meth:`stop` once (or use ``with``).  A
    child forked while it runs inherits a dead reaper: every call there
    raises :class:`ReaperError`.

    Args:
        subreaper: become a child subreaper and reap orphans too.
        scan_interval: subreaper mode: the longest an orphan whose arrival
            nothing announced stays a zombie (see ``_orphans``); seconds.
    """

    def __init__(self, *, subreaper: bool = False, scan_interval: float = 0.1) -> None:
        if not isinstance(subreaper, bool):
            raise TypeError(f"subreaper must be a bool, got {subreaper!r}")
        if (not isinstance(scan_interval, (int, float)) or isinstance(scan_interval, bool)
                or not 0 < scan_interval <= 60):
            raise ValueError(f"scan_interval must be in (0, 60] seconds, got {scan_interval!r}")
        self._subreaper = subreaper
        self._scan_interval = float(scan_interval)
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()   # one stop() finishes the work
        self._state = _NEW
        self._owner_pid = os.getpid()
        self._publisher = ExitPublisher()
        self._set = PidfdSet()
        self._thread: Optional[threading.Thread] = None
        self._failure: Optional[BaseException] = None
        self._prev_subreaper: Optional[int] = None
        self._book = ClaimBook(self._set.owns_pid, self._set.wake)
        self._scanner = _orphans.OrphanScanner(self._set, self._book)
        self._loop: Optional[ReaperLoop] = None
        _reapers.add(self)

    # -- lifecycle ------------------------------------------------------------

    @property
    def subreaper(self) -> bool:
        """Whether this reaper runs in subreaper mode."""
        return self._subreaper

    @property
    def running(self) -> bool:
        """Started, not stopped, and its thread alive in this process."""
        return (self._state == _RUNNING and self._failure is None
                and self._owner_pid == os.getpid())

    def _check_usable(self) -> None:
        if self._owner_pid != os.getpid() or self._state == _FORKED:
            raise ReaperError(
                f"this Reaper belongs to process {self._owner_pid}; a forked child does not "
                "inherit its thread: create a new Reaper in the child")
        if self._failure is not None:
            raise ReaperError(f"the reaper thread failed: {self._failure!r}") from self._failure

    def start(self) -> "Reaper":
        """Start the reaper thread (and become a subreaper in that mode).

        Returns:
            ``self``.

        Raises:
            ReaperError: already started or stopped, a forked child's copy,
                or (subreaper mode) another subreaper-mode Reaper is running.
        """
        self._check_usable()
        with self._lock:
            if self._state != _NEW:
                raise ReaperError(f"a Reaper starts once; this one is {self._state}")
            self._state = _STARTING
        # One step for signal handlers (short: no blocking call): an
        # exception a handler raises lands after start() has finished, when
        # stop() can undo all of it, never between two of its resources.
        with critical:
            self._start()
            _log.debug("reaper", "reaper started%s", " (subreaper)" if self._subreaper else "")
        return self

    def _start(self) -> None:
        try:
            if self._subreaper:
                _slot.take(self)
            self._set.open()
            if self._subreaper:
                _orphans.list_children()          # fails clearly if unsupported
                self._prev_subreaper = _slot.become_subreaper()
                _foreign.watch_foreign_starts(self._book)
            self._loop = ReaperLoop(self._set, self._scanner if self._subreaper else None,
                                    self._book, self._publisher,
                                    lambda: self._state != _RUNNING, self._scan_interval)
            thread = threading.Thread(target=self._run, name="pidsafe-reaper", daemon=True)
            with self._lock:
                self._state = _RUNNING
            thread.start()   # the last step: nothing can fail after it
            self._thread = thread
        except BaseException:
            with self._lock:
                self._state = _STOPPING
            try:
                # If putting the flag back fails too, that error is the one
                # raised (the process stays a subreaper: the caller must
                # know), and the fds and the slot are released all the same.
                self._restore_subreaper()
            finally:
                self._release_resources()
                self._state = _STOPPED
            raise

    def _restore_subreaper(self) -> None:
        if self._prev_subreaper is not None:
            _slot.restore(self._prev_subreaper)
            self._prev_subreaper = None

    def stop(self) -> None:
        """Stop: join the thread, close every fd, restore the subreaper flag.

        Exits that have already happened are delivered first; subscriptions
        then end (iteration stops, ``get()`` raises
        :class:`SubscriptionClosed` once drained).  Owned children still
        running are no longer reaped by the reaper: ``wait()`` them.  In
        subreaper mode, orphans still running stay children of this process.
        Idempotent; a no-op in a forked child.

        Raises:
            ReaperError: the reaper thread had failed (after cleaning up).
        """
        if self._owner_pid != os.getpid() or self._state == _FORKED:
            return
        with self._lock:
            state, thread = self._state, self._thread
            if state in (_NEW, _RUNNING):
                self._state = _STOPPING
        if state == _NEW:
            self._publisher.end(lambda: SubscriptionClosed("the reaper was stopped"))
            self._state = _STOPPED
            return
        if state in (_STOPPED, _STARTING):
            return
        # _RUNNING, or _STOPPING: another stop() is under way, or an earlier
        # one was interrupted (a signal handler raised in join()): every step
        # below is idempotent, so this call finishes the work.
        with critical:
            # No new orphans from now on; the thread's last pass reaps the
            # ones that are already zombies.
            self._restore_subreaper()
            self._set.stop_accepting()
            self._set.wake(force=True)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._stop_lock, critical:
            if self._state != _STOPPED:
                # The thread's last pass ended the claims; if it failed, do it here.
                self._book.finish(
                    lambda: ReaperError("the reaper stopped before the claimed child was reaped"))
                self._release_resources()
                self._publisher.end(lambda: SubscriptionClosed("the reaper stopped"))
                self._state = _STOPPED
                _log.debug("reaper", "reaper stopped")
        if self._failure is not None:
            raise ReaperError(f"the reaper thread failed: {self._failure!r}") from self._failure

    def _release_resources(self) -> None:
        self._set.close()
        self._scanner.close()
        if self._subreaper:
            _foreign.unwatch_foreign_starts(self._book)
            _slot.give_back(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: the thread is gone; close our copies of the fds."""
        self._lock = threading.Lock()
        self._stop_lock = threading.Lock()
        self._set.forget_after_fork()
        self._scanner.forget_after_fork()
        self._state = _FORKED

        owner = self._owner_pid

        def reason() -> BaseException:
            return ReaperError(f"this subscription belongs to a Reaper of process {owner}; "
                               "a forked child does not inherit its thread")

        self._publisher.forget_after_fork(reason)
        self._book.forget_after_fork(reason)

    def __enter__(self) -> "Reaper":
        if self._state == _NEW:
            try:
                self.start()
            except BaseException:
                # E.g. a KeyboardInterrupt delivered at the end of start():
                # no __exit__ will run, so undo it here.
                self._stop_quietly()
                raise
        return self

    def _stop_quietly(self) -> None:
        try:
            self.stop()
        except ReaperError:
            pass   # the thread's failure; the exception being raised says more

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = " subreaper" if self._subreaper else ""
        return f"<pidsafe.Reaper {self._state}{mode} watching={len(self._set.owned_pids)}>"

    # -- registration -----------------------------------------------------------

    def spawn(self, args: Any, **kwargs: Any) -> Process:
        """:func:`pidsafe.spawn` a child, then :meth:`watch` it.

        Takes the arguments of :func:`pidsafe.spawn`.  No reaper lock is held
        while the child is created.  A child that fails to exec raises as
        with ``pidsafe.spawn`` and publishes nothing.

        Raises:
            ReaperError: not running; if it stopped while the child was being
                created, the child is killed and reaped first.
            OSError, ValueError, TypeError: as :func:`pidsafe.spawn`.
        """
        from ..process import spawn   # here: a reaper that only watches never loads spawn()

        self._check_running()
        proc = spawn(args, **kwargs)

        def undo(exc: BaseException) -> None:
            # Inside the section: a signal handler cannot cut it short.
            if not proc.closed:
                proc.kill()
                proc.wait()
                proc.close()

        # An error, or a handler raising at the section's end (before the
        # caller has the handle), ends the child.
        try:
            with undoing(undo):
                self.watch(proc)
                return proc
        except BaseException as exc:   # as __exit__ returned (see _sigsafe.undoing)
            with critical:
                undo(exc)
            raise

    def watch(self, process: Process) -> None:
        """Own an existing child: reap it and publish its exit.

        The exit is published once, even if the child has already exited
        (or been waited for).  The caller keeps the ``Process`` and may
        ``wait()`` or ``close()`` it at any time.

        Raises:
            TypeError: not a :class:`pidsafe.Process`.
            ValueError: not a child of this process, closed, or already
                watched by this reaper.
            ReaperError: not running.
        """
        if not isinstance(process, Process):
            raise TypeError(f"watch() takes a pidsafe.Process, not {type(process).__name__}")
        self._check_running()
        self._set.add_owned(process)   # leases the pidfd: ValueError for a non-child

    def _check_running(self) -> None:
        self._check_usable()
        if self._state != _RUNNING:
            raise ReaperError(f"the reaper is {self._state}; start() it first"
                              if self._state == _NEW else f"the reaper is {self._state}")

    # -- subscriptions and claims ---------------------------------------------

    def subscribe(self, maxsize: int = DEFAULT_MAXSIZE) -> Subscription:
        """Receive every exit published from now on (subscribe before spawning).

        Args:
            maxsize: how many undelivered exits may wait; beyond that the
                subscription is detached and reports
                :class:`SubscriptionOverflow` (see :class:`Subscription`).

        Raises:
            ValueError: ``maxsize`` is not a positive int.
            ReaperError: stopped, or a forked child's copy.
        """
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, got {maxsize!r}")
        self._check_usable()
        with self._lock:
            if self._state not in (_NEW, _STARTING, _RUNNING):
                raise ReaperError(f"the reaper is {self._state}")
            return self._publisher.subscribe(maxsize)

    def claim(self) -> Claim:
        """Reserve a foreign child's status; open it *before* starting the child.

        See :class:`Claim`.  Subreaper mode only: the default mode never
        reaps a child it does not own, so a foreign child needs no claim.
        While the claim has no pid, no unknown child is reaped (exits wait
        as zombies, so no pid can be reused): set ``claim.pid`` promptly.
        Take a ``Popen`` child's status from the claim, never from
        ``Popen.wait()`` (which returns 0 here).

        Raises:
            ReaperError: not in subreaper mode, or not running.
        """
        self._check_running()
        if not self._subreaper:
            raise ReaperError("claims exist in subreaper mode only: the default mode never "
                              "reaps children it does not own")
        return self._book.open()

    # -- the reaper thread -----------------------------------------------------

    def _run(self) -> None:
        try:
            assert self._loop is not None
            self._loop.run()
        except BaseException as exc:  # a bug: never die silently
            self._failure = exc
            # Format now: the name exc is unbound once the except block ends.
            message = f"the reaper thread failed: {exc!r}"
            self._publisher.end(lambda: ReaperError(message))


def _after_fork_in_child() -> None:
    for reaper in list(_reapers):
        reaper._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
