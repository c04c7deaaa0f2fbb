"""What a container's lifecycle logs on logging.getLogger("pidsafe") (debug level)."""

from __future__ import annotations

import logging
import pathlib
from typing import Any, List

import pytest

import pidsafe

pytestmark = pytest.mark.root


def messages(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records
            if r.name.startswith("pidsafe")]


def test_a_create_start_delete_cycle(make_bundle: Any, state_dir: pathlib.Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pidsafe")
    bundle = make_bundle(["true"])
    c = pidsafe.Container.create("l1", bundle, state_dir=str(state_dir), rootfs_mounts=[
        pidsafe.Mount("bind", str(bundle / "rootfs"), "", ["rbind"])])
    pid = c.pid
    c.start()
    assert c.wait(timeout=30) == 0
    c.delete()
    got = messages(caplog)
    want_in_order = [
        f"pidsafe.mount: mounted under {bundle}: bind on /rootfs",
        "pidsafe.cgroup: cgroup /pidsafe/",
        f"pidsafe.container: container l1 created in {state_dir}: init pid {pid}",
        f"pidsafe.container: container l1 started: init pid {pid}",
        "pidsafe.container: undoing container l1",
        "pidsafe.cgroup: removing cgroup",
        f"pidsafe.mount: unmounting under {bundle}, by identity: /rootfs",
        f"pidsafe.container: container l1 deleted from {state_dir}",
    ]
    i = 0
    for line in got:
        if i < len(want_in_order) and line.startswith(want_in_order[i]):
            i += 1
    assert i == len(want_in_order), (want_in_order[i], got)


def test_a_failed_create_logs_its_undo(make_bundle: Any, state_dir: pathlib.Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="pidsafe")
    hook = {"path": "/bin/sh", "args": ["sh", "-c", "exit 4"]}
    bundle = make_bundle(["true"], lambda d: d.update(hooks={"createRuntime": [hook]}))
    with pytest.raises(pidsafe.HookError):
        pidsafe.Container.create("l2", bundle, state_dir=str(state_dir))
    got = messages(caplog)
    failed = [m for m in got if m.startswith("pidsafe.container: container l2: create failed (")]
    assert failed and "killing init, undoing what was made" in failed[0]
    assert got.index(failed[0]) < got.index(
        "pidsafe.container: undoing container l2: cgroup, mounts, gate fifo, state")
    assert any(m.startswith("pidsafe.cgroup: removing cgroup") for m in got)
    assert any(m.startswith("pidsafe.process: ending child") or "init" in m for m in got)
    assert not any("created in" in m for m in got)
