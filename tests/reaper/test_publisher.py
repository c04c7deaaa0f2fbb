"""The exit stream's one writer: ExitPublisher (pidsafe/reaper/_publisher.py)."""

from __future__ import annotations

import pytest

import pidsafe
from pidsafe.reaper._publisher import ExitPublisher


def _exit(pid: int) -> pidsafe.Exit:
    return pidsafe.Exit(pid, 0, None, True, 0.0)


def test_each_subscriber_gets_each_batch_in_order() -> None:
    pub = ExitPublisher()
    a, b = pub.subscribe(10), pub.subscribe(10)
    pub.publish([_exit(1), _exit(2)])
    pub.publish([])
    pub.publish([_exit(3)])
    for sub in (a, b):
        assert [sub.get(timeout=0).pid for _ in range(3)] == [1, 2, 3]
        assert sub.qsize() == 0
    a.close()
    pub.publish([_exit(4)])
    assert b.get(timeout=0).pid == 4
    with pytest.raises(pidsafe.SubscriptionClosed):
        a.get(timeout=0)
    b.close()


def test_a_subscriber_that_falls_behind_is_detached_alone() -> None:
    pub = ExitPublisher()
    slow, other = pub.subscribe(1), pub.subscribe(10)
    pub.publish([_exit(1), _exit(2)])
    pub.publish([_exit(3)])
    assert slow.get(timeout=0).pid == 1
    with pytest.raises(pidsafe.SubscriptionOverflow):
        slow.get(timeout=0)
    assert slow.overflowed
    assert [other.get(timeout=0).pid for _ in range(3)] == [1, 2, 3]
    other.close()


def test_end_drains_then_reports_the_reason() -> None:
    pub = ExitPublisher()
    sub = pub.subscribe(10)
    pub.publish([_exit(7)])
    pub.end(lambda: pidsafe.SubscriptionClosed("the reaper stopped"))
    pub.publish([_exit(8)])                  # nobody listens any more
    assert sub.get(timeout=0).pid == 7
    with pytest.raises(pidsafe.SubscriptionClosed, match="the reaper stopped"):
        sub.get(timeout=0)
