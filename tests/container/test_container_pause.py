"""Container.pause/resume/update and preserve_fds: the library side of runc's CLI surface."""

from __future__ import annotations

import errno
import pathlib
from typing import Any, Iterator

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults

pytestmark = pytest.mark.root


@pytest.fixture
def running(make_bundle: Any, state_dir: pathlib.Path) -> Iterator[pidsafe.Container]:
    c = pidsafe.Container.create("p", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    c.start()
    yield c
    c.delete(force=True)


def test_pause_resume_and_status(running: pidsafe.Container, state_dir: pathlib.Path) -> None:
    running.pause()
    assert running.status() == "paused"
    other = pidsafe.Container.load(str(state_dir), "p")   # another process's view
    try:
        assert other.status() == "paused" and other.state()["pid"] == running.pid
        with pytest.raises(pidsafe.ContainerStateError, match="paused"):
            other.pause()
        with pytest.raises(pidsafe.ContainerStateError, match="paused"):
            other.exec(["true"], exec_id="e1")
        other.resume()
    finally:
        other.close()
    assert running.status() == "running"
    with pytest.raises(pidsafe.ContainerStateError, match="running"):
        running.resume()


def test_update_applies_and_records_only_what_is_given(running: pidsafe.Container,
                                                       state_dir: pathlib.Path) -> None:
    running.update({"pids": {"limit": 40}, "memory": {"limit": 64 << 20}})
    running.update({"memory": {"reservation": 16 << 20},
                    "devices": [{"allow": True, "access": "rwm"}]})   # devices: ignored
    again = pidsafe.Container.load(str(state_dir), "p")
    try:
        res = again.spec().linux.resources
    finally:
        again.close()
    assert res.pids_limit == 40 and res.memory is not None
    assert (res.memory.limit, res.memory.reservation) == (64 << 20, 16 << 20)
    assert len(res.devices) == 1 and not res.devices[0].allow   # as created
    with pytest.raises(pidsafe.UnsupportedConfigError, match=r"linux\.resources\.rdma"):
        running.update({"rdma": {"mlx5_0": {"hcaHandles": 3}}})
    with pytest.raises(pidsafe.ConfigError, match=r"linux\.resources"):
        running.update([])   # type: ignore[arg-type]


def test_pause_with_each_call_failing_leaves_it_running(faults: Faults,
                                                        running: pidsafe.Container) -> None:
    n = faults.count(running.pause)
    running.resume()
    for k in range(1, n + 1):
        with leak_check(f"pause with call {k} of {n} failed", check_mounts=False):
            try:
                with faults.fail_at(k, errno.EIO):
                    running.pause()
            except (OSError, pidsafe.Error):
                assert running.status() == "running", f"call {k} ({faults.fired})"
            else:
                assert running.status() == "paused"
                running.resume()


def test_update_with_each_call_failing_never_records_what_is_not_applied(
        faults: Faults, running: pidsafe.Container, state_dir: pathlib.Path) -> None:
    pids_max = pathlib.Path(_pids_dir(running.pid)) / "pids.max"
    n = faults.count(lambda: running.update({"pids": {"limit": 30}}))
    for k in range(1, n + 1):
        with leak_check(f"update with call {k} of {n} failed", check_mounts=False):
            try:
                with faults.fail_at(k, errno.EIO):
                    running.update({"pids": {"limit": 20 + k}})
                ok = True
            except (OSError, pidsafe.Error):
                ok = False
            again = pidsafe.Container.load(str(state_dir), "p")
            try:
                limit = again.spec().linux.resources.pids_limit
            finally:
                again.close()
            where = f"call {k} ({faults.fired})"
            assert limit in ((20 + k,) if ok else (30, 20 + k)), where
            if limit == 20 + k:   # recorded: then it is applied
                assert pids_max.read_text().strip() == str(20 + k), where
            running.update({"pids": {"limit": 30}})


def _pids_dir(pid: Any) -> str:
    from pidsafe.container.cgroup._layout import CgroupLayout

    h = CgroupLayout.detect().location("pids")
    assert h is not None
    for line in pathlib.Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, key, path = line.split(":", 2)
        if key == h.key:
            return h.directory(path)
    raise AssertionError("no pids cgroup")


def test_preserve_fds_is_checked_before_anything_exists(make_bundle: Any,
                                                        state_dir: pathlib.Path) -> None:
    bundle = make_bundle(["true"])
    with pytest.raises(ValueError, match="non-negative"):
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir), preserve_fds=-1)
    free = 3
    while True:   # the lowest fd not open here: preserving up to it must fail
        try:
            import os

            os.fstat(free)
            free += 1
        except OSError:
            break
    with pytest.raises(OSError, match=f"fd {free} is not open") as info:
        pidsafe.Container.create("x", bundle, state_dir=str(state_dir),
                                 preserve_fds=free - 2)
    assert info.value.errno == errno.EBADF
