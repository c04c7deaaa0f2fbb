"""The containerd test harness itself (tests/ctrd): what it finds left, and that it cleans all."""

from __future__ import annotations

import os
import pathlib

import pytest

import session_owned
from conftest import Snapshot
from ctrd import RUNC, Containerd
from ctrd.daemon import _cgroup_mounts, _processes_with_arg
from ctrd.events import parse


@pytest.mark.root
@pytest.mark.containerd
def test_close_removes_what_a_dead_containerd_left(tmp_path_factory: pytest.TempPathFactory
                                                   ) -> None:
    """A container still running when containerd dies: close() names it and removes it all."""
    daemon = Containerd(tmp_path_factory.getbasetemp())
    try:
        daemon.start()
        daemon.import_busybox()
        daemon.ctr("run", "-d", *RUNC.ctr_args(daemon), daemon.image, "left",
                   "sleep", "600").check()
        ns = daemon.namespace
        assert daemon.leftovers() == [f"container {ns}/left", f"active snapshot {ns}/left"]
        [shim] = daemon.shim_pids()
        [socket] = daemon.shim_sockets()
        assert any(c.endswith(f"{ns}/left") for c in daemon.cgroups())
        assert daemon.mounts() == [f"{daemon.dir}/state/io.containerd.runtime.v2.task/{ns}/left/rootfs"]
        with open("/proc/self/mountinfo") as f:   # not in ours: its own mount namespace
            assert daemon.mounts()[0] not in {line.split()[4] for line in f}
        assert daemon._supervisor is not None
        daemon._supervisor.stop_containerd()   # as if it had crashed: the shim lives on
        assert daemon.shim_pids() == [shim]
    finally:
        problems = daemon.close()
    assert any(p.startswith(f"at exit: left {shim} ") and "containerd-shim-runc-v2" in p
               for p in problems), problems
    assert any(p.startswith("at exit: left") and "sleep 600" in p for p in problems)
    assert f"shim socket left: {socket}" in problems
    assert any(p.startswith("cgroup left:") and p.endswith(f"{ns}/left") for p in problems)
    # and now nothing is left
    assert _processes_with_arg("-address", daemon.address) == []
    assert not os.path.lexists(socket)
    assert not any(os.path.exists(m + daemon.cgroup_parent) for m in _cgroup_mounts())
    assert not daemon.dir.exists()


def test_session_owned_fds_are_exempt_only_as_registered(tmp_path: pathlib.Path) -> None:
    snap = Snapshot()
    r, w = os.pipe2(os.O_CLOEXEC)
    session_owned.own_fd(r)
    try:
        assert snap.leaks(grace=0) == [f"leaked fd {w} -> {os.readlink(f'/proc/self/fd/{w}')}"]
        os.close(r)   # the same number, pointing elsewhere: a leak again
        fd = os.open(tmp_path, os.O_RDONLY | os.O_CLOEXEC)
        assert fd == r
        assert f"leaked fd {fd} -> {tmp_path}" in snap.leaks(grace=0)
        os.close(fd)
    finally:
        session_owned.disown_fd(r)
        os.close(w)


def test_event_lines_parse() -> None:
    line = ('2026-12-06 20:57:50.932612207 +0000 UTC tst /tasks/exit {"container_id":"t1",'
            '"id":"t1","pid":15511,"exit_status":3,"exited_at":"2026-12-06T20:57:50.93259402Z"}\n')
    event = parse(line)
    assert event is not None
    assert (event.namespace, event.topic, event.get("exit_status")) == ("tst", "/tasks/exit", 3)
    assert event.matches("/tasks/exit", "tst", {"container_id": "t1", "pid": 15511})
    zero = parse('2026-12-06 20:57:50.9 +0000 UTC tst /tasks/exit {"container_id":"t2"}')
    assert zero is not None and zero.matches(None, None, {"exit_status": 0})
    assert parse("ctr: failed to dial\n") is None
