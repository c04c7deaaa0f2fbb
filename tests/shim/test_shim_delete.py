"""The ``delete`` action: idempotent, exit 0, the raw DeleteResponse; and the cleanup
after a shim that was killed, from the container's state on disk."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import pidsafe
from pidsafe.shim import messages as m
from pidsafe.shim._cli import Flags
from pidsafe.shim._create import state_dir
from pidsafe.shim._delete import delete, delete_response, remove_dead_socket

SHIM = Path(sys.executable).parent / "containerd-shim-pidsafe-v1"


@pytest.mark.parametrize("pid, status, ns", [(871, 137, 1_790_000_000_123_456_789),
                                             (0, 137, 5), (3, 0, 0), (1, 2, -1_000)])
def test_delete_response_is_the_message(pid: int, status: int, ns: int) -> None:
    want = m.DeleteResponse(pid=pid, exit_status=status,
                            exited_at=m.Timestamp.from_ns(ns)).encode()
    assert delete_response(pid, status, ns) == want


def test_delete_when_everything_is_gone(tmp_path: Path) -> None:
    (tmp_path / "init.pid").write_text("4242")
    res = subprocess.run([str(SHIM), "-namespace", "n", "-address", "/a", "-publish-binary",
                          "containerd", "-id", "gone", "-bundle", str(tmp_path), "delete"],
                         capture_output=True, timeout=60)
    assert (res.returncode, res.stderr) == (0, b"")
    resp = m.DeleteResponse.decode(res.stdout)
    assert (resp.pid, resp.exit_status) == (4242, 137)
    assert abs(resp.exited_at.to_ns() - time.time_ns()) < 60e9
    # Again, and without init.pid: still 0.
    (tmp_path / "init.pid").unlink()
    res = subprocess.run([str(SHIM), "-namespace", "n", "-id", "gone", "-bundle",
                          str(tmp_path), "delete"], capture_output=True, timeout=60)
    assert res.returncode == 0 and m.DeleteResponse.decode(res.stdout).pid == 0


def test_a_dead_socket_is_removed_a_live_one_kept(tmp_path: Path) -> None:
    path = tmp_path / "sock"
    (tmp_path / "address").write_text(f"unix://{path}")
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    live.bind(str(path))
    live.listen(1)
    try:
        remove_dead_socket(str(tmp_path))   # a pod's daemon still serves it
        assert path.exists()
    finally:
        live.close()
    remove_dead_socket(str(tmp_path))       # nobody answers: the daemon died
    assert not path.exists()
    remove_dead_socket(str(tmp_path))       # nothing there: nothing to do


@pytest.mark.root
def test_delete_after_the_shim_was_killed(make_bundle: Any, tmp_path: Path) -> None:
    """A daemon killed with SIGKILL leaves its container as its state says: the
    action kills init, unmounts the rootfs, removes the cgroup and the state."""
    bundle = make_bundle(["sleep", "1000"])
    image = tmp_path / "image"
    os.rename(bundle / "rootfs", image)
    (bundle / "rootfs").mkdir()
    c = pidsafe.Container.create("left", bundle, state_dir=state_dir(str(bundle)),
                                 rootfs_mounts=[pidsafe.Mount("bind", str(image), "",
                                                              ["rbind", "rw"])])
    c.start()
    pid = c.pid
    cg = c.cgroup()
    assert cg is not None and mounted(bundle / "rootfs")
    (bundle / "init.pid").write_text(str(pid))
    flags = Flags()
    flags.namespace, flags.id, flags.bundle = "n", "left", str(bundle)
    out = _run_delete(flags)
    assert m.DeleteResponse.decode(out).pid == pid
    assert c.wait(timeout=10) == -9                 # killed, through its pidfd
    c.close()
    assert not mounted(bundle / "rootfs")
    assert os.listdir(state_dir(str(bundle))) == []
    assert not any(os.path.exists(p) for p in cg.v1_paths.values())
    assert cg.v2_path is None or not os.path.exists(cg.v2_path)
    assert m.DeleteResponse.decode(_run_delete(flags)).pid == pid   # and again: nothing left


def mounted(path: Path) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def _run_delete(flags: Flags) -> bytes:
    import io

    class Out:
        buffer = io.BytesIO()

    real = sys.stdout
    sys.stdout = Out  # type: ignore[assignment]
    try:
        assert delete(flags) == 0
    finally:
        sys.stdout = real
    return Out.buffer.getvalue()
