"""The fault-injection harness itself (tests/faults.py): counts, fails, interrupts."""

from __future__ import annotations

import errno
import os

import pytest

from faults import Faults, Interrupt
from pidsafe import _sys


def _open_and_close() -> None:
    fd = _sys.pidfd_open(os.getpid())
    os.close(fd)


def test_count_sees_native_and_os_calls(faults: Faults) -> None:
    def op() -> None:
        _open_and_close()
        r, w = os.pipe2(os.O_CLOEXEC)
        os.close(r)
        os.close(w)

    assert faults.count(op) == 2
    assert faults.calls == ["pidsafe_pidfd_open", "os.pipe2"]


def test_fail_at_sets_errno_like_the_kernel(faults: Faults) -> None:
    with faults.fail_at(1, errno.EMFILE), pytest.raises(OSError) as info:
        _open_and_close()
    assert info.value.errno == errno.EMFILE and "pidfd_open" in str(info.value)
    with faults.fail_at(1, errno.ENFILE), pytest.raises(OSError) as info:
        os.pipe2(os.O_CLOEXEC)
    assert info.value.errno == errno.ENFILE


def test_interrupt_after_lands_once_the_call_has_run(faults: Faults) -> None:
    made = []
    real = _sys.pidfd_open

    def op() -> None:
        try:
            made.append(real(os.getpid()))
        finally:
            pass

    with faults.interrupt_at(1), pytest.raises(Interrupt):
        op()
    # The call ran (an fd exists) but the interrupt beat the append: the
    # very window the library must guard.
    assert made == []
    assert faults.fired == "call 1: pidsafe_pidfd_open"
    # Find and close the fd the interrupted call made, so this test is clean.
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[pidfd]":
                os.close(int(name))
        except OSError:
            pass


def test_interrupt_before_stops_the_call(faults: Faults) -> None:
    with faults.interrupt_at(1, before=True), pytest.raises(Interrupt):
        _open_and_close()
    assert faults.calls == ["pidsafe_pidfd_open"]


def test_everything_is_put_back(faults: Faults) -> None:
    lib, pipe2 = _sys.lib, os.pipe2
    with faults.fail_at(5):
        pass
    assert _sys.lib is lib and os.pipe2 is pipe2
