"""Fixtures and helpers shared by the mount tests (imported by name).

Everything mounts for real, as root, on a tmpfs "disk" mounted under
``tmp_path``; the user namespace is always ``0:100000:65536``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.mount import _mount, parse_mountinfo

MAP = "0:100000:65536"
IDMAP_OPTS = [f"uidmap={MAP}", f"gidmap={MAP}"]


def mountpoints_under(path: Path) -> List[str]:
    """What the kernel has mounted at or under ``path`` now: read here, not
    through pidsafe's own table (its cache is under test too)."""
    prefix = str(path) + "/"
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        infos = parse_mountinfo(f.read())
    return [m.mountpoint for m in infos
            if m.mountpoint == str(path) or m.mountpoint.startswith(prefix)]


def run_tool(args: Sequence[str]) -> None:
    with pidsafe.spawn(list(args), stdout=subprocess.DEVNULL) as p:
        assert p.wait() == 0, args


def umount(path: Path) -> None:
    _sys.umount2(str(path), 0)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs to play the disk, owned by root; unmounted afterwards."""
    d = tmp_path / "disk"
    d.mkdir()
    run_tool(["mount", "-t", "tmpfs", "-o", "mode=755", "pidsafe-test-disk", str(d)])
    try:
        yield d
    finally:
        # umount -R would hide a leak from no_leaks: say what was left first.
        left = [p for p in mountpoints_under(d) if p != str(d)]
        run_tool(["umount", "-R", str(d)])
    assert left == [], f"the test left mounts on the disk: {left}"


@pytest.fixture
def userns() -> Iterator[pidsafe.OwnedFd]:
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        yield fd


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's directory, private to this test, to see what is left in it."""
    t = tmp_path / "tmp"
    t.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(t))
    return t


def in_userns(userns: pidsafe.OwnedFd, cwd: Path, args: Sequence[str]) -> str:
    """Run ``args`` in ``cwd`` as root of ``userns`` (host uid 100000); its stdout.

    ``cwd`` is entered as host root first: pytest's base directory is mode
    0700, so host uid 100000 could not walk a path to it.
    """
    fd = userns.fileno()
    with pidsafe.spawn(["nsenter", f"--user=/proc/self/fd/{fd}", "--", *args], cwd=cwd,
                       pass_fds=[fd], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, (args, err)
    return out.decode()


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


@pytest.fixture
def rootfs(disk: Path) -> Path:
    r = disk / "rootfs"
    (r / "etc").mkdir(parents=True)
    return r


def layers(disk: Path) -> List[str]:
    (disk / "layers/l1/etc").mkdir(parents=True)
    (disk / "layers/l2/bin").mkdir(parents=True)
    (disk / "layers/l1/etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (disk / "layers/l2/bin/sh").write_text("#!")
    (disk / "up").mkdir()
    (disk / "work").mkdir()
    return [f"lowerdir={disk}/layers/l1:{disk}/layers/l2", f"upperdir={disk}/up",
            f"workdir={disk}/work"]
