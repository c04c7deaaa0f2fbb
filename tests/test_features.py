"""pidsafe.features(): runtime probes, their reasons, and UnsupportedError."""

from __future__ import annotations

import dataclasses
import errno
import os
import threading
import warnings
from typing import Any, Callable, Dict, List

import pytest

import pidsafe
from pidsafe import _features, _sys

ISSUE_FEATURES = ("clone3", "clone_pidfd", "waitid_pidfd", "pidfd_getfd", "close_range",
                  "mount_api", "mount_setattr_idmap", "openat2")


def test_everything_is_supported_here() -> None:
    # The development and CI machines: root on Linux 6.18.
    f = pidsafe.features()
    assert f.missing() == [], f.reasons
    assert all(getattr(f, n) is True for n in f.names())
    assert f.reasons == {}
    f.require(*f.names())


def test_features_are_probed_once_and_frozen() -> None:
    f = pidsafe.features()
    assert pidsafe.features() is f
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.clone3 = False  # type: ignore[misc]
    assert set(ISSUE_FEATURES) <= set(f.names())
    assert set(f.names()) == set(_features.FEATURES)
    assert set(_features.REQUIRED) <= set(f.names())
    assert "reasons" not in f.names()


def test_concurrent_first_calls_probe_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_features, "_cached", None)
    calls: List[int] = []
    real_probe = _features._probe

    def counting_probe() -> Any:
        calls.append(1)
        return real_probe()

    monkeypatch.setattr(_features, "_probe", counting_probe)
    results: List[Any] = []
    start = threading.Barrier(6)

    def call() -> None:
        start.wait()
        results.append(pidsafe.features())

    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and all(r is results[0] for r in results)


def test_require_raises_unsupported_error_naming_the_feature() -> None:
    f = dataclasses.replace(pidsafe.features(), openat2=False, close_range=False,
                            reasons={"openat2": "ENOSYS"})
    assert f.missing() == ["close_range", "openat2"]
    with pytest.raises(pidsafe.UnsupportedError) as info:
        f.require("clone3", "openat2", "close_range")
    exc = info.value
    assert isinstance(exc, OSError) and exc.errno == errno.ENOSYS
    assert exc.feature == "openat2"
    assert "openat2(2) with RESOLVE_IN_ROOT (Linux 5.6)" in str(exc)
    assert "ENOSYS" in str(exc)


def test_unsupported_error() -> None:
    exc = pidsafe.UnsupportedError("pidfd_getfd", "needed to copy fds", errno.EPERM)
    assert isinstance(exc, OSError) and exc.errno == errno.EPERM
    assert exc.feature == "pidfd_getfd"
    assert str(exc) == ("[Errno 1] unsupported: pidfd_getfd(2) (Linux 5.6) "
                        "(needed to copy fds)")
    odd = pidsafe.UnsupportedError("time_travel")
    assert odd.feature == "time_travel" and "time_travel" in str(odd)


# -- the probe logic, with syscalls made to fail -------------------------------------

def failing(err: int) -> Callable[..., Any]:
    def call(*a: Any, **kw: Any) -> Any:
        raise _sys.make_oserror(err, "simulated")
    return call


@pytest.mark.parametrize("patches,expect", [
    ({"pidfd_getfd": failing(errno.ENOSYS)}, {"pidfd_getfd": "ENOSYS"}),
    ({"close_range": failing(errno.ENOSYS)}, {"close_range": "ENOSYS"}),
    ({"open_tree": failing(errno.ENOSYS)}, {"mount_api": "ENOSYS"}),
    ({"mount_setattr": failing(errno.EINVAL)}, {"mount_setattr_idmap": "EINVAL"}),
    ({"mount_setattr": failing(errno.ENOSYS)}, {"mount_setattr_idmap": "ENOSYS"}),
    # Unprivileged: the syscall stops at its privilege check, so it exists
    # (and MOUNT_ATTR_IDMAP came with it): supported, not missing.
    ({"mount_setattr": failing(errno.EPERM)}, {}),
    ({"openat2": failing(errno.ENOSYS)}, {"openat2": "ENOSYS"}),
    ({"pidfd_exit_info": failing(errno.ENOTTY)}, {"pidfd_info_exit": "ENOTTY"}),
    ({"pidfd_open": failing(errno.ENOSYS)},
     {"pidfd_open": "ENOSYS", "pidfd_send_signal": "needs pidfd_open"}),
    ({"pidfd_send_signal": failing(errno.ENOSYS)}, {"pidfd_send_signal": "ENOSYS"}),
    # clone3 exists but rejects CLONE_PIDFD: no child, nothing to wait for.
    ({"probe_child": failing(errno.EINVAL)},
     {"clone_pidfd": "EINVAL", "waitid_pidfd": "no probe child",
      "pidfd_info_exit": "no probe child"}),
    ({"probe_child": failing(errno.ENOSYS)},
     {"clone3": "ENOSYS", "clone_pidfd": "ENOSYS", "waitid_pidfd": "no probe child",
      "pidfd_info_exit": "no probe child"}),
    ({"has_clone3_trampoline": lambda: False},
     {"clone3": "architecture", "clone_pidfd": "architecture",
      "waitid_pidfd": "no probe child", "pidfd_info_exit": "no probe child"}),
])
def test_probe_reports_what_is_missing_and_why(monkeypatch: pytest.MonkeyPatch,
                                               patches: Dict[str, Any],
                                               expect: Dict[str, str]) -> None:
    for name, fn in patches.items():
        monkeypatch.setattr(_sys, name, fn)
    f = _features._probe()
    assert sorted(f.missing()) == sorted(expect)
    for name, why in expect.items():
        assert why in f.reasons[name], (name, f.reasons)
    # The leak fixture checks that the probe child was reaped on every path.


def test_probe_without_waitid_pidfd_still_reaps_its_child(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The documented fallback: reap the exit_signal-0 probe child by pid.
    monkeypatch.setattr(_sys, "waitid_pidfd", failing(errno.EINVAL))
    f = _features._probe()
    assert f.missing() == ["waitid_pidfd"]
    assert f.reasons["waitid_pidfd"] == "EINVAL"


def test_features_after_fork_do_not_deadlock() -> None:
    # If the probe lock was held by another thread at fork time, the child
    # must not inherit it locked.
    with _features._lock:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                _features._cached = None
                os._exit(0 if pidsafe.features().clone3 else 1)
            finally:
                os._exit(2)
    with pidsafe.Process.from_pid(pid) as child:
        try:
            assert child.wait(timeout=20) == 0
        except pidsafe.TimeoutExpired:
            child.kill()
            child.wait()
            raise
