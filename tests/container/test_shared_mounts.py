"""A container without a mount namespace: its mounts, detached by identity."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from typing import Any

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


def _in_private_mount_ns(script: str, *args: str) -> None:
    """Run the Python ``script`` in a private copy of our mount namespace.

    Its mount table then changes only by what it does itself: in ours,
    every mount another test makes marks the table changed, and the stale
    read these tests are about would be hidden by a fresh one."""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private",
                           sys.executable, "-c", script, *args],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


#: What is mounted at or below argv[1] now, read from the kernel (not the cache).
_UNDER = '''
import sys
def under(root):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(root + "/")]
'''


def test_a_mount_whose_directory_was_renamed_after_the_last_read_is_detached(
        tmp_path: pathlib.Path) -> None:
    """A directory above a new mount renamed after this process last read its
    mount table (as the container's own processes can, sharing the rootfs):
    the table read last still shows the old path, since a rename is no
    change the kernel signals.  unmount_new reads it afresh after a round
    that found nothing where it said, and detaches the mount (it gave up
    with EBUSY)."""
    root = tmp_path / "rootfs"
    (root / "mnt" / "target").mkdir(parents=True)
    _in_private_mount_ns(_UNDER + '''
import os, subprocess
from pidsafe.container import _shared_mounts
from pidsafe.mount import mountinfo
root = sys.argv[1]
rec = _shared_mounts.record(root)
subprocess.run(["mount", "-t", "tmpfs", "t", root + "/mnt/target"], check=True)
assert [m.mountpoint for m in mountinfo() if m.mountpoint.startswith(root + "/")] == [
    root + "/mnt/target"]   # this process's table, read now
os.rename(root + "/mnt", root + "/moved")
_shared_mounts.unmount_new(rec)
assert under(root) == [], under(root)
''', str(root))


def test_delete_without_a_mount_namespace_finishes_after_a_rename_in_the_rootfs(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """A container without a mount namespace, a bind of its config at
    /mnt/target made by init in the runtime's namespace; the rootfs's /mnt
    renamed (as the container's processes can) after the runtime read its
    mount table (as any reader in it does: another container's create):
    delete(force=True) detaches the bind where it is now, in one call."""
    data = tmp_path / "data"
    data.mkdir()

    def edit(doc: Any) -> None:
        doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"]
                                      if ns["type"] != "mount"]
        doc["mounts"] = [{"destination": "/mnt/target", "type": "bind",
                          "source": str(data), "options": ["rbind", "ro"]}]
        doc["linux"].pop("maskedPaths", None)
        doc["linux"].pop("readonlyPaths", None)
        doc.pop("hostname", None)
        doc["root"]["readonly"] = False

    bundle = make_bundle(["sleep", "1000"], edit)
    (bundle / "rootfs" / "mnt" / "target").mkdir(parents=True, exist_ok=True)
    _in_private_mount_ns(_UNDER + '''
import os, subprocess
import pidsafe
from pidsafe.mount import mountinfo
bundle, state_dir = sys.argv[1], sys.argv[2]
root = bundle + "/rootfs"
c = pidsafe.Container.create("rn", bundle, state_dir=state_dir)
try:
    c.start()
    assert [m.mountpoint for m in mountinfo() if m.mountpoint.startswith(root + "/")] == [
        root + "/mnt/target"]   # this process's table, read now
    os.rename(root + "/mnt", root + "/moved")
    c.delete(force=True)
    assert under(root) == [], under(root)
finally:
    if pidsafe.Container.list(state_dir):   # failed: finish it for the next test
        for point in reversed(under(root)):
            subprocess.run(["umount", "-l", point], check=False)
        c.delete(force=True)
    c.close()
''', str(bundle), str(state_dir))
