"""pidsafe.create_subprocess_exec(): asyncio.subprocess's API on a pidfd, without threads."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Awaitable, Callable, List, Tuple, TypeVar

import pytest

import pidsafe

from conftest import (assert_nothing_left, children, leak_check, open_fds, settle_abandoned,
                      state, wait_until)
from faults import Faults

PIPE = subprocess.PIPE
PY = sys.executable
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_communicate_like_asyncio() -> None:
    script = "import sys; d = sys.stdin.buffer.read(); sys.stdout.buffer.write(d); " \
             "sys.stderr.buffer.write(d.upper()); sys.exit(3)"
    data = b"some input\n" * 10000   # more than a pipe holds, both ways

    async def main() -> Tuple[Any, Any]:
        out = []
        for create in (asyncio.create_subprocess_exec, pidsafe.create_subprocess_exec):
            p = await create(PY, "-c", script, stdin=PIPE, stdout=PIPE, stderr=PIPE)
            assert isinstance(p.stdin, asyncio.StreamWriter)
            assert isinstance(p.stdout, asyncio.StreamReader)
            assert isinstance(p.stderr, asyncio.StreamReader)
            res = await p.communicate(data)
            out.append((res, p.returncode, await p.wait()))
        return out[0], out[1]

    want, got = run(main())
    assert got == want
    assert got[0] == (data, data.upper()) and got[1] == 3


def test_streams_line_by_line() -> None:
    async def main() -> None:
        p = await pidsafe.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        assert p.stdin is not None and p.stdout is not None
        assert p.returncode is None and p.pid > 0
        for i in range(3):
            p.stdin.write(b"line %d\n" % i)
            await p.stdin.drain()
            assert await p.stdout.readline() == b"line %d\n" % i
        p.stdin.close()
        await p.stdin.wait_closed()
        assert await p.stdout.read() == b""
        assert await p.wait() == 0
        assert p.returncode == 0

    with leak_check("a cat driven line by line", check_mounts=False):
        run(main())


def test_no_pipes_devnull_and_stdout_into_stdout() -> None:
    async def main() -> None:
        p = await pidsafe.create_subprocess_exec("sh", "-c", "echo out; echo err >&2; exit 4",
                                                 stdout=PIPE, stderr=subprocess.STDOUT)
        assert p.stderr is None and p.stdin is None
        assert await p.communicate() == (b"out\nerr\n", None)
        assert p.returncode == 4
        p = await pidsafe.create_subprocess_exec("true", stdout=subprocess.DEVNULL)
        assert await p.communicate() == (None, None)

    run(main())


def test_signals_go_through_the_pidfd_and_fail_once_it_exited() -> None:
    async def main() -> None:
        for send, code in ((lambda p: p.terminate(), -signal.SIGTERM),
                           (lambda p: p.kill(), -signal.SIGKILL),
                           (lambda p: p.send_signal(signal.SIGUSR1), -signal.SIGUSR1)):
            p = await pidsafe.create_subprocess_exec("sleep", "60")
            send(p)
            assert await p.wait() == code
            for late in (p.kill, p.terminate, lambda: p.send_signal(signal.SIGTERM)):
                with pytest.raises(ProcessLookupError):
                    late()

    run(main())


def test_the_exit_is_watched_through_the_pidfd_with_add_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    seen: List[str] = []
    real = asyncio.SelectorEventLoop.add_reader

    def add_reader(self: Any, fd: Any, *args: Any) -> Any:
        seen.append(os.readlink(f"/proc/self/fd/{fd if isinstance(fd, int) else fd.fileno()}"))
        return real(self, fd, *args)

    monkeypatch.setattr(asyncio.SelectorEventLoop, "add_reader", add_reader)
    threads = threading.active_count()
    sigchld = signal.getsignal(signal.SIGCHLD)

    async def main() -> int:
        p = await pidsafe.create_subprocess_exec("sh", "-c", "read x; exit 9", stdin=PIPE)
        assert p.stdin is not None
        while "anon_inode:[pidfd]" not in seen:   # the watcher's first step
            await asyncio.sleep(0.001)
        assert threading.active_count() == threads   # no watcher thread
        p.stdin.close()
        return await p.wait()

    assert run(main()) == 9
    assert signal.getsignal(signal.SIGCHLD) == sigchld   # no SIGCHLD handler either


def test_wait_returns_at_exit_even_if_a_grandchild_holds_the_pipe() -> None:
    """Unlike asyncio 3.11: the exit is the process's, not its pipes'."""
    async def main() -> None:
        p = await pidsafe.create_subprocess_exec(
            "sh", "-c", "sleep 60 & echo $!; exit 5", stdout=PIPE)
        assert p.stdout is not None
        grandchild = int(await p.stdout.readline())
        try:
            assert await asyncio.wait_for(p.wait(), 30) == 5
        finally:
            os.kill(grandchild, signal.SIGKILL)   # not ours: an orphan of the shell
        assert await p.stdout.read() == b""

    run(main())


def test_a_cancelled_wait_leaves_the_child_running_and_owned() -> None:
    async def main() -> None:
        p = await pidsafe.create_subprocess_exec("sleep", "60")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(p.wait(), 0.1)
        assert p.returncode is None and state(p.pid) not in ("", "Z")
        p.kill()
        assert await p.wait() == -signal.SIGKILL

    run(main())


def test_a_cancelled_communicate_loses_no_byte(tmp_path: Any) -> None:
    gate = tmp_path / "gate"
    script = f"echo first; echo e1 >&2; while [ ! -e {gate} ]; do sleep 0.01; done; " \
             "cat; echo second; echo e2 >&2"

    async def main() -> None:
        p = await pidsafe.create_subprocess_exec("sh", "-c", script, stdin=PIPE,
                                                 stdout=PIPE, stderr=PIPE)
        assert p.stdout is not None
        task = asyncio.ensure_future(p.communicate(b"input\n"))
        while not p._output[1] or not p._output[2]:   # read 'first' and 'e1'
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert p.returncode is None
        with pytest.raises(ValueError, match="after starting"):
            await p.communicate(b"again")
        gate.touch()
        assert await p.communicate() == (b"first\ninput\nsecond\n", b"e1\ne2\n")
        assert p.returncode == 0

    with leak_check("a cancelled communicate", check_mounts=False):
        run(main())


def test_in_a_loop_of_another_thread() -> None:
    results: List[Any] = []

    async def main() -> None:
        p = await pidsafe.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        results.append(await p.communicate(b"from a thread"))
        results.append(p.returncode)

    t = threading.Thread(target=lambda: asyncio.run(main()))
    t.start()
    t.join(60)
    assert results == [(b"from a thread", None), 0]


def test_many_at_once() -> None:
    async def one(i: int) -> Tuple[bytes, int]:
        p = await pidsafe.create_subprocess_exec("sh", "-c", f"echo {i}; exit {i % 7}",
                                                 stdout=PIPE)
        out, _ = await p.communicate()
        return out, await p.wait()

    async def main() -> List[Tuple[bytes, int]]:
        return await asyncio.gather(*(one(i) for i in range(30)))

    assert run(main()) == [(b"%d\n" % i, i % 7) for i in range(30)]


def test_shell() -> None:
    async def main() -> Any:
        p = await pidsafe.create_subprocess_shell("echo $((6 * 7)); exit 2", stdout=PIPE)
        return await p.communicate(), p.returncode

    assert run(main()) == ((b"42\n", None), 2)
    with pytest.raises(TypeError):
        run(pidsafe.create_subprocess_shell(["echo"]))  # type: ignore[arg-type]


@pytest.mark.parametrize("kw", [{"text": True}, {"universal_newlines": True},
                                {"encoding": "utf-8"}, {"errors": "strict"},
                                {"bufsize": 1}])
def test_text_mode_is_refused_like_asyncio(kw: Any) -> None:
    kids = children()

    async def main(create: Callable[..., Any]) -> str:
        with pytest.raises(ValueError) as info:
            await create("true", stdout=PIPE, **kw)
        return str(info.value)

    assert run(main(pidsafe.create_subprocess_exec)) == run(
        main(asyncio.create_subprocess_exec))
    assert children() == kids


def test_spawn_errors_leave_nothing() -> None:
    fds, kids = open_fds(), children()

    async def main() -> None:
        with pytest.raises(FileNotFoundError):
            await pidsafe.create_subprocess_exec("/nonexistent", stdin=PIPE, stdout=PIPE)

    run(main())
    assert_nothing_left(fds, kids)


@pytest.mark.parametrize("where", ["connect_read_pipe", "connect_write_pipe"])
def test_a_failing_pipe_connection_kills_and_reaps_the_child(
        monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    fds, kids = open_fds(), children()
    calls = []

    async def fail(*a: Any, **k: Any) -> Any:
        calls.append(where)
        raise OSError(errno.EMFILE, "injected")

    monkeypatch.setattr(asyncio.SelectorEventLoop, where, fail)

    async def main() -> None:
        with pytest.raises(OSError, match="injected"):
            await pidsafe.create_subprocess_exec("sleep", "60", stdin=PIPE, stdout=PIPE,
                                                 stderr=PIPE)

    run(main())
    assert calls == [where]
    assert_nothing_left(fds, kids)


def test_a_cancelled_creation_kills_and_reaps_the_child() -> None:
    fds, kids = open_fds(), children()

    async def main() -> None:
        task = asyncio.ensure_future(pidsafe.create_subprocess_exec(
            "sleep", "60", stdin=PIPE, stdout=PIPE, stderr=PIPE))
        await asyncio.sleep(0)    # spawned; now connecting its pipes
        assert children() != kids
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert_nothing_left(fds, kids)


def test_creation_under_faults_leaves_nothing(faults: Faults) -> None:
    async def create() -> pidsafe.AsyncProcess:
        return await pidsafe.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE,
                                                    stderr=PIPE)

    async def finish(p: pidsafe.AsyncProcess) -> None:
        assert await p.communicate(b"x") == (b"x", b"")

    async def once(k: int) -> bool:
        with faults.fail_at(k, errno.EIO) as f:
            try:
                p = await create()
            except OSError as exc:
                assert f.fired is not None and exc.errno == errno.EIO, (f.fired, exc)
                return True
        await finish(p)
        return False

    async def count() -> int:
        with faults.fail_at(10**6) as f:    # counts, fails nothing
            p = await create()
            n = len(f.calls)
        await finish(p)
        return n

    n = run(count())
    assert n >= 4   # three pipes and the clone, at least
    failed = 0
    for k in range(1, n + 2):
        with leak_check(f"fail at call {k}", check_mounts=False):
            failed += run(once(k))
    assert failed >= n - 1


def test_a_process_outliving_its_loop_is_still_owned() -> None:
    """The loop ends first: the watcher is cancelled; kill() still works, and
    the dropped handle is reaped later, as a dropped Process is."""
    async def main() -> pidsafe.AsyncProcess:
        return await pidsafe.create_subprocess_exec("sleep", "60")

    p = run(main())
    pid = p.pid
    assert state(pid) not in ("", "Z") and p.returncode is None
    p.kill()
    with pytest.warns(ResourceWarning, match="still running|unclosed"):
        del p
        gc.collect()
    settle_abandoned()
    assert state(pid) == ""
    # Or: returncode, read once it has exited, reaps and lets the pidfd go.
    p = run(main())
    p.kill()
    wait_until(lambda: p.returncode is not None, "the killed child's status")
    assert p.returncode == -signal.SIGKILL and p._process.closed
    del p
    gc.collect()   # no warning: nothing left to release
