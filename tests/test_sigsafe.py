"""pidsafe._sigsafe.critical: a raising signal handler waits for the section's end."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any, Iterator, List

import pytest

from pidsafe import _sigdivert, _sigsafe
from pidsafe._sigsafe import critical


class Boom(Exception):
    pass


@pytest.fixture
def raising_usr1() -> Iterator[List[int]]:
    seen: List[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise Boom(signum)

    old = signal.signal(signal.SIGUSR1, handler)
    yield seen
    signal.signal(signal.SIGUSR1, old)


def test_a_handler_raising_inside_waits_for_the_end(raising_usr1: List[int]) -> None:
    reached = []
    with pytest.raises(Boom):
        with critical:
            signal.raise_signal(signal.SIGUSR1)
            reached.append("after the signal")     # the section went on
            assert raising_usr1 == []
    assert reached == ["after the signal"] and raising_usr1 == [signal.SIGUSR1]
    assert not critical.active
    # Handlers are back: outside a section the handler raises at once.
    with pytest.raises(Boom):
        signal.raise_signal(signal.SIGUSR1)


def test_sections_nest_and_only_the_outermost_delivers(raising_usr1: List[int]) -> None:
    with pytest.raises(Boom):
        with critical:
            with critical:
                signal.raise_signal(signal.SIGUSR1)
            assert raising_usr1 == [] and critical.active
    assert raising_usr1 == [signal.SIGUSR1]


def test_every_recorded_signal_is_delivered_even_if_one_raises(raising_usr1: List[int]) -> None:
    got: List[int] = []
    old = signal.signal(signal.SIGUSR2, lambda s, f: got.append(s))
    try:
        with pytest.raises(Boom):
            with critical:
                signal.raise_signal(signal.SIGUSR1)
                signal.raise_signal(signal.SIGUSR2)
        assert raising_usr1 == [signal.SIGUSR1] and got == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_an_exception_inside_still_restores_and_delivers(raising_usr1: List[int]) -> None:
    with pytest.raises(Boom) as info:
        with critical:
            signal.raise_signal(signal.SIGUSR1)
            raise ValueError("inside")
    assert isinstance(info.value.__context__, ValueError)
    assert signal.getsignal(signal.SIGUSR1) is not _sigdivert._record


def test_a_leftover_diversion_heals_itself(raising_usr1: List[int]) -> None:
    # Simulate a restore that a raising handler cut short: the recorder is
    # still installed outside any section.  It must put the handler back and
    # run it, never swallow the signal.
    handler = signal.getsignal(signal.SIGUSR1)
    _sigdivert.state.saved[signal.SIGUSR1] = handler
    signal.signal(signal.SIGUSR1, _sigdivert._record)
    with pytest.raises(Boom):
        signal.raise_signal(signal.SIGUSR1)
    assert signal.getsignal(signal.SIGUSR1) is handler


def test_other_threads_pay_nothing_and_divert_nothing(raising_usr1: List[int]) -> None:
    seen = []

    def worker() -> None:
        with critical:
            seen.append((critical.active, signal.getsignal(signal.SIGUSR1) is _sigdivert._record))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [(False, False)]


def test_fork_inside_a_section_gives_the_child_its_handlers(raising_usr1: List[int]) -> None:
    r, w = os.pipe()
    with critical:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                ok = (not critical.active
                      and signal.getsignal(signal.SIGUSR1) is not _sigdivert._record)
                os.write(w, b"1" if ok else b"0")
            finally:
                os._exit(0)
    os.close(w)
    try:
        assert os.read(r, 1) == b"1"
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def test_a_handler_raising_while_the_section_is_entered_leaves_no_section_open(
        raising_usr1: List[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler not yet diverted can run between two calls of _divert();
    its exception used to escape from __enter__ with the depth left at 1,
    so no later section delivered anything again.  Now it escapes before the
    body (nothing made yet) with the depth at 0."""
    real = _sigdivert.divert
    calls: List[int] = []

    def divert_with_a_signal_midway() -> None:
        calls.append(1)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGUSR1)   # its handler runs right here
        real()

    monkeypatch.setattr(_sigdivert, "divert", divert_with_a_signal_midway)
    reached = []
    with pytest.raises(Boom):
        with critical:
            reached.append("body")   # pragma: no cover - never reached
    assert reached == [] and raising_usr1 == [signal.SIGUSR1]
    assert _sigdivert.state.depth == 0
    monkeypatch.undo()
    with pytest.raises(Boom):                 # later sections still deliver
        with critical:
            signal.raise_signal(signal.SIGUSR1)
            assert raising_usr1 == [signal.SIGUSR1]
    assert raising_usr1 == [signal.SIGUSR1] * 2
    assert not _sigdivert.state.saved


def test_a_handler_raising_while_entering_leaves_no_section_open(
        raising_usr1: List[int], monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression (found by the mount tests' random SIGALRM loop): a signal
    # whose handler was not diverted yet, landing while __enter__ diverts,
    # used to leave the depth at 1 for ever: no later section diverted
    # anything, so handlers raised inside "critical" sections again.
    real_getsignal = _sigdivert._getsignal

    def getsignal(sig: int) -> Any:
        if sig == signal.SIGUSR1:
            monkeypatch.setattr(_sigdivert, "_getsignal", real_getsignal)
            signal.raise_signal(signal.SIGUSR1)  # SIGINT is diverted, SIGUSR1 not yet
        return real_getsignal(sig)

    monkeypatch.setattr(_sigdivert, "_getsignal", getsignal)
    with pytest.raises(Boom):
        with critical:
            pytest.fail("the body must not run")  # pragma: no cover
    assert not critical.active
    with pytest.raises(Boom):
        with critical:
            signal.raise_signal(signal.SIGUSR1)
            assert raising_usr1 == [signal.SIGUSR1]   # deferred: still the first only
    assert raising_usr1 == [signal.SIGUSR1] * 2
    assert signal.getsignal(signal.SIGINT) is not _sigdivert._record

@pytest.fixture
def raising_usr2() -> Iterator[List[int]]:
    seen: List[int] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise KeyError(signum)

    old = signal.signal(signal.SIGUSR2, handler)
    yield seen
    signal.signal(signal.SIGUSR2, old)


def test_a_handler_raising_while_the_section_opens_leaves_none_open(
        raising_usr1: List[int], raising_usr2: List[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The signals with handlers are found in one pass, then diverted one
    # after another, each read again as it is replaced.  SIGUSR1 (10) is
    # diverted by the time SIGUSR2 (12) is read again; land both there.
    real = _sigdivert._getsignal
    reads: List[int] = []

    def getsignal(sig: int) -> Any:
        if sig == signal.SIGUSR2:
            reads.append(sig)
        if sig == signal.SIGUSR2 and len(reads) == 2 and not raising_usr2:
            signal.raise_signal(signal.SIGUSR1)   # diverted: recorded
            signal.raise_signal(signal.SIGUSR2)   # not yet: raises right here
        return real(sig)

    monkeypatch.setattr(_sigdivert, "_getsignal", getsignal)
    body = []
    with pytest.raises((KeyError, Boom)):
        with critical:
            body.append(1)   # pragma: no cover - never reached
    assert body == [] and raising_usr2 == [signal.SIGUSR2]
    # The section did not stay open, and what it recorded was delivered.
    assert not critical.active and raising_usr1 == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is not _sigdivert._record
    with pytest.raises(Boom):
        with critical:
            signal.raise_signal(signal.SIGUSR1)
    assert raising_usr1 == [signal.SIGUSR1] * 2


def test_a_signal_landing_while_its_handler_is_put_back_is_not_lost(
        raising_usr1: List[int], monkeypatch: pytest.MonkeyPatch) -> None:
    import _signal

    real = _signal.signal

    def setsignal(sig: int, handler: Any) -> Any:
        # signal.signal() runs pending handlers before it installs: the
        # recorder is still in place then, outside any section.
        if sig == signal.SIGUSR1 and handler is not _sigdivert._record:
            signal.raise_signal(signal.SIGUSR1)
        return real(sig, handler)

    monkeypatch.setattr(_signal, "signal", setsignal)
    monkeypatch.setattr(_sigdivert, "_setsignal", setsignal)
    with pytest.raises(Boom):
        with critical:
            pass
    assert raising_usr1 == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is not _sigdivert._record


# -- sections whose end can raise: undoing, hand_out ----------------------------------

def test_a_handler_raising_at_the_end_of_undoing_runs_the_undo_with_signals_held(
        raising_usr1: List[int]) -> None:
    """The undo runs while the handlers are still diverted: a signal that
    comes during the undo (Ctrl-C again) cannot cut it short."""
    undone: List[str] = []

    def undo(exc: BaseException) -> None:
        assert isinstance(exc, Boom) and critical.active
        signal.raise_signal(signal.SIGUSR1)     # only recorded
        undone.append("all of it")

    with pytest.raises(Boom):
        with _sigsafe.undoing(undo):
            signal.raise_signal(signal.SIGUSR1)
    assert undone == ["all of it"] and not critical.active
    assert raising_usr1 == [signal.SIGUSR1, signal.SIGUSR1]  # the second one ran too


def test_undoing_undoes_an_error_of_its_body_inside_the_section(
        raising_usr1: List[int]) -> None:
    undone: List[BaseException] = []

    def undo(exc: BaseException) -> None:
        signal.raise_signal(signal.SIGUSR1)     # recorded, delivered after the undo
        undone.append(exc)

    with pytest.raises(Boom) as info:
        with _sigsafe.undoing(undo):
            raise ValueError("the body's own error")
    assert isinstance(undone[0], ValueError)
    assert isinstance(info.value.__context__, ValueError)


def test_undoing_that_ends_cleanly_undoes_nothing(raising_usr1: List[int]) -> None:
    with _sigsafe.undoing(lambda exc: pytest.fail("undone")):
        pass
    assert not critical.active


def test_hand_out_discards_what_it_made_when_a_handler_raises_at_its_end(
        raising_usr1: List[int]) -> None:
    discarded: List[int] = []

    def make() -> int:
        signal.raise_signal(signal.SIGUSR1)
        return 7

    def discard(made: int) -> None:
        assert critical.active          # the handlers are still diverted
        signal.raise_signal(signal.SIGUSR1)
        discarded.append(made)

    with pytest.raises(Boom):
        _sigsafe.hand_out(make, discard)
    assert discarded == [7]


def test_a_signal_arriving_many_times_in_a_section_runs_its_handler_once() -> None:
    got: List[int] = []
    old = signal.signal(signal.SIGUSR2, lambda s, f: got.append(s))
    try:
        with critical:
            for _ in range(5000):
                signal.raise_signal(signal.SIGUSR2)
        assert got == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, old)


# -- interruptible sections: safe points in one long section ---------------------------

def test_undoing_runs_a_deferred_handler_with_the_signals_still_diverted() -> None:
    """The handler itself runs while diverted (the undo too): no signal can
    land between its exception and the undo."""
    seen: List[str] = []

    def handler(signum: int, frame: Any) -> None:
        seen.append(f"handler, diverted: {signal.getsignal(signal.SIGUSR1) is _sigdivert._record}")
        raise Boom(signum)

    def undo(exc: BaseException) -> None:
        seen.append(f"undo, diverted: {signal.getsignal(signal.SIGUSR1) is _sigdivert._record}")

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(Boom):
            with _sigsafe.undoing(undo):
                signal.raise_signal(signal.SIGUSR1)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert seen == ["handler, diverted: True", "undo, diverted: True"]


def _usr1_soon(delay: float = 0.05) -> threading.Timer:
    t = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGUSR1))
    t.start()
    return t


def test_a_wait_in_an_interruptible_section_is_ended_by_a_handler(
        raising_usr1: List[int]) -> None:
    r, w = os.pipe()
    undone: List[bool] = []

    def undo(exc: BaseException) -> None:
        # Diverted, and no safe point: a wait here is not interrupted.
        undone.append(signal.getsignal(signal.SIGUSR1) is _sigdivert._record)
        signal.raise_signal(signal.SIGUSR1)     # only recorded
        os.write(w, b"y")
        with _sigsafe.interruptibly:            # not a safe point: it stays recorded
            assert os.read(r, 1) == b"y"

    try:
        os.write(w, b"x")
        t = _usr1_soon()
        with pytest.raises(Boom):
            with _sigsafe.undoing(undo, interruptible=True):
                with _sigsafe.interruptibly:
                    os.read(r, 1)   # the b"x" above
                    os.read(r, 1)   # blocks until SIGUSR1
                pytest.fail("not interrupted")
        t.join()
    finally:
        os.close(r)
        os.close(w)
    assert undone == [True] and raising_usr1 == [signal.SIGUSR1, signal.SIGUSR1]
    assert _sigdivert.state.safe == 0 and _sigdivert.state.interruptible == 0


def test_a_handler_run_at_a_safe_point_runs_with_the_point_closed() -> None:
    """While a handler runs at a safe point (and as its exception leaves the
    wait for the undo), the point is closed: a second signal is recorded,
    and runs once the section has ended, after the undo."""
    order: List[str] = []

    def usr1(signum: int, frame: Any) -> None:
        order.append("usr1")
        signal.raise_signal(signal.SIGUSR2)     # recorded: the point is closed
        order.append("usr1 goes on")
        raise Boom(signum)

    old1 = signal.signal(signal.SIGUSR1, usr1)
    old2 = signal.signal(signal.SIGUSR2, lambda signum, frame: order.append("usr2"))
    try:
        with pytest.raises(Boom):
            with _sigsafe.undoing(lambda exc: order.append("undo"), interruptible=True):
                with _sigsafe.interruptibly:
                    signal.raise_signal(signal.SIGUSR1)   # runs here: a safe point
                pytest.fail("not interrupted")
    finally:
        signal.signal(signal.SIGUSR1, old1)
        signal.signal(signal.SIGUSR2, old2)
    assert order == ["usr1", "usr1 goes on", "undo", "usr2"]
    assert _sigdivert.state.safe == 0 and not _sigdivert.state.pending


def test_a_signal_before_the_wait_ends_it_as_it_begins(raising_usr1: List[int]) -> None:
    reached: List[str] = []
    with pytest.raises(Boom):
        with _sigsafe.undoing(lambda exc: reached.append("undo"), interruptible=True):
            signal.raise_signal(signal.SIGUSR1)     # recorded: nothing is safe here
            reached.append("recorded")
            with critical:
                with _sigsafe.interruptibly:        # in a nested section: no safe point
                    reached.append("nested")
            with _sigsafe.interruptibly:
                reached.append("waited")
    assert reached == ["recorded", "nested", "undo"]


def test_interruptibly_does_nothing_in_a_section_that_is_not_interruptible(
        raising_usr1: List[int]) -> None:
    r, w = os.pipe()
    try:
        order: List[str] = []
        t = threading.Timer(0.1, os.write, (w, b"x"))
        with pytest.raises(Boom):
            with _sigsafe.undoing(lambda exc: order.append("undo")):
                t.start()
                _usr1_soon(0.02).join()   # recorded while we wait
                with _sigsafe.interruptibly:
                    os.read(r, 1)
                order.append("read")
        t.join()
    finally:
        os.close(r)
        os.close(w)
    assert order == ["read", "undo"]


def test_interruptible_inside_a_plain_section_has_no_safe_point(
        raising_usr1: List[int]) -> None:
    order: List[str] = []
    with pytest.raises(Boom):
        with critical:
            with _sigsafe.undoing(lambda exc: order.append("undo"), interruptible=True):
                signal.raise_signal(signal.SIGUSR1)
                with _sigsafe.interruptibly:
                    order.append("waited")
            order.append("outer")
    # The deferred handler ran at the outer section's end: no undo.
    assert order == ["waited", "outer"]
