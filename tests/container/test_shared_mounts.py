"""A container without a mount namespace: its mounts, detached by identity."""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest

from pidsafe.container import _shared_mounts
from pidsafe.mount import mountinfo

pytestmark = pytest.mark.root


def _under(root: pathlib.Path) -> list:
    return [m.mountpoint for m in mountinfo() if m.mountpoint.startswith(str(root) + "/")]


def test_mounts_stacked_at_one_point_are_all_detached_by_one_call(
        tmp_path: pathlib.Path) -> None:
    """Three tmpfs stacked on one mount point (as mounts propagated back
    from a mount namespace being copied from ours can be) and one under
    them: one unmount_new() detaches them all, top first, and never meets
    a point whose top mount is not the one it listed."""
    root = tmp_path / "rootfs"
    (root / "mnt").mkdir(parents=True)
    rec = _shared_mounts.record(str(root))
    try:
        for i in range(3):
            subprocess.run(["mount", "-t", "tmpfs", f"stack{i}", str(root / "mnt")], check=True)
        os.mkdir(root / "mnt" / "sub")
        subprocess.run(["mount", "-t", "tmpfs", "sub", str(root / "mnt" / "sub")], check=True)
        assert len(_under(root)) == 4
        _shared_mounts.unmount_new(rec)
        assert _under(root) == []
    finally:
        while _under(root):
            subprocess.run(["umount", "-l", str(root / "mnt")], check=False)
