"""Critical sections that a raising Python signal handler cannot split.

The problem.  CPython runs Python-level signal handlers in the main thread,
between bytecodes: right after any call returns, at the entry of any Python
function, at every backward jump.  A handler may raise (``KeyboardInterrupt``
from Ctrl-C, a ``TimeoutError`` from a ``SIGALRM`` timeout).  So in

    pid, pidfd = _sys.spawn(...)        # a child and an fd now exist
    proc = Process(pid, pidfd)          # ... and now somebody owns them

the exception can escape between the two lines, and the child and the fd
leak; in a cleanup path it can escape before the cleanup has run.  A
``try``/``except`` at each site does not help: the handler can fire inside
the ``except`` block too.

The fix, once, here: ``with critical:`` around every sequence "resource
created -> ownership recorded" (and around cleanups).  Inside it, in the
main thread, every signal with a Python handler is diverted to a recorder;
at the end of the outermost section the handlers are put back and each
recorded signal's handler runs then, with its usual effect (an exception it
raises propagates from the ``with`` statement, at a point where every
resource has an owner).  Signals are never lost, only postponed, and the
sections are kept short and non-blocking so that Ctrl-C stays prompt.

In any other thread ``critical`` costs one comparison: Python handlers never
run there (signalmodule.c: ``_Py_ThreadCanHandleSignals``), so nothing can
be raised into it asynchronously.

Self-healing.  The diversion is undone handler by handler, and a signal
handler may still raise in the middle of that (for a signal already put
back).  A recorder that is invoked outside any section therefore puts its
signal's own handler back and calls it: a diversion left behind by an
interrupted restore can never swallow a signal.

A section whose end can raise.  The deferred handlers run at the end of the
outermost section, so whatever the section made and has not handed to an
owner yet (a result on its way back to the caller) would be lost when one
of them raises; and an undo written as ``except BaseException: undo()``
after the section runs with the handlers back, where a second signal cuts
it short.  ``with undoing(undo):`` is a section for such work: if its body
raises, or a deferred handler raises at its end, ``undo(exc)`` runs inside the
section, the handlers still diverted, before the exception propagates; the
deferred handlers run while they are still diverted too, so a signal that
arrives meanwhile is only recorded.  :func:`hand_out` builds on it.  The one
window left: a signal landing as the handlers are put back raises there and
is undone too, but a second one in the few bytecodes before the undo's own
section opens would cut that undo short.

Sequences that make no call.  Where the eval loop checks for pending
signals decides where a handler can run, by this rule of CPython's (3.10
on): at the entry of a Python function, at a backward jump, and right
after a call returns (3.11 checks after calls of C code only; pidsafe
assumes a check after every call, a ``with``'s ``__enter__`` and
``__exit__`` included).  Reading and storing locals and plain attributes,
int arithmetic and comparisons call nothing.  (A call that blocks may also
run handlers inside itself, and then raises their exception as its own.)
So in::

    self._fd = -1       # the handle no longer owns the fd ...
    os.close(fd)        # ... and the fd is gone as this call returns

no handler can run between the two lines, and ``p._borrowers += 1``
followed by ``borrowed = True`` is as good as one step: such a sequence
needs no section.  It reads what it gives away (``fd = self._fd``) after
its last call, since a handler run at that call may have used the object
itself (closed it).  A section also defers handlers for the calls it
makes; these sequences make none, or own what they hold before each call.
tests/process/test_opcode_interrupts.py raises from a handler at every
bytecode of spawn, wait and close (pidsafe.process relies on this rule
there) and finds nothing left.

Interruptible sections.  A long operation that must be undone as a whole
(creating a container) is one ``undoing(undo, interruptible=True)`` section
from its start: whatever fails in it, the exception meets ``undo`` inside
the section, so no handler can run between a failure and its roll-back.
So that Ctrl-C still ends its waits, a wait inside it is marked ``with
interruptibly:``, a safe point: everything made so far is known to the
undo, and the wait makes nothing.  There a signal's handler runs at once
(from the recorder, the handlers still diverted), and so do those recorded
earlier in the section; the exception it raises leaves the wait and meets
the undo like any other failure.  Outside such a point, or inside a
section nested in it (one that makes something), signals are recorded as
in any section.  ``interruptibly`` does nothing outside an interruptible
section.

After ``fork()`` the child starts outside any section with its handlers
put back (the forking thread is the child's main thread).

This is the trio idea (defer ``KeyboardInterrupt`` while a frame is
protected) generalised to every Python handler.
"""

from __future__ import annotations

import os
from itertools import compress as _compress
from types import FrameType, TracebackType

from . import _lite

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    import signal
    from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar, Union

    _T = TypeVar("_T")
    _Handler = Union[Callable[[int, Optional[FrameType]], Any], int, signal.Handlers, None]

#: Signals a Python handler can be installed for.
_SIGNALS: Tuple[int, ...] = tuple(sorted(
    s for s in _lite.valid_signals() if s not in (_lite.SIGKILL, _lite.SIGSTOP)))


class _State:
    __slots__ = ("depth", "saved", "pending", "main_ident", "interruptible", "safe")

    def __init__(self) -> None:
        self.depth = 0
        #: The depth up to which every open section is an interruptible
        #: ``undoing`` (0: none); a safe point opens only at that depth.
        self.interruptible = 0
        #: The depth of the safe point open now (``interruptibly``), or 0.
        self.safe = 0
        #: signal -> the handler the recorder replaced
        self.saved: Dict[int, _Handler] = {}
        #: signals that arrived inside the section, in order, with their
        #: frame (each at most once, as the kernel keeps a signal pending)
        self.pending: List[Tuple[int, Optional[FrameType]]] = []
        self.main_ident = _lite.main_thread_ident()


_state = _State()

# The C functions themselves (pidsafe/_lite.py): signal.getsignal()/signal.signal()
# wrap them in enum conversions that cost ~0.5 us a call, and a section visits
# every signal; and the signal module builds its enums at import.
_getsignal: Callable[[int], _Handler] = _lite.getsignal
_setsignal: Callable[[int, _Handler], _Handler] = _lite.setsignal
_get_ident = _lite.get_ident


def _record(signum: int, frame: Optional[FrameType]) -> None:
    """The stand-in handler while a section is open."""
    if _state.depth > 0:
        # As the kernel and CPython do, a signal that is pending already is
        # not recorded again: a timer firing all through a long section
        # runs its handler once at the end, not once per tick.
        for pending, _ in _state.pending:
            if pending == signum:
                break
        else:
            _state.pending.append((signum, frame))
        if _state.safe == _state.depth:
            # In a wait that may be interrupted: run it now.  The point is
            # closed first, with no check for signals in between.
            _state.safe = 0
            _safe_point(_state.depth)
        return
    # Outside any section: a diversion an interrupted enter or restore left
    # behind.  Its entry in ``saved`` is still there (_restore removes an
    # entry only once the handler is back): put it back and call it.
    handler = _state.saved.pop(signum, None)
    if handler is None:  # pragma: no cover - only if a user installed _record
        return
    _setsignal(signum, handler)
    if callable(handler):
        handler(signum, frame)


def _divert() -> None:
    saved = _state.saved
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
    saved = _state.saved
    for sig in list(saved):
        handler = saved.get(sig)
        if handler is None:
            continue
        if _getsignal(sig) is _record:
            _setsignal(sig, handler)
        saved.pop(sig, None)


def _run(pending: List[Tuple[int, Optional[FrameType]]]) -> None:
    """Call each recorded signal's own handler, every one even if some raise."""
    if not pending:
        return
    (signum, frame), rest = pending[0], pending[1:]
    try:
        handler = _getsignal(signum)
        if callable(handler):
            handler(signum, frame)
        elif handler == _lite.SIG_DFL and signum == _lite.SIGINT:  # pragma: no cover
            raise KeyboardInterrupt
    finally:
        _run(rest)


#: How often :func:`_drain` runs the handlers that arrived while it ran them.
_DRAIN_PASSES = 3


def _run_diverted(pending: List[Tuple[int, Optional[FrameType]]]) -> None:
    """:func:`_run` while the handlers are still diverted: each signal's own
    handler (the one the recorder replaced) is called, every one even if
    some raise."""
    if not pending:
        return
    (signum, frame), rest = pending[0], pending[1:]
    try:
        handler = _state.saved.get(signum)
        if handler is None:   # healed meanwhile: its own handler is back
            handler = _getsignal(signum)
        if callable(handler) and handler is not _record:
            handler(signum, frame)
    finally:
        _run_diverted(rest)


def _drain() -> None:
    """Run the recorded handlers with the signals still diverted: again for
    those that arrive meanwhile (recorded in turn), a bounded number of
    times, so that a timer faster than its handler cannot keep us here."""
    for _ in range(_DRAIN_PASSES):
        if not _state.pending:
            return
        pending, _state.pending = _state.pending, []
        _run_diverted(pending)


def _safe_point(depth: int) -> None:
    """Run the recorded handlers at the safe point of ``depth`` (see
    ``interruptibly``), which the caller has just closed.

    It stays closed while they run (a signal meanwhile is recorded) and if
    one raises: whatever runs next, the exception's way out and the undo,
    runs with every signal recorded.  Opened again once they have run.
    """
    _drain()
    _state.safe = depth


def _leave() -> None:
    """Leave the outermost section: handlers back, then the recorded ones run."""
    try:
        _restore()
    finally:
        pending, _state.pending = _state.pending, []
        _run(pending)


def _end(undo: Optional[Callable[[BaseException], None]]) -> None:
    """End the outermost section (depth 1 on entry, 0 on return).

    Without ``undo``: :func:`_leave`.  With it, the recorded handlers run
    first, with the signals still diverted (one arriving meanwhile is
    recorded, and run in turn, up to :data:`_DRAIN_PASSES` times); if one
    raises, ``undo(exc)`` runs, still diverted, and the exception propagates
    once the handlers are back.  A handler that raises as they are put back
    (a signal in that last moment) is undone too, in a section of its own.
    """
    if undo is not None:
        try:
            _drain()
        except BaseException as exc:
            try:
                undo(exc)
            finally:
                _state.depth = 0
                _leave()
            raise
        _state.depth = 0
        try:
            _leave()
        except BaseException as exc:
            # A signal in the last moment, as the handlers were put back:
            # divert them again for the undo.
            with critical:
                undo(exc)
            raise
        return
    _state.depth = 0
    _leave()


class _Critical:
    """``with critical:`` (reentrant); see the module docstring."""

    __slots__ = ()

    def __enter__(self) -> None:
        if _get_ident() != _state.main_ident:
            return
        _state.depth += 1
        if _state.depth == 1:
            try:
                _divert()
            except BaseException:
                # A handler not diverted yet ran and raised: the section
                # never opened.  No call before the depth is back to 0 (a
                # handler can only run after a call), then undo as __exit__.
                _state.depth = 0
                _leave()
                raise

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if _get_ident() != _state.main_ident:
            return
        if _state.depth > 1:
            _state.depth -= 1
            if _state.safe == _state.depth and _state.pending:
                # Back in a wait: what came meanwhile runs now.
                _state.safe = 0
                _safe_point(_state.depth)
            return
        _end(None)

    @property
    def active(self) -> bool:
        """Whether the calling thread is inside a section with handlers diverted."""
        return _state.depth > 0 and _get_ident() == _state.main_ident


#: The one critical-section object: ``with critical: ...``.
critical = _Critical()


class undoing:
    """``with undoing(undo): ...``: a critical section that undoes its work
    if it fails, before the exception leaves it.

    If the body raises, or a signal handler deferred by the section raises
    at its end, ``undo(exc)`` (with that exception, for notes) runs inside
    the section, with the signals still diverted (so a second Ctrl-C cannot
    cut the undo short), and then the exception propagates.  Use it where a section makes something that is
    handed over only after the section (returned, stored by the caller), or
    where a failure must be rolled back: an undo in an ``except`` clause
    after the section would run with the handlers back.

    Nested in another section, the deferred handlers run at the end of the
    outermost one, which then owns the cleanup; a failure inside this one is
    still undone here.  ``undo`` must not block for long: it delays every
    handler.

    CPython checks for signals once more as ``__exit__`` returns: a result
    handed over after the section is returned from inside the ``with``, in
    a ``try`` whose ``except`` undoes it too (see :func:`hand_out`); make
    ``undo`` idempotent for that.
    """

    __slots__ = ("_undo", "_interruptible")

    def __init__(self, undo: Callable[[BaseException], None], *,
                 interruptible: bool = False) -> None:
        self._undo = undo
        self._interruptible = interruptible

    def __enter__(self) -> None:
        critical.__enter__()
        if (self._interruptible and _state.interruptible == _state.depth - 1
                and _get_ident() == _state.main_ident):
            _state.interruptible = _state.depth

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if _get_ident() != _state.main_ident:
            if exc is not None:
                self._undo(exc)
            return
        # No safe point from here on: the undo and the end run with every
        # signal recorded.  (A safe point closes itself before its handler
        # raises, so none is open as this begins.)
        if _state.interruptible >= _state.depth:
            _state.interruptible = _state.depth - 1
        if _state.safe >= _state.depth:
            _state.safe = 0
        if exc is not None:
            try:
                self._undo(exc)
            finally:
                critical.__exit__(exc_type, exc, tb)
            return
        if _state.depth > 1:
            if _state.safe == _state.depth - 1 and _state.pending:
                # Back in a wait of the outer section: what came meanwhile
                # runs now, and is undone here if it raises.
                try:
                    _state.safe = 0
                    _safe_point(_state.depth - 1)
                except BaseException as raised:
                    try:
                        self._undo(raised)
                    finally:
                        _state.depth -= 1
                    raise
            _state.depth -= 1
            return
        _end(self._undo)


class _Interruptibly:
    """``with interruptibly:``: a wait inside an interruptible section that
    a signal may end (see the module docstring).

    Only at the depth of that section itself (not inside a section nested
    in it) and in the main thread; elsewhere it does nothing.  The block
    must make nothing a handler's exception would lose: it only waits.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        depth = _state.depth
        if (depth and depth == _state.interruptible
                and _get_ident() == _state.main_ident):
            if _state.pending:
                _safe_point(depth)   # what came before the wait runs now
            else:
                _state.safe = depth

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if _state.safe and _state.safe == _state.depth:
            _state.safe = 0


#: ``with interruptibly: wait()`` (see :class:`_Interruptibly`).
interruptibly = _Interruptibly()


def hand_out(make: Callable[[], _T], discard: Callable[[_T], None]) -> _T:
    """``make()`` inside a critical section; return what it made.

    Signals that arrive meanwhile are delivered when the section ends,
    before the result reaches the caller: if a handler raises then, the
    result is ``discard()``-ed inside the section (see :class:`undoing`)
    and the exception propagates, so nothing made here is left without an
    owner.  (Once this returns, the caller owns the result.)
    """
    made: List[_T] = []

    def undo(exc: BaseException) -> None:
        if made:
            discard(made.pop())

    try:
        with undoing(undo):
            made.append(make())
            return made[0]
    except BaseException as exc:
        # A handler that ran as __exit__ returned, before the return: the
        # one check left between the section and the caller.
        if made:
            with critical:
                undo(exc)
        raise


def _after_fork_in_child() -> None:
    global _state
    old = _state
    _state = _State()
    # The forking thread is the child's main thread; signal.signal works there.
    _state.main_ident = _get_ident()
    _state.saved = old.saved
    _restore()


os.register_at_fork(after_in_child=_after_fork_in_child)
