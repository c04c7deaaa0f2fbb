"""OwnedFd: the one way pidsafe hands out a file descriptor."""

from __future__ import annotations

import fcntl
import gc
import os
import threading
from typing import Any, List

import pytest

from pidsafe import OwnedFd


def is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


@pytest.fixture
def pipe_fds() -> Any:
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        if is_open(fd):
            os.close(fd)


def test_fileno_closed_and_close(pipe_fds: Any) -> None:
    r, _ = pipe_fds
    owned = OwnedFd(r, "test pipe")
    assert owned.fileno() == r and not owned.closed
    owned.close()
    assert owned.closed and not is_open(r)
    owned.close()  # idempotent: must not close a reused number
    with pytest.raises(ValueError, match="test pipe is closed"):
        owned.fileno()


def test_close_does_not_touch_a_reused_number(pipe_fds: Any) -> None:
    r, _ = pipe_fds
    owned = OwnedFd(r)
    owned.close()
    reused = os.dup2(pipe_fds[1], r)  # someone else gets the number now
    try:
        owned.close()
        assert is_open(reused)
    finally:
        os.close(reused)


def test_detach_hands_over_ownership(pipe_fds: Any) -> None:
    r, _ = pipe_fds
    owned = OwnedFd(r)
    assert owned.detach() == r
    assert owned.closed and is_open(r)
    owned.close()
    assert is_open(r)
    with pytest.raises(ValueError):
        owned.detach()
    del owned
    gc.collect()  # no ResourceWarning: it owns nothing
    assert is_open(r)


def test_dup_is_a_new_cloexec_owner_of_the_same_file(pipe_fds: Any) -> None:
    r, w = pipe_fds
    os.set_inheritable(w, True)
    with OwnedFd(w, "writer") as owned, owned.dup() as copy:
        assert copy.fileno() != w
        assert os.get_inheritable(copy.fileno()) is False
        assert os.fstat(copy.fileno()).st_ino == os.fstat(w).st_ino
        os.write(copy.fileno(), b"x")
        assert os.read(r, 1) == b"x"
        assert "writer" in repr(copy)
    assert not is_open(w)
    owned.close()
    with pytest.raises(ValueError):
        owned.dup()


def test_context_manager_closes(pipe_fds: Any) -> None:
    r, _ = pipe_fds
    with OwnedFd(r) as owned:
        assert owned.fileno() == r
    assert owned.closed and not is_open(r)


def test_repr(pipe_fds: Any) -> None:
    owned = OwnedFd(pipe_fds[0], "pidfd")
    assert repr(owned) == f"<OwnedFd pidfd fd={pipe_fds[0]}>"
    owned.close()
    assert repr(owned) == "<OwnedFd pidfd closed>"


def test_dropping_an_open_owner_closes_and_warns(pipe_fds: Any) -> None:
    r, _ = pipe_fds
    owned = OwnedFd(r, "dropped thing")
    with pytest.warns(ResourceWarning, match=f"unclosed dropped thing \\(fd {r}\\)"):
        del owned
        gc.collect()
    assert not is_open(r)


@pytest.mark.parametrize("bad", [-1, True, "3", 3.0, None])
def test_rejects_what_is_not_an_fd(bad: Any) -> None:
    with pytest.raises(ValueError, match="non-negative int"):
        OwnedFd(bad)


def test_concurrent_close_closes_exactly_once() -> None:
    owners = [OwnedFd(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)) for _ in range(200)]
    errors: List[BaseException] = []
    start = threading.Barrier(8)

    def closer() -> None:
        start.wait()
        for o in owners:
            try:
                o.close()
            except BaseException as exc:  # EBADF if closed twice
                errors.append(exc)

    threads = [threading.Thread(target=closer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and all(o.closed for o in owners)


def test_a_handler_raising_inside_close_cannot_leave_the_fd_open() -> None:
    """close() forgot the number, then a handler raised (at the lock's
    release) before os.close: an open fd that nothing owned."""
    import signal

    class Boom(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Boom()

    class SignallingLock:
        def __enter__(self) -> None:
            pass

        def __exit__(self, *exc: object) -> None:
            signal.raise_signal(signal.SIGUSR1)

    r, w = os.pipe2(os.O_CLOEXEC)
    os.close(w)
    fd = OwnedFd(r, "pipe")
    fd._lock = SignallingLock()  # type: ignore[assignment]
    old = signal.signal(signal.SIGUSR1, handler)
    try:
        with pytest.raises(Boom):
            fd.close()
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert fd.closed
    with pytest.raises(OSError):
        os.fstat(r)   # closed for real (the no_leaks fixture also checks)
