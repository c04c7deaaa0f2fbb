"""A signal handler that raises before any one bytecode of spawn(), wait()
and close(), each in turn: nothing is left and no status is lost.

pidsafe/process spares critical sections on the hot path where a sequence
makes no call (pidsafe/_sigsafe.py, "Sequences that make no call"), relying on where
CPython runs Python signal handlers: only where its eval loop checks for
pending work (function entry, backward jumps, right after a call returns).
Sampling with timers (test_spawn.py, tests/faults.py) lands at random
places; this sweep lands everywhere.  A C trace function
(opcode_signal.c, compiled here) marks SIGUSR1 as arrived just before the
k-th bytecode, for every k: the handler then runs wherever CPython would
run it for a real signal arriving there.
"""

from __future__ import annotations

import ctypes
import gc
import os
import pathlib
import shutil
import signal
import subprocess
import sysconfig
from types import FrameType
from typing import Any, Callable, Iterator, List, Optional, Set, Tuple

import pytest

import pidsafe
from pidsafe.process import _abandoned

from conftest import _handle_index_problems, children, open_fds, settle_abandoned

HERE = pathlib.Path(__file__).resolve().parent
FALSE = "/bin/false"
_PIDSAFE_DIR = os.path.dirname(pidsafe.__file__) + os.sep


class OpcodeSignal:
    """opcode_signal.c, loaded: ``arm(k)``, then ``disarm()`` -> bytecodes run."""

    def __init__(self, lib: ctypes.PyDLL) -> None:
        self._lib = lib
        lib.opsig_arm.argtypes = [ctypes.c_long, ctypes.c_int]
        lib.opsig_arm.restype = None
        lib.opsig_disarm.argtypes = []
        lib.opsig_disarm.restype = ctypes.c_long

    def arm(self, k: int, sig: int) -> None:
        self._lib.opsig_arm(k, sig)

    def disarm(self) -> int:
        return int(self._lib.opsig_disarm())


@pytest.fixture(scope="module")
def opcode_signal(tmp_path_factory: pytest.TempPathFactory) -> OpcodeSignal:
    # The compiler and headers that built pidsafe's extension: never skipped.
    cc = shutil.which("gcc") or shutil.which("cc") or "cc"
    include = sysconfig.get_paths()["include"]
    out = tmp_path_factory.mktemp("opcode_signal") / "opcode_signal.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", f"-I{include}",
                    "-o", str(out), str(HERE / "opcode_signal.c")], check=True)
    return OpcodeSignal(ctypes.PyDLL(str(out)))


class Interrupt(KeyboardInterrupt):
    """What the SIGUSR1 handler raises."""


def _where(frame: Optional[FrameType]) -> Optional[Tuple[str, str]]:
    """(module, function) of the innermost pidsafe frame on the stack, or None
    (also None in a finaliser, where Python swallows any exception)."""
    found = None
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return None
        if found is None and frame.f_code.co_filename.startswith(_PIDSAFE_DIR):
            found = (frame.f_code.co_filename[len(_PIDSAFE_DIR):], frame.f_code.co_name)
        frame = frame.f_back
    return found


class Handler:
    """SIGUSR1's handler: raises :class:`Interrupt` once per arming, if it
    runs in pidsafe code (elsewhere it is the caller's window: between a
    call returning a handle and the caller storing it, no library can help)."""

    def __init__(self) -> None:
        self.armed = False
        self.box: List[pidsafe.Process] = []   # the handles of the round
        self.fired: Set[Tuple[str, str]] = set()
        self.raised = 0
        self.outside = 0

    def after(self) -> None:
        """At the end of a round."""

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        if not self.armed:
            return
        where = self._fire(frame)
        if where is not None:
            raise Interrupt(f"SIGUSR1 in {where}")

    def _fire(self, frame: Optional[FrameType]) -> Optional[Tuple[str, str]]:
        """Disarm and count this run: where in pidsafe it came, or None
        (outside pidsafe code, where it does nothing)."""
        self.armed = False
        where = _where(frame)
        if where is None:
            self.outside += 1
            return None
        self.fired.add(where)
        self.raised += 1
        return where


class ClosingHandler(Handler):
    """A handler that uses the very handle pidsafe is working on: it closes
    the round's process, then opens a file, which takes the lowest free fd
    (the pidfd's number, if the close freed it), and returns.  A close()
    that had read the fd before the handler ran, and closes it again,
    closes that file instead."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: List[int] = []

    def __call__(self, signum: int, frame: Optional[FrameType]) -> None:
        if not self.armed or not self.box or self._fire(frame) is None:
            return
        self.box[0].close()
        self.opened.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))

    def after(self) -> None:
        while self.opened:
            fd = self.opened.pop()
            try:
                target: Optional[str] = os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError:
                target = None
            assert target == os.devnull, f"pidsafe closed the handler's fd {fd}"
            os.close(fd)


@pytest.fixture
def handler() -> Iterator[Handler]:
    yield from _installed(Handler())


@pytest.fixture
def closing_handler() -> Iterator[ClosingHandler]:
    yield from _installed(ClosingHandler())


def _installed(h: Any) -> Iterator[Any]:
    old = signal.signal(signal.SIGUSR1, h)
    gc_was_enabled = gc.isenabled()
    gc.disable()   # a finaliser run by the GC would swallow the exception
    try:
        yield h
    finally:
        if gc_was_enabled:
            gc.enable()
        signal.signal(signal.SIGUSR1, old)


def _sweep(opcode_signal: OpcodeSignal, handler: Handler,
           op: Callable[[List[pidsafe.Process]], None],
           finish: Callable[[pidsafe.Process], None]) -> int:
    """For every k: SIGUSR1 before the k-th bytecode of ``op``; then
    ``finish`` each handle ``op`` got, and nothing may be left.  Returns
    the number of bytecodes."""
    op([])   # first use: lazy imports, probes
    box: List[pidsafe.Process] = []
    opcode_signal.arm(0, signal.SIGUSR1)
    try:
        op(box)
    finally:
        n = opcode_signal.disarm()
    while box:
        finish(box.pop())
    assert n > 100, n
    # What leak_check() looks at, but without its gc.collect() per round
    # (nothing here needs the cyclic GC, which is off): fds, children, and
    # the handle index, which must name exactly the open handles.
    fds, kids = open_fds(), children()
    for k in range(1, n + 1):
        box = []
        handler.box = box
        handler.armed = True
        opcode_signal.arm(k, signal.SIGUSR1)
        try:
            op(box)
        except Interrupt:
            pass
        finally:
            # Disarmed first: a signal still pending when ``op`` returned
            # runs its handler at the next check, maybe inside an audit
            # hook that PyEval_SetTrace runs (a Reaper's), where Python
            # would swallow the exception.
            handler.armed = False
            opcode_signal.disarm()
        handler.after()
        while box:
            finish(box.pop())
        settle_abandoned()
        now = open_fds()
        problems = [f"leaked fd {fd} -> {now[fd]}" for fd in sorted(set(now) - set(fds))]
        problems += [f"closed fd {fd} -> {fds[fd]}" for fd in sorted(set(fds) - set(now))]
        problems += [f"leaked child {pid}" for pid in sorted(children() - kids)]
        problems += _handle_index_problems(now)
        assert not problems, f"SIGUSR1 before bytecode {k}: {problems}"
    assert not _abandoned.registry
    return n


def _spawn_wait_close(box: List[pidsafe.Process]) -> None:
    box.append(pidsafe.spawn([FALSE]))
    assert box[0].wait() == 1
    box[0].close()


def _finish(p: pidsafe.Process) -> None:
    # Whatever the interrupted call had done: the status is exact, and the
    # next close() (idempotent) leaves nothing.
    assert p.wait() == 1
    p.close()
    assert p.closed


def _finish_closed(p: pidsafe.Process) -> None:
    # As _finish, but for a ``with`` block, whose __exit__ closes the
    # handle even if its wait was interrupted: a child still running then
    # is left to the abandoned registry (which settle_abandoned() reaps).
    if p.closed and p.returncode is None:
        assert p in _abandoned.registry.values()
        return
    _finish(p)


def test_a_handler_raising_before_any_bytecode_of_spawn_wait_close_leaves_nothing(
        opcode_signal: OpcodeSignal, handler: Handler) -> None:
    # The wait reaps with no section: the C call that reaps stores the
    # status in the handle's record, and a handler raising before the wait
    # has recorded it leaves it there (returncode reads it; the next call
    # records it).  Seen on its way out of some rounds, and exact each time.
    in_record_only: List[int] = []

    def finish(p: pidsafe.Process) -> None:
        if p._returncode is None and p.returncode is not None:
            in_record_only.append(p.pid)
            assert p.returncode == 1
        _finish(p)

    n = _sweep(opcode_signal, handler, _spawn_wait_close, finish)
    assert in_record_only, "no round left a status in the record only"
    assert ("process/_wait.py", "reap_locked") in handler.fired, handler.fired
    # It fired all along the way, not in one place: in spawn's section, in
    # the wait (its borrow, its blocking call, its reaping section), and in
    # close() of the reaped process, which takes no section.
    modules = {module for module, _ in handler.fired}
    assert {"process/_spawn.py", "process/_wait.py", "process/_process.py",
            "process/_lifetime.py", "_sigsafe.py"} <= modules, handler.fired
    assert ("process/_lifetime.py", "close") in handler.fired, handler.fired
    assert ("process/_wait.py", "_block_and_reap") in handler.fired, handler.fired
    assert handler.raised > n // 4, (handler.raised, handler.outside, n)


def test_a_handler_raising_in_a_with_block_of_spawn_leaves_nothing(
        opcode_signal: OpcodeSignal, handler: Handler) -> None:
    # The same through the context manager: __exit__ waits, then closes.
    def op(box: List[pidsafe.Process]) -> None:
        box.append(pidsafe.spawn([FALSE]))
        with box[0]:
            pass
        assert box[0].returncode == 1

    n = _sweep(opcode_signal, handler, op, _finish_closed)
    assert ("process/_process.py", "__exit__") in handler.fired, handler.fired
    assert handler.raised > n // 4, (handler.raised, handler.outside, n)


def test_a_handler_closing_the_handle_at_any_bytecode_of_wait_close(
        opcode_signal: OpcodeSignal, closing_handler: ClosingHandler) -> None:
    # The handler closes the process wait() or close() is working on, and
    # returns: the handle's fd is closed once, by whichever close() drops
    # it first, and no other fd of the process is touched.
    def op(box: List[pidsafe.Process]) -> None:
        box.append(pidsafe.spawn([FALSE]))
        try:
            assert box[0].wait() == 1
        except ValueError:   # closed by the handler before it could reap
            assert box[0].closed
        box[0].close()

    n = _sweep(opcode_signal, closing_handler, op, _finish_closed)
    assert ("process/_lifetime.py", "close") in closing_handler.fired, closing_handler.fired
    assert ("process/_wait.py", "_block_and_reap") in closing_handler.fired
    assert closing_handler.raised > n // 10, (closing_handler.raised, n)
