"""A new network namespace gets lo up through pyroute2, from a thread of its own."""

from __future__ import annotations

import os
import threading

import pytest

import pidsafe
from pidsafe.container._network import loopback_is_up, loopback_up


@pytest.mark.root
def test_loopback_comes_up_in_the_childs_namespace_only() -> None:
    with pidsafe.spawn(["sleep", "60"], namespaces=pidsafe.Namespace.NEWNET) as p:
        try:
            with pidsafe.OwnedFd(os.open(f"/proc/{p.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC),
                                 "netns") as netns:
                p.send_signal(0)     # open, then prove: the fd is this child's
                assert loopback_is_up(netns) is False
                before = os.readlink("/proc/thread-self/ns/net")
                loopback_up(netns)
                assert loopback_is_up(netns) is True
                # Our own thread never left its namespace.
                assert os.readlink("/proc/thread-self/ns/net") == before
                assert threading.active_count() >= 1
        finally:
            p.kill()
            p.wait()


def test_errors_are_oserrors_naming_the_step() -> None:
    with pidsafe.OwnedFd(os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC), "not a netns") as fd:
        with pytest.raises(OSError) as info:
            loopback_up(fd)
    assert "bring up lo" in str(info.value)
