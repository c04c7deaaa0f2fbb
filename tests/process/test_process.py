"""pidsafe.Process: waiting, signals, threads, asyncio, pipes, adoption, lifetime."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import signal
import subprocess
import sys
import select
import textwrap
import threading
import time
import warnings
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

import pidsafe
from pidsafe.process import _abandoned

from pidsafe import _sys

from conftest import (Boom, BlockingCalls, children, drop_running_child, leak_check, open_fds,
                      settle_abandoned, spawn_and_wait, started_cat, state, wait_until)
from faults import Faults, Interrupt

PIPE = subprocess.PIPE
PY = sys.executable


# -- return codes and signals ------------------------------------------------------

@pytest.mark.parametrize("send,code", [
    (lambda p: p.terminate(), -signal.SIGTERM),
    (lambda p: p.kill(), -signal.SIGKILL),
    (lambda p: p.send_signal(signal.SIGUSR1), -signal.SIGUSR1),
    (lambda p: p.send_signal(signal.SIGINT), -signal.SIGINT),
], ids=["terminate", "kill", "SIGUSR1", "SIGINT"])
def test_signals_give_negative_return_codes(send: Callable[[pidsafe.Process], None],
                                            code: int) -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        send(p)
        assert p.wait(timeout=10) == code
        assert p.returncode == code


def test_core_dumping_signal(tmp_path: Any) -> None:
    # CLD_DUMPED or CLD_KILLED depending on the core limit: -SIGQUIT either way.
    with pidsafe.spawn(["sh", "-c", "ulimit -c 0; kill -QUIT $$"], cwd=tmp_path) as p:
        assert p.wait(timeout=10) == -signal.SIGQUIT


def test_signal_handled_by_the_child() -> None:
    prog = "trap 'exit 42' USR1; echo ready; while :; do sleep 0.01; done"
    with pidsafe.spawn(["sh", "-c", prog], stdout=PIPE) as p:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGUSR1)
        assert p.wait(timeout=10) == 42


def test_stopped_child_is_alive_and_not_exited() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        p.send_signal(signal.SIGSTOP)
        wait_until(lambda: state(p.pid) == "T", "the child to stop")
        assert p.is_alive() and p.poll() is None
        with pytest.raises(pidsafe.TimeoutExpired):
            p.wait(timeout=0.05)
        p.send_signal(signal.SIGCONT)
        p.kill()
        assert p.wait(timeout=10) == -signal.SIGKILL


def test_invalid_signal_number_is_an_error() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        with pytest.raises(OSError) as info:
            p.send_signal(12345)
        assert "pidfd_send_signal" in str(info.value)
        p.kill()


def test_signals_after_reaping_do_nothing() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 2"]) as p:
        assert p.wait() == 2
        p.kill()
        p.terminate()
        p.send_signal(signal.SIGUSR1)
        assert p.returncode == 2
    # Even on the closed handle, like Popen after wait().
    p.kill()


def test_signal_to_a_zombie_is_harmless_and_keeps_the_status() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 6"]) as p:
        wait_until(lambda: state(p.pid) == "Z", "the child to exit")
        p.kill()
        assert p.wait() == 6


# -- poll, is_alive, returncode -----------------------------------------------------

def test_poll_and_returncode() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        assert p.returncode is None
        assert p.poll() is None and p.poll() is None
        p.kill()
        wait_until(lambda: p.poll() is not None, "poll() to see the exit")
        assert p.poll() == p.returncode == -signal.SIGKILL
        assert p.wait() == -signal.SIGKILL


def test_zombie_is_not_alive() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 1"]) as p:
        wait_until(lambda: state(p.pid) == "Z", "the child to become a zombie")
        assert p.returncode is None
        assert not p.is_alive()
        assert p.returncode == 1 and state(p.pid) == ""  # and it was reaped


def test_is_alive() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        assert p.is_alive()
        p.kill()
        wait_until(lambda: not p.is_alive(), "is_alive() to turn False")
        assert p.returncode == -signal.SIGKILL
        assert not p.is_alive()


def test_fileno_is_the_pidfd_and_becomes_readable_at_exit() -> None:
    import select

    with pidsafe.spawn(["sleep", "30"]) as p:
        fd = p.fileno()
        assert select.select([fd], [], [], 0)[0] == []
        p.kill()
        assert select.select([fd], [], [], 10)[0] == [fd]
        assert p.wait() == -signal.SIGKILL


# -- wait(timeout) -----------------------------------------------------------------

def test_wait_timeout_raises_timeout_expired_and_honours_the_deadline(
        blocking_calls: BlockingCalls) -> None:
    args = ["sleep", "30"]
    with pidsafe.spawn(args) as p:
        t0 = time.monotonic()
        with pytest.raises(pidsafe.TimeoutExpired) as info:
            p.wait(timeout=0.5)
        assert time.monotonic() - t0 >= 0.5   # not early
        assert isinstance(info.value, subprocess.TimeoutExpired)
        assert info.value.cmd == args and info.value.timeout == 0.5
        # One poll(2) for the whole timeout: no busy loop.
        assert [c[0] for c in blocking_calls.calls] == ["poll"], blocking_calls.calls
        assert p.is_alive()  # a timeout does nothing to the process
        p.kill()
        assert p.wait(timeout=10) == -signal.SIGKILL


@pytest.mark.parametrize("timeout", [0, -1, 0.0])
def test_wait_with_no_time_left_raises_at_once(blocking_calls: BlockingCalls,
                                              timeout: float) -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            p.wait(timeout=timeout)
        assert blocking_calls.calls == []   # never blocked
        p.kill()


def test_wait_timeout_returns_as_soon_as_the_child_exits(blocking_calls: BlockingCalls) -> None:
    with started_cat() as p:
        result: List[int] = []
        t = threading.Thread(target=lambda: result.append(p.wait(timeout=60)))
        t.start()
        blocking_calls.wait_inside()
        assert p.stdin is not None
        p.stdin.close()          # cat exits: the poll wakes up for that
        t.join()
    assert result == [0]
    assert blocking_calls.calls == [("poll", pytest.approx(60, abs=5), True)]


def test_untimed_wait_does_not_busy_loop(blocking_calls: BlockingCalls) -> None:
    with started_cat() as p:
        result: List[int] = []
        t = threading.Thread(target=lambda: result.append(p.wait()))
        t.start()
        blocking_calls.wait_inside()
        assert p.stdin is not None
        p.stdin.close()
        t.join()
    assert result == [0]
    # One waitid(WNOWAIT), sleeping until the exit; the reap is WNOHANG.
    assert blocking_calls.calls == [("waitid", None, None)]


def test_wait_of_an_exited_child_returns_at_once_and_again() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 12"]) as p:
        wait_until(lambda: state(p.pid) == "Z", "the child to exit")
        assert p.wait(timeout=0) == 12
        assert p.wait() == 12 and p.wait(timeout=0) == 12


# -- EINTR ------------------------------------------------------------------------

@pytest.mark.parametrize("timeout", [None, 30.0])
def test_eintr_during_wait_is_retried(alarm: Any, timeout: Optional[float]) -> None:
    # The child exits only after the fifth signal has interrupted the wait.
    ticks: List[int] = []
    with started_cat() as p:
        assert p.stdin is not None

        def tick(*a: Any) -> None:
            ticks.append(1)
            if len(ticks) == 5:
                assert p.stdin is not None
                p.stdin.close()

        alarm(0.02, tick)
        assert p.wait(timeout) == 0
    assert len(ticks) >= 5


def test_eintr_does_not_extend_the_deadline(alarm: Any) -> None:
    # Were the timeout restarted at each EINTR, this would never end.
    ticks: List[int] = []
    with pidsafe.spawn(["sleep", "30"]) as p:
        alarm(0.01, lambda *a: ticks.append(1))
        t0 = time.monotonic()
        with pytest.raises(pidsafe.TimeoutExpired):
            p.wait(timeout=0.3)
        assert time.monotonic() - t0 >= 0.3 and ticks
        p.kill()


@pytest.mark.parametrize("timeout", [None, 30.0])
def test_signal_handler_exception_propagates_out_of_wait(
        alarm: Any, timeout: Optional[float]) -> None:
    ticks: List[int] = []

    def handler(*a: Any) -> None:
        ticks.append(1)
        if len(ticks) == 3:
            raise Boom()

    with pidsafe.spawn(["sleep", "30"]) as p:
        alarm(0.02, handler)
        with pytest.raises(Boom):
            p.wait(timeout)
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        # The handle is intact: another thread can poll, and waiting works.
        assert p.poll() is None and p.is_alive()
        p.kill()
        assert p.wait() == -signal.SIGKILL


# -- threads ----------------------------------------------------------------------

def test_wait_from_several_threads_at_once(blocking_calls: BlockingCalls) -> None:
    results: List[Any] = []
    with pidsafe.spawn(["sleep", "30"]) as p:
        def waiter(timeout: Optional[float]) -> None:
            try:
                results.append(p.wait(timeout))
            except BaseException as exc:  # pragma: no cover - reported below
                results.append(exc)

        threads = [threading.Thread(target=waiter, args=(t,))
                   for t in (None, None, None, 30.0, 30.0)]
        for t in threads:
            t.start()
        blocking_calls.wait_inside(len(threads))   # all five asleep on the pidfd
        p.kill()
        for t in threads:
            t.join()
        waiters_poll = [threading.Thread(target=lambda: results.append(p.poll()))
                        for _ in range(3)]
        for t in waiters_poll:
            t.start()
        for t in waiters_poll:
            t.join()
    assert results == [-signal.SIGKILL] * 8


def test_a_blocked_waiter_does_not_block_poll_or_signals(
        blocking_calls: BlockingCalls) -> None:
    with started_cat() as p:
        assert p.stdin is not None
        # Were poll() to wait for the waiter (that is, for the exit), only
        # this would end the test, with the checks below failing.
        watchdog = threading.Timer(60, p.stdin.close)
        watchdog.start()
        try:
            t = threading.Thread(target=p.wait)
            t.start()
            blocking_calls.wait_inside()
            assert p.poll() is None and p.is_alive()
            p.terminate()
            t.join()
            assert p.returncode == -signal.SIGTERM
        finally:
            watchdog.cancel()


def test_close_while_another_thread_waits(blocking_calls: BlockingCalls) -> None:
    p = started_cat()
    fd = p.fileno()
    results: List[Any] = []
    t = threading.Thread(target=lambda: results.append(p.wait()))
    t.start()
    blocking_calls.wait_inside()
    assert p.stdin is not None
    stdin = os.dup(p.stdin.fileno())
    p.close()
    assert p.closed
    with pytest.raises(ValueError):
        p.fileno()
    # Still running: the pidfd is kept (to reap it), the number not free.
    assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[pidfd]"
    os.close(stdin)   # cat exits
    t.join()
    assert results == [0]
    # The waiter reaped it, and let the closed handle's pidfd go.
    assert not _abandoned.registry
    assert (not os.path.exists(f"/proc/self/fd/{fd}")
            or os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[pidfd]")


def test_many_threads_poll_while_children_exit() -> None:
    # Stress the WNOHANG/blocking handover; repeat with --count.
    procs = [pidsafe.spawn(["sh", "-c", f"exit {i % 7}"]) for i in range(20)]
    errors: List[BaseException] = []

    def hammer(p: pidsafe.Process) -> None:
        try:
            while p.poll() is None:
                pass
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(p,)) for p in procs for _ in range(2)]
    threads += [threading.Thread(target=p.wait) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i, p in enumerate(procs):
        assert p.returncode == i % 7
        p.close()
    assert not errors


# -- asyncio ---------------------------------------------------------------------

def test_wait_async_with_several_awaiters_does_not_block_the_loop() -> None:
    # The child exits only when another task on the loop lets it (closes its
    # stdin): if waiting blocked the loop, only the watchdog would end it.
    async def main() -> None:
        with pidsafe.spawn(["sh", "-c", "cat; exit 9"], stdin=PIPE) as p:
            watchdog = threading.Timer(20, p.kill)
            watchdog.start()

            async def release() -> None:
                await asyncio.sleep(0)   # one loop step: every waiter is waiting
                assert p.stdin is not None
                p.stdin.close()

            try:
                codes = await asyncio.gather(*(p.wait_async() for _ in range(4)), release())
            finally:
                watchdog.cancel()
            assert codes[:4] == [9] * 4, "the event loop was blocked while waiting"
            assert await p.wait_async() == 9

    asyncio.run(main())


def test_wait_async_of_a_killed_child_and_of_an_exited_one() -> None:
    async def main() -> None:
        with pidsafe.spawn(["sleep", "30"]) as p:
            task = asyncio.create_task(p.wait_async())
            await asyncio.sleep(0)   # one loop step: the task waits on the pidfd
            assert not task.done()
            p.kill()
            assert await asyncio.wait_for(task, 10) == -signal.SIGKILL
        with pidsafe.spawn(["sh", "-c", "exit 5"]) as p:
            assert select.select([p.fileno()], [], [], 30)[0]   # exited already
            assert await p.wait_async() == 5

    asyncio.run(main())


def test_cancelled_wait_async_leaves_nothing_behind() -> None:
    async def main() -> None:
        with pidsafe.spawn(["sleep", "30"]) as p:
            fds = open_fds()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(p.wait_async(), 0.1)
            assert open_fds() == fds
            p.kill()
            assert await p.wait_async() == -signal.SIGKILL

    asyncio.run(main())


# -- lifetime: close, context manager, __del__ ------------------------------------------

def test_context_manager_waits_and_closes_everything() -> None:
    # The child exits only once its stdin is closed: by the context manager.
    with pidsafe.spawn(["sh", "-c", "cat; exit 4"], stdin=PIPE, stdout=PIPE,
                       stderr=PIPE) as p:
        pass
    assert p.returncode == 4 and p.closed
    assert p.stdin is not None and p.stdin.closed
    assert p.stdout is not None and p.stdout.closed
    assert p.stderr is not None and p.stderr.closed
    with pytest.raises(ValueError):
        p.fileno()


def test_context_manager_waits_even_when_the_body_raises() -> None:
    with pytest.raises(Boom):
        with pidsafe.spawn(["sh", "-c", "cat; exit 4"], stdin=PIPE) as p:
            raise Boom()
    assert p.returncode == 4 and p.closed


def test_close_is_idempotent_and_does_not_wait() -> None:
    p = pidsafe.spawn(["sleep", "30"])
    p.close()
    p.close()
    assert p.closed and "closed" in repr(p) and str(p.pid) in repr(p)
    for call in (p.fileno, p.poll, p.kill, p.is_alive, lambda: p.wait(0.1)):
        with pytest.raises(ValueError, match="closed"):
            call()
    # Still running, still our child: adopt it again to reap it.
    assert state(p.pid) not in ("Z", "")
    with pidsafe.Process.from_pid(p.pid) as again:
        again.kill()
        assert again.wait(10) == -signal.SIGKILL
    # The closed handle kept its pidfd to reap the child later; the next
    # spawn() finds it reaped and lets the pidfd go.
    assert _abandoned.registry
    spawn_and_wait()
    assert not _abandoned.registry


def test_closing_a_running_child_leaves_no_zombie() -> None:
    p = started_cat()
    pid = p.pid
    assert p.stdin is not None
    stdin = os.dup(p.stdin.fileno())   # keeps cat reading after close()
    p.close()
    assert state(pid) not in ("Z", "") and _abandoned.registry
    os.close(stdin)                    # now cat exits
    wait_until(lambda: state(pid) == "Z", "cat to exit")
    spawn_and_wait()                   # reaps it, as Popen reaps dropped children
    assert pid not in children() and not _abandoned.registry


def test_closing_an_exited_child_reaps_it_at_once() -> None:
    p = pidsafe.spawn(["sh", "-c", "exit 3"])
    wait_until(lambda: state(p.pid) == "Z", "the child to exit")
    p.close()
    assert p.pid not in children() and p.returncode == 3 and not _abandoned.registry


def test_unclosed_reaped_process_warns_and_closes_its_fd() -> None:
    p = pidsafe.spawn(["true"])
    p.wait()
    fd = p.fileno()
    with pytest.warns(ResourceWarning, match="unclosed pidsafe.Process"):
        del p
        gc.collect()
    assert not os.path.exists(f"/proc/self/fd/{fd}") or \
        os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[pidfd]"


def test_dropped_running_child_is_reaped_by_a_later_spawn() -> None:
    pid = drop_running_child()
    assert pid in children()
    spawn_and_wait()
    assert pid not in children(), "the abandoned child is still a zombie"
    assert not _abandoned.registry


def test_dropped_exited_child_is_reaped_at_once() -> None:
    p = pidsafe.spawn(["sh", "-c", "exit 3"])
    pid = p.pid
    wait_until(lambda: state(pid) == "Z", "the child to exit")
    with pytest.warns(ResourceWarning, match="unclosed"):
        del p
        gc.collect()
    assert pid not in children() and not _abandoned.registry


def test_dropped_adopted_non_child_closes_its_pidfd_at_once() -> None:
    with pidsafe.spawn(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=PIPE) as sh:
        assert sh.stdout is not None
        grand_pid = int(sh.stdout.readline())
        fds = open_fds()
        q = pidsafe.Process.from_pid(grand_pid)
        with pytest.warns(ResourceWarning, match="unclosed"):
            del q
            gc.collect()
        assert open_fds() == fds and not _abandoned.registry
        with pidsafe.Process.from_pid(grand_pid) as q:
            q.kill()
        sh.wait(10)


# -- from_pid ---------------------------------------------------------------------

def test_from_pid_adopts_our_own_posix_spawn_child() -> None:
    pid = os.posix_spawn("/bin/sh", ["sh", "-c", "exit 4"], os.environ)
    with pidsafe.Process.from_pid(pid) as p:
        assert p.pid == pid and p.args is None
        assert p.wait(timeout=10) == 4
    assert pid not in children()


def test_from_pid_of_a_non_child_waits_for_its_real_parent_to_reap() -> None:
    # sh is our child; its background sleep is not.  sh reaps the sleep.
    prog = "sleep 30 & echo $!; wait $!; echo reaped"
    with pidsafe.spawn(["sh", "-c", prog], stdout=PIPE) as sh:
        assert sh.stdout is not None
        with pidsafe.Process.from_pid(int(sh.stdout.readline())) as grand:
            assert grand.poll() is None and grand.is_alive()
            with pytest.raises(pidsafe.TimeoutExpired):
                grand.wait(timeout=0.1)
            grand.kill()
            assert grand.wait(timeout=10) == -signal.SIGKILL
            assert not grand.is_alive()
        assert sh.stdout.readline() == b"reaped\n"
        assert sh.wait(10) == 0


def test_from_pid_of_a_non_child_reaped_before_its_status_is_filed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its real parent reaps it, and for a moment the kernel has unhashed it
    but not yet filed its status on the pidfd: PIDFD_GET_INFO fails with
    ESRCH then (Linux 6.18; a shim's delete failed on it in a CRI test).
    That is "not known yet", never an error."""
    real = _sys.pidfd_exit_info
    misses = [3]

    def filed_late(fd: int) -> Any:
        status = real(fd)
        if status is not None and misses[0] > 0:
            misses[0] -= 1
            raise _sys.make_oserror(errno.ESRCH, "ioctl(PIDFD_GET_INFO)")
        return status

    monkeypatch.setattr(_sys, "pidfd_exit_info", filed_late)
    with pidsafe.spawn(["sh", "-c", "sleep 30 & echo $!; wait $!; echo reaped"],
                       stdout=PIPE) as sh:
        assert sh.stdout is not None
        with pidsafe.Process.from_pid(int(sh.stdout.readline())) as grand:
            grand.kill()
            assert sh.stdout.readline() == b"reaped\n"
            assert grand.wait(timeout=10) == -signal.SIGKILL
        assert misses == [0]
        assert sh.wait(10) == 0


def test_from_pid_of_a_non_child_wait_async() -> None:
    async def main(grand: pidsafe.Process) -> int:
        task = asyncio.create_task(grand.wait_async())
        await asyncio.sleep(0)   # one loop step: the task waits on the pidfd
        grand.kill()
        return await asyncio.wait_for(task, 10)

    with pidsafe.spawn(["sh", "-c", "sleep 30 & echo $!; wait"], stdout=PIPE) as sh:
        assert sh.stdout is not None
        with pidsafe.Process.from_pid(int(sh.stdout.readline())) as grand:
            assert asyncio.run(main(grand)) == -signal.SIGKILL


def test_from_pid_of_a_gone_process_raises_process_lookup_error() -> None:
    with pidsafe.spawn(["true"]) as p:
        p.wait()
    with pytest.raises(ProcessLookupError) as info:
        pidsafe.Process.from_pid(p.pid)
    assert "pidfd_open" in str(info.value)


@pytest.mark.parametrize("pid", [0, -1, True, "1", 1.0])
def test_from_pid_rejects_non_pids(pid: Any) -> None:
    with pytest.raises(ValueError, match="pid"):
        pidsafe.Process.from_pid(pid)


# -- communicate ------------------------------------------------------------------

def test_communicate_input_and_both_outputs() -> None:
    with pidsafe.spawn(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=PIPE, stdout=PIPE,
                       stderr=PIPE) as p:
        assert p.communicate(b"in\n", timeout=10) == (b"in\n", b"err\n")
    assert p.returncode == 3


@pytest.mark.parametrize("kw,inp,expected", [
    (dict(), None, (None, None)),
    (dict(stdout=PIPE), None, (b"out\n", None)),
    (dict(stderr=PIPE), None, (None, b"err\n")),
    (dict(stdin=PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), b"x", (None, None)),
], ids=["nothing", "stdout", "stderr", "stdin"])
def test_communicate_with_one_pipe_or_none(kw: Any, inp: Optional[bytes],
                                           expected: Any) -> None:
    with pidsafe.spawn(["sh", "-c", "cat >/dev/null 2>&1 <&0; echo out; echo err >&2"],
                       **({"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL,
                           "stderr": subprocess.DEVNULL} | kw)) as p:
        assert p.communicate(inp) == expected
        assert p.returncode == 0


def test_communicate_stdin_only_delivers_the_input(tmp_path: Any) -> None:
    out = tmp_path / "out"
    with pidsafe.spawn(["sh", "-c", f"cat > {out}"], stdin=PIPE) as p:
        assert p.communicate(b"delivered") == (None, None)
    assert out.read_bytes() == b"delivered"


def test_communicate_big_streams_both_ways_without_deadlock() -> None:
    # stderr fills up before the child reads any input, and stdout echoes the
    # input while we are still writing it: only a select loop gets through.
    data = os.urandom(4 << 20)
    prog = "head -c 1000000 /dev/zero >&2; cat; head -c 2000000 /dev/zero >&2"
    with pidsafe.spawn(["sh", "-c", prog], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
        out, err = p.communicate(data, timeout=60)
    assert out == data
    assert err == b"\0" * 3000000
    assert p.returncode == 0


def test_communicate_when_the_child_ignores_its_input() -> None:
    with pidsafe.spawn(["sh", "-c", "exec 0<&-; echo done"], stdin=PIPE, stdout=PIPE) as p:
        assert p.communicate(b"x" * (1 << 20), timeout=10) == (b"done\n", None)


@pytest.fixture
def gate() -> Iterator[Tuple[int, Callable[[], None]]]:
    """(fd, open): a child runs ``read x </proc/self/fd/FD`` (dash has no
    ``<&FD`` past 9) to wait until we call open()."""
    r, w = os.pipe()
    try:
        yield r, lambda: os.write(w, b"go\n") and None
    finally:
        os.close(r)
        os.close(w)


def readable(*files: Any) -> None:
    """Until each file has data (or EOF) waiting in its pipe."""
    for f in files:
        assert select.select([f], [], [], 60)[0], f"{f} never became readable"


def test_communicate_timeout_then_the_rest(gate: Tuple[int, Callable[[], None]]) -> None:
    fd, open_gate = gate
    prog = f"echo first; echo e1 >&2; read x </proc/self/fd/{fd}; echo second; echo e2 >&2"
    with pidsafe.spawn(["sh", "-c", prog], stdout=PIPE, stderr=PIPE, pass_fds=[fd]) as p:
        readable(p.stdout, p.stderr)
        with pytest.raises(pidsafe.TimeoutExpired) as info:
            p.communicate(timeout=0.2)
        assert isinstance(info.value, subprocess.TimeoutExpired)
        assert info.value.stdout == b"first\n" and info.value.stderr == b"e1\n"
        open_gate()
        assert p.communicate(timeout=30) == (b"first\nsecond\n", b"e1\ne2\n")
        assert p.returncode == 0


def test_communicate_timeout_with_input_still_pending_then_the_rest(
        gate: Tuple[int, Callable[[], None]]) -> None:
    # The child reads nothing until we let it: our input stalls in the pipe
    # when the first call times out, and a second call must finish sending it.
    fd, open_gate = gate
    data = os.urandom(1 << 20)
    with pidsafe.spawn(["sh", "-c", f"read x </proc/self/fd/{fd}; exec cat"], stdin=PIPE, stdout=PIPE,
                       pass_fds=[fd]) as p:
        with pytest.raises(pidsafe.TimeoutExpired):
            p.communicate(data, timeout=0.1)
        with pytest.raises(ValueError, match="input"):
            p.communicate(b"more")
        open_gate()
        out, err = p.communicate(timeout=60)
    assert out == data and err is None and p.returncode == 0


def test_communicate_timeout_kill_then_communicate() -> None:
    # The Popen idiom from the docs.
    # exec: a killed sh would leave its sleep holding the pipe open.
    with pidsafe.spawn(["sh", "-c", "echo partial; exec sleep 30"], stdout=PIPE) as p:
        readable(p.stdout)
        try:
            p.communicate(timeout=0.2)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
        assert out == b"partial\n"
        assert p.returncode == -signal.SIGKILL


def test_communicate_deadline_covers_the_wait_too() -> None:
    # Output closes early, the process lingers: the wait counts against the
    # timeout (were it not, this would return after 30 s instead).
    with pidsafe.spawn(["sh", "-c", "exec >&- 2>&-; exec sleep 30"], stdout=PIPE,
                       stderr=PIPE) as p:
        with pytest.raises(subprocess.TimeoutExpired):
            p.communicate(timeout=0.3)
        p.kill()


# -- kill after reap never reaches a new process ------------------------------------

PID_REUSE = textwrap.dedent("""
    import os, signal
    import pidsafe
    from pidsafe import _sys
    assert os.getpid() == 1, os.getpid()

    def next_pid_will_be(pid):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))

    def untouched(p):
        # A signal that reached it would be handled before it runs again:
        # an echo through it proves it survived.
        p.stdin.write(b"alive\\n"); p.stdin.flush()
        assert p.stdout.readline() == b"alive\\n", "the new process was hit"
        assert p.poll() is None and p.is_alive()

    def victim_process():
        return pidsafe.spawn(["cat"], stdin=-1, stdout=-1)

    # 1. Reaped by the handle itself.
    old = pidsafe.spawn(["true"])
    assert old.wait() == 0
    next_pid_will_be(old.pid)
    new = victim_process()
    assert new.pid == old.pid, (new.pid, old.pid)
    old.kill(); old.terminate(); old.send_signal(signal.SIGUSR1)
    try:
        _sys.pidfd_send_signal(old.fileno(), signal.SIGKILL)  # the raw pidfd
    except ProcessLookupError:
        pass
    else:
        raise AssertionError("a reaped child's pidfd reached the new process")
    untouched(new)

    # 2. Reaped behind the handle's back: the handle must find out by itself.
    victim = pidsafe.spawn(["sleep", "30"])
    victim.kill()
    os.waitid(os.P_PID, victim.pid, os.WEXITED | _sys.WALL)   # the thief
    next_pid_will_be(victim.pid)
    again = victim_process()
    assert again.pid == victim.pid
    victim.kill(); victim.terminate()
    untouched(again)
    assert victim.poll() == -signal.SIGKILL

    # 3. An adopted process.
    adopted = pidsafe.Process.from_pid(again.pid)
    again.kill()
    assert again.wait() == -signal.SIGKILL
    next_pid_will_be(again.pid)
    third = victim_process()
    assert third.pid == adopted.pid
    adopted.kill()
    untouched(third)

    for p in (new, third):
        p.kill()
        assert p.wait() == -signal.SIGKILL
    for p in (old, new, victim, again, adopted, third):
        p.close()
    print("OK")
""")


@pytest.mark.root
def test_kill_after_reap_never_reaches_a_process_that_reuses_the_pid() -> None:
    # In a private pid namespace, where we decide the next pid (ns_last_pid)
    # without disturbing anything else on the machine.
    with pidsafe.spawn(["unshare", "--pid", "--fork", "--mount-proc", PY, "-c", PID_REUSE],
                       stdout=PIPE, stderr=PIPE) as p:
        out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (0, b"OK\n"), err.decode()


# -- asynchronous exceptions: wait() and communicate() under faults ---------------

def _close_stdin_once_blocked(p: pidsafe.Process, wait: Callable[[], Any]) -> Any:
    """``wait()``; ``p``'s stdin is closed only once this thread is blocked in
    the kernel (or the wait is over), so that a sweep covers the blocking
    path, not a race between the child's exit and our first call."""
    done = threading.Event()
    me = threading.get_native_id()

    def blocked() -> bool:
        with open(f"/proc/self/task/{me}/wchan") as f:
            where = f.read()
        return where == "do_wait" or where.startswith("poll_schedule_timeout")

    def release() -> None:
        while not done.is_set() and not blocked():
            done.wait(0.001)
        assert p.stdin is not None
        p.stdin.close()

    closer = threading.Thread(target=release)
    closer.start()
    try:
        return wait()
    finally:
        done.set()
        closer.join()


def _sweep(faults: Faults, make: Callable[[], pidsafe.Process],
           op: Callable[[pidsafe.Process], Any], finish: Callable[[pidsafe.Process], None]) -> int:
    """For every k: fail the k-th call of ``op`` (EIO), or land a Ctrl-C
    right before or after it.  Then ``finish`` must still get everything
    right (no status, input or output lost), and nothing may be left."""
    p = make()
    n = faults.count(lambda: op(p))
    finish(p)
    modes = [("fail", lambda k: faults.fail_at(k, errno.EIO)),
             ("interrupt", lambda k: faults.interrupt_at(k)),
             ("interrupt before", lambda k: faults.interrupt_at(k, before=True))]
    for mode, inject in modes:
        for k in range(1, n + 2):   # the count may differ a little run to run
            with leak_check(f"{mode} at call {k}"):
                p = make()
                with inject(k) as f:
                    try:
                        op(p)
                    except (OSError, Interrupt) as exc:
                        assert f.fired is not None, exc
                        assert (isinstance(exc, Interrupt) if mode != "fail"
                                else exc.errno == errno.EIO), (f.fired, exc)
                finish(p)
                settle_abandoned()
    return n


def test_wait_under_faults_never_loses_the_status(faults: Faults) -> None:
    def make() -> pidsafe.Process:
        # Exits once its stdin is closed: still running when the wait begins.
        return pidsafe.spawn(["sh", "-c", "read x; exit 5"], stdin=PIPE)

    def op(p: pidsafe.Process) -> None:
        _close_stdin_once_blocked(p, p.wait)

    def finish(p: pidsafe.Process) -> None:
        with p:
            assert p.wait() == 5

    # The blocking waitid(WNOWAIT) and the reaping waitid, at least.
    assert _sweep(faults, make, op, finish) >= 2


def test_timed_wait_under_faults_never_loses_the_status(faults: Faults) -> None:
    def make() -> pidsafe.Process:
        return pidsafe.spawn(["sh", "-c", "read x; exit 6"], stdin=PIPE)

    def op(p: pidsafe.Process) -> None:
        assert _close_stdin_once_blocked(p, lambda: p.wait(timeout=30)) == 6

    def finish(p: pidsafe.Process) -> None:
        with p:
            assert p.wait(timeout=30) == 6

    assert _sweep(faults, make, op, finish) >= 3


def test_communicate_under_faults_loses_no_byte(faults: Faults) -> None:
    data = bytes(range(256)) * 64    # several writes and reads

    def make() -> pidsafe.Process:
        return pidsafe.spawn(["sh", "-c", "cat; echo err >&2"], stdin=PIPE, stdout=PIPE,
                             stderr=PIPE)

    def op(p: pidsafe.Process) -> None:
        p.communicate(data, timeout=30)

    def finish(p: pidsafe.Process) -> None:
        with p:
            try:
                out = p.communicate(data, timeout=30)
            except ValueError:   # the interrupted call had taken the input
                out = p.communicate(timeout=30)
            assert out == (data, b"err\n") and p.returncode == 0

    assert _sweep(faults, make, op, finish) >= 6


def test_an_interrupted_blocking_wait_leaves_the_child_to_a_later_one(
        alarm: Any) -> None:
    # The exception lands while wait() sleeps in waitid(WNOWAIT): nothing has
    # been reaped, so the status is still there for the next wait().
    def handler(*a: Any) -> None:
        raise Boom()

    p = started_cat()
    with p:
        alarm(0.05, handler)
        with pytest.raises(Boom):
            p.wait()
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        assert p.returncode is None and state(p.pid) not in ("Z", "")
        assert p.stdin is not None
        p.stdin.close()
        assert p.wait() == 0


# -- threads and signal handlers --------------------------------------------------

def test_concurrent_spawns_with_dropped_handles() -> None:
    # Every spawn() reaps the handles dropped before it: from many threads at
    # once, each abandoned child is reaped (and its pidfd closed) exactly once.
    errors: List[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(40):
                p = pidsafe.spawn(["true"])
                del p           # dropped while (probably) running
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        threads = [threading.Thread(target=worker) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors, errors
    settle_abandoned()


SEND_FROM_HANDLER = textwrap.dedent("""
    import signal, sys
    import pidsafe
    from pidsafe import _sys

    p = pidsafe.spawn(["cat"], stdin=-1)
    sent = []

    def on_usr1(signum, frame):
        sent.append(signum)                # first: the patched lock signals once
        p.send_signal(signal.SIGTERM)      # the lock may be held right now
        p.poll()

    signal.signal(signal.SIGUSR1, on_usr1)
    # 1. The handler runs while wait() holds the process's lock: a signal
    #    lands right after wait() has taken it (to borrow the pidfd, on which
    #    it blocks once the lock is released).
    class SignallingLock:
        def __init__(self, real):
            self.real = real
        def __enter__(self):
            self.real.acquire()
            if not sent:
                signal.raise_signal(signal.SIGUSR1)   # the handler runs here, lock held
            return self
        def __exit__(self, *exc):
            self.real.release()
    real = p._lock
    p._lock = SignallingLock(real)
    assert p.wait() == -signal.SIGTERM, p.returncode
    assert sent
    p._lock = real
    # 2. ... and while code outside pidsafe's sections holds it.
    q = pidsafe.spawn(["cat"], stdin=-1)
    p, sent = q, []
    with q._lock:
        signal.raise_signal(signal.SIGUSR1)
    assert sent and q.wait() == -signal.SIGTERM
    print("OK")
""")


def test_send_signal_from_a_handler_does_not_deadlock_against_wait() -> None:
    # In a child Python: a deadlock there is a timeout here, not a hung suite.
    with pidsafe.spawn([PY, "-c", SEND_FROM_HANDLER], stdout=PIPE, stderr=PIPE) as p:
        try:
            out, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            pytest.fail("deadlock: send_signal() from a handler interrupting wait()")
    assert (p.returncode, out) == (0, b"OK\n"), err.decode()


# -- fork --------------------------------------------------------------------------

def _in_forked_child(body: Callable[[], str]) -> str:
    """Run ``body`` in a forked child; its result (or error) as text."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)   # fork with threads
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            out = body()
        except BaseException as exc:
            out = f"{type(exc).__name__}: {exc}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with pidsafe.Process.from_pid(pid) as child:
        with os.fdopen(r, "rb") as f:
            text = f.read().decode()
        assert child.wait() == 0
    return text


def test_after_fork_a_handle_refuses_use_and_closes_its_copy() -> None:
    with started_cat() as p:
        fd = p.fileno()

        def body() -> str:
            results = []
            for call in (p.poll, p.wait, p.kill, p.is_alive, p.fileno,
                         lambda: p.wait(timeout=1), lambda: p.communicate(timeout=1)):
                try:
                    call()
                except ValueError as exc:
                    results.append("fork()" in str(exc))
            p.close()   # works: closes this process's copy of the pidfd
            return f"{results} {os.path.exists(f'/proc/self/fd/{fd}')} {p.closed}"

        assert _in_forked_child(body) == f"{[True] * 7} False True"
        # The parent's handle is untouched.
        assert p.is_alive()
        assert p.communicate(timeout=10) == (b"", None) and p.returncode == 0


def test_after_fork_the_abandoned_registry_starts_empty_and_unlocked() -> None:
    p = started_cat()
    assert p.stdin is not None
    stdin = os.dup(p.stdin.fileno())
    p.close()                             # running: abandoned, pidfd kept
    (abandoned_fd,) = _abandoned.registry
    _abandoned._lock.acquire()    # as if another thread held it at fork()
    try:
        def body() -> str:
            before = (dict(_abandoned.registry), os.path.exists(f"/proc/self/fd/{abandoned_fd}"))
            q = pidsafe.spawn(["cat"], stdin=PIPE)
            q.close()                     # abandoned here: reaped once it exits
            settle_abandoned()            # (the lock the parent held is not held here)
            return f"{before} {dict(_abandoned.registry)}"

        assert _in_forked_child(body) == "({}, False) {}"
    finally:
        _abandoned._lock.release()
    os.close(stdin)
    settle_abandoned()


# -- lifecycle ---------------------------------------------------------------------

def test_with_from_pid_of_a_non_child_does_not_wait_for_it() -> None:
    with pidsafe.spawn(["sh", "-c", "sleep 60 & echo $!; wait"], stdout=PIPE) as sh:
        assert sh.stdout is not None
        grand_pid = int(sh.stdout.readline())
        with pidsafe.Process.from_pid(grand_pid):
            pass
        assert state(grand_pid) not in ("Z", "")   # left alone, not waited for
        with pidsafe.Process.from_pid(grand_pid) as grand:
            grand.kill()
            assert grand.wait(timeout=30) == -signal.SIGKILL
        assert sh.wait(timeout=30) == 0


@pytest.mark.parametrize("timeout", [2**31 / 1000, 2**40, float("inf")])
def test_wait_takes_timeouts_too_long_for_poll(timeout: float) -> None:
    p = started_cat()
    with p:
        assert p.stdin is not None
        p.stdin.close()
        assert p.wait(timeout=timeout) == 0
    # ... also while the process still runs, and from another thread.
    p = started_cat()
    with p:
        result: List[int] = []
        t = threading.Thread(target=lambda: result.append(p.wait(timeout=timeout)))
        t.start()
        assert p.stdin is not None
        p.stdin.close()
        t.join()
        assert result == [0]


def test_an_error_while_reaping_a_failed_exec_still_raises_the_exec_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = _sys.waitid_pidfd

    def failing(fd: int, options: int) -> Any:
        if not options & _sys.WNOHANG:
            raise _sys.make_oserror(errno.EIO, "waitid(P_PIDFD)")
        return real(fd, options)

    monkeypatch.setattr(_sys, "waitid_pidfd", failing)
    fds = open_fds()
    with pytest.raises(FileNotFoundError) as info:
        pidsafe.spawn(["pidsafe-no-such-program"])
    assert info.value.filename == "pidsafe-no-such-program"
    # The child it could not reap is left to the next spawn(), never leaked.
    assert len(_abandoned.registry) == 1 and set(open_fds()) - set(fds) == set(_abandoned.registry)
    monkeypatch.setattr(_sys, "waitid_pidfd", real)
    settle_abandoned()
    assert open_fds() == fds


def test_release_leaves_the_exit_status_to_whoever_reaps() -> None:
    """A runtime CLI's detached process: its status is for the shim, never for us."""
    import select

    p = pidsafe.spawn(["true"])
    pid = p.pid
    assert select.select([p.fileno()], [], [], 10)[0]   # exited, not reaped
    p.release()
    assert p.closed
    res = os.waitid(os.P_PID, pid, os.WEXITED)   # still our zombie
    assert res is not None and (res.si_code, res.si_status) == (os.CLD_EXITED, 0)
    q = pidsafe.spawn(["sleep", "1000"])
    pid = q.pid
    q.release()
    with pidsafe.spawn(["true"]) as r:   # reap_abandoned(): not this one
        r.wait()
    os.kill(pid, signal.SIGKILL)     # our unreaped child: the pid is still it
    res = os.waitid(os.P_PID, pid, os.WEXITED)
    assert res is not None and (res.si_code, res.si_status) == (os.CLD_KILLED, signal.SIGKILL)


def test_the_reapers_lease_is_not_part_of_process() -> None:
    """A reaper holds a PidfdLease on a Process; Process itself has no
    lease methods, and no mixin brings its host's fields along."""
    names = {n for n in dir(pidsafe.Process)
             if "lease" in n.replace("release", "")}
    assert names == set()
    assert [c.__name__ for c in pidsafe.Process.__mro__] == ["Process", "Closable", "Owned",
                                                             "object"]
