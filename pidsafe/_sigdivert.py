"""The diversion under pidsafe's critical sections (pidsafe/_sigsafe.py):
every Python signal handler replaced by a recorder, put back, and the
signals recorded meanwhile run.

While the outermost section of the main thread is open (``state.depth``
above 0), each signal with a Python handler runs :func:`_record` instead,
which notes that it came; :func:`leave` puts the handlers back and runs
each noted signal's own handler, and :func:`drain` runs them while they
are still diverted (a signal that arrives meanwhile is only noted).  The
sections, and when each of these runs, are ``_sigsafe``'s.

Self-healing.  The diversion is undone handler by handler, and a signal
handler may still raise in the middle of that (for a signal already put
back).  A recorder that is invoked outside any section therefore puts its
signal's own handler back and calls it: a diversion left behind by an
interrupted restore can never swallow a signal.

Safe points.  Inside an interruptible section, a wait is a safe point
(``_sigsafe.interruptibly``; ``state.safe`` is its depth): a signal that
arrives there runs its handler at once, from the recorder, the handlers
still diverted.  The point is closed while handlers run there, and opened
again once they have run (:func:`safe_point`).

After ``fork()`` the child starts outside any section with its handlers
put back (the forking thread is the child's main thread).
"""

from __future__ import annotations

import os
from itertools import compress as _compress

from . import _lite

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    import signal
    from types import FrameType
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union

    _Handler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]
    _Pending = List[Tuple[int, Optional[FrameType]]]

#: Signals a Python handler can be installed for.
_SIGNALS: Tuple[int, ...] = tuple(sorted(
    s for s in _lite.valid_signals() if s not in (_lite.SIGKILL, _lite.SIGSTOP)))


class _State:
    __slots__ = ("depth", "saved", "pending", "main_ident", "interruptible", "safe")

    def __init__(self) -> None:
        #: signal -> the handler the recorder replaced
        self.saved: Dict[int, _Handler] = {}
        self.start(_lite.main_thread_ident())

    def start(self, main_ident: int) -> None:
        """Outside any section, in the thread ``main_ident`` (``saved`` kept)."""
        self.depth = 0
        #: The depth up to which every open section is an interruptible
        #: ``undoing`` (0: none); a safe point opens only at that depth.
        self.interruptible = 0
        #: The depth of the safe point open now (``interruptibly``), or 0.
        self.safe = 0
        #: signals that arrived inside the section, in order, with their
        #: frame (each at most once, as the kernel keeps a signal pending)
        self.pending: _Pending = []
        self.main_ident = main_ident


#: The one state of the sections of the main thread.
state = _State()

# The C functions themselves (pidsafe/_lite.py): signal.getsignal()/signal.signal()
# wrap them in enum conversions that cost ~0.5 us a call, and a section visits
# every signal; and the signal module builds its enums at import.
_getsignal: Callable[[int], _Handler] = _lite.getsignal
_setsignal: Callable[[int, _Handler], _Handler] = _lite.setsignal
get_ident = _lite.get_ident


def _record(signum: int, frame: Optional[FrameType]) -> None:
    """The stand-in handler while a section is open."""
    if state.depth > 0:
        # As the kernel and CPython do, a signal that is pending already is
        # not recorded again: a timer firing all through a long section
        # runs its handler once at the end, not once per tick.
        for pending, _ in state.pending:
            if pending == signum:
                break
        else:
            state.pending.append((signum, frame))
        # In a wait that may be interrupted: run it now.
        resume_safe_point(state.depth)
        return
    # Outside any section: a diversion an interrupted enter or restore left
    # behind.  Its entry in ``saved`` is still there (_restore removes an
    # entry only once the handler is back): put it back and call it.
    handler = state.saved.pop(signum, None)
    if handler is None:  # pragma: no cover - only if a user installed _record
        return
    _setsignal(signum, handler)
    if callable(handler):
        handler(signum, frame)


def divert() -> None:
    """Replace every Python handler by the recorder (as the outermost section opens)."""
    saved = state.saved
    # Which signals have a Python handler: one pass in C (map, compress,
    # tuple run no bytecode, so no handler runs in between), instead of a
    # Python loop over every signal; usually only SIGINT has one.  Each is
    # then read again as it is replaced, exactly as before.
    for sig in tuple(_compress(_SIGNALS, map(callable, map(_getsignal, _SIGNALS)))):
        handler = _getsignal(sig)
        if callable(handler) and handler is not _record:
            saved[sig] = handler
            _setsignal(sig, _record)


def _restore() -> None:
    # An entry leaves ``saved`` only after its handler is back.
    # signal.signal() runs pending handlers before it installs, and _record
    # then finds the entry and heals the diversion itself; popping first
    # would lose such a signal.  An entry whose signal is no longer diverted
    # (its handler raised right after being put back, before the pop; or
    # the caller replaced the diversion) is dropped, never installed again.
    # A handler may run between any two calls here, and _record may heal
    # (pop) any entry: iterate over a copy, taken in one call.
    saved = state.saved
    for sig in list(saved):
        handler = saved.get(sig)
        if handler is None:
            continue
        if _getsignal(sig) is _record:
            _setsignal(sig, handler)
        saved.pop(sig, None)


def _run(pending: _Pending, own: Callable[[int], _Handler]) -> None:
    """Call each recorded signal's own handler, ``own(signum)``, every one
    even if some raise."""
    if not pending:
        return
    (signum, frame), rest = pending[0], pending[1:]
    try:
        handler = own(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == _lite.SIG_DFL and signum == _lite.SIGINT:  # pragma: no cover
            raise KeyboardInterrupt
    finally:
        _run(rest, own)


def _replaced(signum: int) -> _Handler:
    """While the handlers are diverted: the handler the recorder replaced
    (None if there is none to call)."""
    handler = state.saved.get(signum)
    if handler is None:   # healed meanwhile: its own handler is back
        handler = _getsignal(signum)
    return handler if callable(handler) and handler is not _record else None


#: How often :func:`drain` runs the handlers that arrived while it ran them.
_DRAIN_PASSES = 3


def drain() -> None:
    """Run the recorded handlers with the signals still diverted: again for
    those that arrive meanwhile (recorded in turn), a bounded number of
    times, so that a timer faster than its handler cannot keep us here."""
    for _ in range(_DRAIN_PASSES):
        if not state.pending:
            return
        pending, state.pending = state.pending, []
        _run(pending, _replaced)


def safe_point(depth: int) -> None:
    """Run the recorded handlers at the safe point of ``depth``, which is
    closed as this is called.

    It stays closed while they run (a signal meanwhile is recorded) and if
    one raises: whatever runs next, the exception's way out and the undo,
    runs with every signal recorded.  Opened once they have run.
    """
    drain()
    state.safe = depth


def resume_safe_point(depth: int) -> None:
    """If the safe point of ``depth`` is open and signals are recorded: close
    it and run them there (:func:`safe_point`)."""
    if state.safe == depth and state.pending:
        # Closed first, with no check for signals in between.
        state.safe = 0
        safe_point(depth)


def leave() -> None:
    """Leave the outermost section: handlers back, then the recorded ones run."""
    try:
        _restore()
    finally:
        pending = state.pending
        if pending:
            state.pending = []
            _run(pending, _getsignal)


def _after_fork_in_child() -> None:
    # The forking thread is the child's main thread; signal.signal works there.
    state.start(get_ident())
    _restore()


os.register_at_fork(after_in_child=_after_fork_in_child)
