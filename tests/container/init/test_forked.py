"""Entering a running container (init/_forked.py): the forked child's
handover, deadlines, and every call of an exec failed or interrupted (root)."""

from __future__ import annotations

import errno
import os
import pathlib
import time
from typing import Any

import pytest

import pidsafe
from conftest import children, leak_check
from faults import Faults, Interrupt
from pidsafe.container.init import _forked

pytestmark = pytest.mark.root


def test_a_deadline_that_passed_says_what_did_not_start() -> None:
    d = _forked.Deadline(0.0, "exec")
    time.sleep(0.001)   # past, whatever the clock's resolution
    with pytest.raises(pidsafe.ContainerError) as info:
        d.remaining_ms()
    assert info.value.errno == errno.ETIMEDOUT
    assert "exec: the process did not start within 0 s (stopped or frozen" in str(info.value)


def test_enter_deadline_is_at_most_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 5.0)
    assert _forked.enter_deadline("x").seconds == 5.0
    assert _forked.enter_deadline("x", 2.0).seconds == 2.0
    assert _forked.enter_deadline("x", 60.0).seconds == 5.0


def test_a_wait_for_a_process_that_never_exits_ends_at_the_deadline() -> None:
    """What a container froze (pidsafe-init in its cgroups, before its
    exit) or stopped is waited for until the deadline, and left to the
    caller to kill."""
    with pidsafe.spawn(["sleep", "1000"]) as p:
        try:
            with pytest.raises(pidsafe.ContainerError) as info:
                _forked.wait_exited(p, _forked.Deadline(0.05, "exec"))
            assert info.value.errno == errno.ETIMEDOUT
            assert p.returncode is None
        finally:
            p.kill()
            p.wait()
    with pidsafe.spawn(["true"]) as p:
        assert _forked.wait_exited(p, _forked.Deadline(60, "exec")) == 0


def test_exec_never_waits_without_a_bound_for_a_process_the_container_can_reach(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pidsafe-init that hands the forked child over sits in the
    container's cgroups until it exits (frozen there, it never does), and
    the forked child that reported an error is in the container's pid
    namespace until it exits (stopped there, it never does): neither is
    waited for without the deadline, on success or on error."""
    c = pidsafe.Container.create("bound", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        unbounded = []
        real_wait = pidsafe.Process.wait

        def wait(self: pidsafe.Process, timeout: Any = None) -> int:
            if timeout is None and self.returncode is None:
                unbounded.append(self.args)
            return real_wait(self, timeout)

        monkeypatch.setattr(pidsafe.Process, "wait", wait)
        with c.exec(["true"], exec_id="ok") as p:
            with pytest.raises(pidsafe.ContainerError):
                c.exec(["/no/such/program"], exec_id="missing")
            monkeypatch.undo()
            assert p.wait(timeout=60) == 0
        assert unbounded == []
    finally:
        monkeypatch.undo()
        c.delete(force=True)


def test_the_exec_d_process_is_ours_from_a_sealed_binary_with_a_session_of_its_own(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("own", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        before = children()
        with c.exec(["sh", "-c", "cat /proc/$$/stat; read x; true"], exec_id="e",
                    stdin=pidsafe.PIPE, stdout=pidsafe.PIPE) as p:
            assert p.stdout is not None and p.stdin is not None
            stat = p.stdout.readline().decode()   # "PID (COMM) STATE PPID PGRP SID ..."
            assert stat[stat.rindex(")") + 2:].split()[3] == stat.split()[0]   # SID == PID
            # Our child (CLONE_PARENT), the only new one: the pidsafe-init
            # that forked it is gone and reaped.
            assert children() - before == {p.pid}
            p.stdin.close()
            assert p.wait(timeout=60) == 0
    finally:
        c.delete(force=True)


@pytest.mark.parametrize("interrupt", [False, True], ids=["failing", "interrupted"])
def test_exec_with_each_call(faults: Faults, make_bundle: Any, state_dir: pathlib.Path,
                             interrupt: bool) -> None:
    """Every native and os call of an exec into a container (the pidfd
    copies, the fork socket, pidsafe-init's clone, the handover), failed or
    interrupted: the exec raises, nothing of it is left, the container
    goes on."""
    c = pidsafe.Container.create("fx", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        ran = []

        def exec_once(i: int) -> None:
            with c.exec(["true"], exec_id=f"x{i}") as p:
                ran.append(p.wait(timeout=60))

        # The handed-over pidsafe-init may need a waitid or two more to be
        # reaped, so the runs' call lists may differ from some call on: every
        # k in their common prefix must come; a k past it that a run does
        # not reach is one the exec finished without (checked by its exit).
        runs = []
        for i in range(3):
            faults.count(lambda: exec_once(i))
            runs.append(list(faults.calls))
        stable = 0
        while all(len(r) > stable for r in runs) and len({r[stable] for r in runs}) == 1:
            stable += 1
        calls = max(runs, key=len)
        n = len(calls)
        assert ran == [0, 0, 0] and stable > 10, runs
        for k in range(1, n + 1):
            with leak_check(f"exec with call {k} of {n} ({calls[k - 1]}) "
                            f"{'interrupted' if interrupt else 'failed'}"):
                ctx = faults.interrupt_at(k) if interrupt else faults.fail_at(k, errno.EIO)
                finished = len(ran)
                try:
                    with ctx:
                        exec_once(10 + k)
                except Interrupt:
                    assert interrupt
                except (OSError, pidsafe.Error) as exc:
                    assert not interrupt, f"call {k} ({faults.fired}): {exc!r}"
                if faults.fired is None:
                    # This run made fewer calls than k (a wait that found its
                    # process gone at once, on a loaded machine even within
                    # the runs' common prefix): nothing was failed.
                    assert k > stable or len(faults.calls) < k, \
                        f"call {k} never came (the runs agree up to {stable})"
                    assert ran[finished:] == [0], f"call {k} never came, and the exec failed"
        exec_once(10 + n + 1)   # the container is whole
    finally:
        c.delete(force=True)
