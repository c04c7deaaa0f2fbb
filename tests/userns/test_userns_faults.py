"""Fault sweeps for get_userns_fd.

For every k, the k-th call get_userns_fd makes into the native layer or a
resource-making os function either fails with an errno or is followed (or
preceded) by a SIGINT whose handler raises.  After each: the typed error,
and nothing left behind: no fd, no helper child (running or zombie), and
every helper stack given back (csrc/native/userns.c zeroes a handle's map_addr
once its stack is unmapped or back in its thread's cache).
"""

from __future__ import annotations

import errno
from typing import Any, Callable, Iterator, List

import pytest

import pidsafe
from pidsafe import _sys
from conftest import leak_check
from faults import Faults, Interrupt, interrupt_randomly

MAP = "0:100000:65536"

pytestmark = pytest.mark.root


@pytest.fixture
def helper_handles(monkeypatch: pytest.MonkeyPatch) -> Iterator[List[Any]]:
    """Every helper handle _sys.userns_helper_start hands out during the test."""
    handles: List[Any] = []
    real = _sys.userns_helper_start

    def start(*args: Any) -> Any:
        h = real(*args)
        handles.append(h)
        return h

    monkeypatch.setattr(_sys, "userns_helper_start", start)
    yield handles


def assert_stacks_freed(handles: List[Any], what: str) -> None:
    busy = [int(h.pid) for h in handles if int(h.map_addr) != 0]
    assert not busy, f"{what}: the stacks of helpers {busy} were never given back"


def get_and_close() -> None:
    pidsafe.get_userns_fd(MAP, MAP).close()


def _cleanup_call(faults: Faults, k: int) -> bool:
    """Whether the k-th call is one of the helper's cleanup steps (kill,
    reap, free), which are retried and so may not fail the operation."""
    name = faults.calls[k - 1] if k <= len(faults.calls) else ""
    sig = name == "pidsafe_pidfd_send_signal" and k > faults.calls.index(name) + 1
    return sig or name in ("pidsafe_waitid_pidfd", "pidsafe_userns_helper_free")


@pytest.mark.parametrize("err", [errno.EMFILE, errno.EIO])
def test_get_userns_fd_fails_at_every_call(faults: Faults, err: int,
                                           helper_handles: List[Any]) -> None:
    n = faults.count(get_and_close)
    names = list(faults.calls)
    assert n >= 10, names  # clone3, 4 opens, proof, 3 writes, kill, reap, free
    for k in range(1, n + 1):
        with leak_check(f"fail_at({k}) [{names[k - 1]}]", check_mounts=False):
            try:
                with faults.fail_at(k, err):
                    fd = pidsafe.get_userns_fd(MAP, MAP)
            except OSError as exc:
                assert exc.errno == err, f"k={k} [{names[k - 1]}]: {exc!r}"
                assert not isinstance(exc, pidsafe.HelperDiedError)
            else:
                fd.close()
                assert _cleanup_call(faults, k), f"k={k} [{names[k - 1]}] did not fail"
        assert_stacks_freed(helper_handles, f"fail_at({k})")


def _interrupted_at_every_call(faults: Faults, before: bool, helper_handles: List[Any],
                               op: Callable[[], None]) -> None:
    n = faults.count(op)
    names = list(faults.calls)
    for k in range(1, n + 1):
        what = f"interrupt_at({k}, before={before}) [{names[k - 1]}]"
        with leak_check(what, check_mounts=False):
            with faults.interrupt_at(k, before=before), pytest.raises(Interrupt):
                op()
        assert_stacks_freed(helper_handles, f"interrupt_at({k})")
    # and the thread's helper stack still works
    op()
    assert_stacks_freed(helper_handles, "after the sweep")


@pytest.mark.parametrize("before", [False, True])
def test_get_userns_fd_interrupted_at_every_call(faults: Faults, before: bool,
                                                 helper_handles: List[Any]) -> None:
    _interrupted_at_every_call(faults, before, helper_handles, get_and_close)


def test_spawn_uidmap_interrupted_at_every_map_step(faults: Faults) -> None:
    """The same map writer serves spawn(uidmap=): interrupts during it leak
    nothing either (spawn's own steps are swept by the process tests)."""
    def op() -> None:
        with pidsafe.spawn(["true"], uidmap=MAP, gidmap=MAP) as p:
            p.wait()

    n = faults.count(op)
    names = list(faults.calls)
    steps = [k for k in range(1, n + 1) if names[k - 1] in ("os.open", "os.write")][:7]
    assert steps, names
    for k in steps:
        with leak_check(f"interrupt_at({k}) [{names[k - 1]}]", check_mounts=False):
            with faults.interrupt_at(k), pytest.raises(Interrupt):
                op()


def test_get_userns_fd_and_cache_under_random_interrupts(helper_handles: List[Any]) -> None:
    """A handler raising at random points over many rounds
    leaves no fd, no helper and no stack behind."""
    def op() -> None:
        with pidsafe.get_userns_fd(MAP, MAP):
            pass

    with leak_check("get_userns_fd under random interrupts", check_mounts=False):
        hits = interrupt_randomly(op, 300)
    assert_stacks_freed(helper_handles, "random interrupts")
    with leak_check("UsernsCache under random interrupts", check_mounts=False):
        with pidsafe.UsernsCache(maxsize=2) as cache:
            maps = [f"0:{100000 + i * 1000}:1000" for i in range(3)]
            n = [0]

            def cached() -> None:
                n[0] += 1
                m = maps[n[0] % 3]
                with cache.get(m, m):
                    pass

            hits += interrupt_randomly(cached, 300)
            for fd in list(cache._fds.values()):
                assert not fd.closed
    assert hits > 0   # (a machine too fast for a 0.1 ms CPU timer would say so)


def make_and_close() -> None:
    """make_userns as a container's create uses it: other work, then close."""
    from pidsafe._sigsafe import critical
    from pidsafe.userns import make_userns

    # Owned from its return on (make_userns hands it out): the assignment
    # and the try make no call, so no handler runs between them.
    made = make_userns(MAP, MAP, setgroups="allow")
    try:
        get_and_close()   # meanwhile: the first helper's stack is still busy
    finally:
        with critical:
            made.close()


def test_make_userns_fails_at_every_call(faults: Faults, helper_handles: List[Any]) -> None:
    n = faults.count(make_and_close)
    names = list(faults.calls)
    assert n >= 20, names
    for k in range(1, n + 1):
        with leak_check(f"fail_at({k}) [{names[k - 1]}]", check_mounts=False):
            try:
                with faults.fail_at(k, errno.EIO):
                    make_and_close()
            except OSError as exc:
                assert exc.errno == errno.EIO, f"k={k} [{names[k - 1]}]: {exc!r}"
            else:
                assert _cleanup_call(faults, k), f"k={k} [{names[k - 1]}] did not fail"
        assert_stacks_freed(helper_handles, f"fail_at({k})")


@pytest.mark.parametrize("before", [False, True])
def test_make_userns_interrupted_at_every_call(faults: Faults, before: bool,
                                               helper_handles: List[Any]) -> None:
    _interrupted_at_every_call(faults, before, helper_handles, make_and_close)
