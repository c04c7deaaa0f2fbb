"""Fault sweeps over spawn()'s namespace variants (tests/faults.py).

For every k, the k-th native or resource-making call of ``spawn(uidmap=,
gidmap=)``, ``spawn(userns=)`` and ``spawn(namespaces=)`` fails with an errno,
or a SIGINT lands right after it: spawn raises a typed error and leaves no
fd, child or mount behind.
"""

from __future__ import annotations

import errno
from typing import Any, Callable, Iterator, List

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults, Interrupt

MAP = "0:100000:65536"

pytestmark = pytest.mark.root


@pytest.fixture
def userns_fd() -> Iterator[pidsafe.OwnedFd]:
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        yield fd


def _ops(ns: pidsafe.OwnedFd) -> Callable[[str], Callable[[], pidsafe.Process]]:
    def op(name: str) -> Callable[[], pidsafe.Process]:
        kw: Any = {
            "uidmap": dict(uidmap=MAP, gidmap=MAP,
                           namespaces=pidsafe.Namespace.NEWPID | pidsafe.Namespace.NEWUTS),
            "userns": dict(userns=ns, namespaces=pidsafe.Namespace.NEWUTS),
            "namespaces": dict(namespaces=pidsafe.Namespace.NEWUTS | pidsafe.Namespace.NEWNS),
        }[name]
        return lambda: pidsafe.spawn(["true"], stdout=pidsafe.PIPE, **kw)
    return op


def _count(faults: Faults, op: Callable[[], pidsafe.Process]) -> List[str]:
    """The calls ``op`` makes, in order (it must succeed), once what the
    first call in a process makes for good (the helper's sealed copy) exists."""
    made: List[pidsafe.Process] = [op()]
    faults.count(lambda: made.append(op()))
    for p in made:
        with p:
            p.communicate()
    return list(faults.calls)


#: Calls whose interruption window lies in process/_spawn.py's own fd
#: handling (its pipes), which the process work guards with critical
#: sections at those call sites; this sweep is about the child's side.
_SPAWN_PY_CALLS = frozenset({"os.pipe2"})


@pytest.mark.parametrize("variant", ["uidmap", "userns", "namespaces"])
def test_every_call_failing_is_a_typed_error(faults: Faults, userns_fd: pidsafe.OwnedFd,
                                             variant: str) -> None:
    op = _ops(userns_fd)(variant)
    calls = _count(faults, op)
    assert "pidsafe_spawn" in calls
    for k in range(1, len(calls) + 1):
        with leak_check(f"{variant} k={k}"):
            with faults.fail_at(k, errno.EMFILE):
                with pytest.raises(OSError) as info:
                    op()
            assert info.value.errno == errno.EMFILE or isinstance(info.value, pidsafe.Error), \
                f"k={k} ({faults.fired}): {info.value!r}"


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
@pytest.mark.parametrize("variant", ["uidmap", "userns", "namespaces"])
def test_every_call_interrupted_leaves_nothing(faults: Faults, userns_fd: pidsafe.OwnedFd,
                                              variant: str, before: bool) -> None:
    op = _ops(userns_fd)(variant)
    calls = _count(faults, op)
    for k in range(1, len(calls) + 1):
        if calls[k - 1] in _SPAWN_PY_CALLS:
            continue
        with leak_check(f"{variant} k={k}"):
            with faults.interrupt_at(k, before=before):
                with pytest.raises(Interrupt):
                    op()
