"""UsernsCache under faults, signal handlers and fork().

UsernsCache has get(), clear() and close(); eviction happens in get().
clear()/close() only close fds (os.close is not a counted call), so their
part of the sweep is the cache's state after every faulted get(): each
entry still open, owned once, and closed exactly once by close().
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import warnings
from typing import List

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults, Interrupt

MAP = "0:100000:65536"
OTHER = "0:200000:65536"

pytestmark = pytest.mark.root


def assert_consistent(cache: pidsafe.UsernsCache, what: str) -> None:
    fds: List[pidsafe.OwnedFd] = list(cache._fds.values())
    assert len(fds) <= cache.maxsize, what
    for fd in fds:
        os.fstat(fd.fileno())  # open, and ours
    assert not cache._lock.locked(), what


def miss_with_eviction(cache: pidsafe.UsernsCache) -> None:
    """A miss in a full cache of one: makes a namespace, evicts OTHER."""
    cache.get(MAP, MAP).close()


def fill(cache: pidsafe.UsernsCache) -> None:
    """Only OTHER cached.  Call inside leak_check, which sees an empty cache
    before and after (every round ends with clear())."""
    cache.clear()
    cache.get(OTHER, OTHER).close()


@pytest.mark.parametrize("err", [errno.EMFILE, errno.EIO])
def test_get_miss_and_eviction_fail_at_every_call(faults: Faults, err: int) -> None:
    with pidsafe.UsernsCache(maxsize=1) as cache:
        fill(cache)
        n = faults.count(lambda: miss_with_eviction(cache))
        names = list(faults.calls)
        cache.clear()
        for k in range(1, n + 1):
            what = f"fail_at({k}) [{names[k - 1]}]"
            with leak_check(what, check_mounts=False):
                fill(cache)
                try:
                    with faults.fail_at(k, err):
                        fd = cache.get(MAP, MAP)
                except OSError as exc:
                    assert exc.errno == err, f"{what}: {exc!r}"
                else:
                    fd.close()   # a retried cleanup step of the helper
                assert_consistent(cache, what)
                with cache.get(MAP, MAP):   # the cache still works
                    pass
                cache.clear()


@pytest.mark.parametrize("before", [False, True])
def test_get_miss_and_eviction_interrupted_at_every_call(faults: Faults, before: bool) -> None:
    with pidsafe.UsernsCache(maxsize=1) as cache:
        fill(cache)
        n = faults.count(lambda: miss_with_eviction(cache))
        names = list(faults.calls)
        cache.clear()
        for k in range(1, n + 1):
            what = f"interrupt_at({k}, before={before}) [{names[k - 1]}]"
            with leak_check(what, check_mounts=False):
                fill(cache)
                with faults.interrupt_at(k, before=before), pytest.raises(Interrupt):
                    miss_with_eviction(cache)
                assert_consistent(cache, what)
                with cache.get(MAP, MAP):
                    pass
                cache.clear()


def test_get_hit_fails_or_is_interrupted_at_its_dup(faults: Faults) -> None:
    with pidsafe.UsernsCache() as cache:
        cache.get(MAP, MAP).close()
        assert faults.count(lambda: cache.get(MAP, MAP).close()) == 1  # the dup
        with leak_check("hit: fail_at(1)", check_mounts=False):
            with faults.fail_at(1, errno.EMFILE), pytest.raises(OSError) as ei:
                cache.get(MAP, MAP)
            assert ei.value.errno == errno.EMFILE
        for before in (False, True):
            with leak_check(f"hit: interrupt_at(1, before={before})", check_mounts=False):
                with faults.interrupt_at(1, before=before), pytest.raises(Interrupt):
                    cache.get(MAP, MAP).close()
        assert_consistent(cache, "after the hits")
        assert len(cache) == 1


def test_cache_works_in_a_forked_child_while_a_thread_holds_its_lock() -> None:
    """A lock another thread held at fork() time must not stay
    held for ever in the child."""
    cache = pidsafe.UsernsCache()
    try:
        cache.get(MAP, MAP).close()
        held, release = threading.Event(), threading.Event()

        def holder() -> None:
            with cache._lock:
                held.set()
                release.wait()

        t = threading.Thread(target=holder)
        t.start()
        held.wait()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
                pid = os.fork()
            if pid == 0:  # pragma: no cover - the child reports through its status
                code = 1
                try:
                    # A hang dies of SIGALRM: a failure, never a stuck suite.
                    signal.signal(signal.SIGALRM, signal.SIG_DFL)
                    signal.alarm(30)
                    with cache.get(MAP, MAP):        # a hit: the inherited fd
                        pass
                    with cache.get(OTHER, OTHER):    # a miss: a new namespace here
                        pass
                    code = 0 if len(cache) == 2 else 2
                    cache.close()
                finally:
                    os._exit(code)
        finally:
            release.set()
            t.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(cache) == 1  # the parent's cache is untouched
    finally:
        cache.close()


def test_a_signal_handler_may_use_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """A signal arriving while get() holds the lock: its handler runs only
    after the lock is released, so a handler calling get() cannot deadlock
    against the get() it interrupted (a plain Lock is not re-entrant)."""
    seen: List[str] = []
    signalled: List[bool] = []
    with pidsafe.UsernsCache() as cache:
        def handler(signum: int, frame: object) -> None:
            if cache._lock.locked():
                seen.append("ran with the lock held: get() would deadlock")
                return
            with cache.get(MAP, MAP):
                seen.append("handler got it")

        real_dup = cache._dup

        def dup_with_a_signal(key: object) -> object:
            if not signalled:
                signalled.append(True)
                signal.raise_signal(signal.SIGUSR1)   # the lock is held here
            return real_dup(key)  # type: ignore[arg-type]

        old = signal.signal(signal.SIGUSR1, handler)
        try:
            monkeypatch.setattr(cache, "_dup", dup_with_a_signal)
            with cache.get(MAP, MAP):
                pass
            monkeypatch.undo()
        finally:
            signal.signal(signal.SIGUSR1, old)
    assert seen and all(s == "handler got it" for s in seen), seen
