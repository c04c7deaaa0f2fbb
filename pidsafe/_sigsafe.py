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
main thread, every signal with a Python handler is diverted to a recorder
(pidsafe/_sigdivert.py, which also heals a diversion that a raising
handler left half undone); at the end of the outermost section the
handlers are put back and each recorded signal's handler runs then, with
its usual effect (an exception it raises propagates from the ``with``
statement, at a point where every resource has an owner).  Signals are
never lost, only postponed, and the sections are kept short and
non-blocking so that Ctrl-C stays prompt.

In any other thread ``critical`` costs one comparison: Python handlers never
run there (signalmodule.c: ``_Py_ThreadCanHandleSignals``), so nothing can
be raised into it asynchronously.

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

This is the trio idea (defer ``KeyboardInterrupt`` while a frame is
protected) generalised to every Python handler.
"""

from __future__ import annotations

from . import _sigdivert
from ._sigdivert import get_ident as _get_ident

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Callable, List, Optional, Type, TypeVar

    _T = TypeVar("_T")

#: The sections' state (pidsafe/_sigdivert.py): depth, safe point, recorded signals.
_state = _sigdivert.state


def _end(undo: Optional[Callable[[BaseException], None]]) -> None:
    """End the outermost section (depth 1 on entry, 0 on return).

    Without ``undo``: ``_sigdivert.leave``.  With it, the recorded handlers
    run first, with the signals still diverted (one arriving meanwhile is
    recorded, and run in turn, a bounded number of times); if one
    raises, ``undo(exc)`` runs, still diverted, and the exception propagates
    once the handlers are back.  A handler that raises as they are put back
    (a signal in that last moment) is undone too, in a section of its own.
    """
    if undo is not None:
        try:
            if _state.pending:
                _sigdivert.drain()
        except BaseException as exc:
            try:
                undo(exc)
            finally:
                _state.depth = 0
                _sigdivert.leave()
            raise
        _state.depth = 0
        try:
            _sigdivert.leave()
        except BaseException as exc:
            # A signal in the last moment, as the handlers were put back:
            # divert them again for the undo.
            with critical:
                undo(exc)
            raise
        return
    _state.depth = 0
    _sigdivert.leave()


class _Critical:
    """``with critical:`` (reentrant); see the module docstring."""

    __slots__ = ()

    def __enter__(self) -> None:
        if _get_ident() != _state.main_ident:
            return
        _state.depth += 1
        if _state.depth == 1:
            try:
                _sigdivert.divert()
            except BaseException:
                # A handler not diverted yet ran and raised: the section
                # never opened.  No call before the depth is back to 0 (a
                # handler can only run after a call), then undo as __exit__.
                _state.depth = 0
                _sigdivert.leave()
                raise

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        if _get_ident() != _state.main_ident:
            return
        if _state.depth > 1:
            _state.depth -= 1
            # Back in a wait: what came meanwhile runs now.
            if _state.safe == _state.depth and _state.pending:
                _sigdivert.resume_safe_point(_state.depth)
            return
        _state.depth = 0   # _end(None), inlined: every section ends here
        _sigdivert.leave()

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
            try:
                # Back in a wait of the outer section: what came meanwhile
                # runs now, and is undone here if it raises.
                _sigdivert.resume_safe_point(_state.depth - 1)
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
                _sigdivert.safe_point(depth)   # what came before the wait runs now
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
