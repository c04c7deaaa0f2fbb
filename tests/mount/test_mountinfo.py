"""The one mountinfo parser (pidsafe/mount/_mountinfo.py): fields, escapes, real mounts."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Iterator, List

import pytest

from pidsafe import _sys
from pidsafe.mount import MountInfo, mountinfo, parse_mountinfo
from pidsafe.mount._mountinfo import unescape

from mounthelp import run_tool

HYBRID = (
    "25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - "
    "cgroup2 cgroup2 rw,nsdelegate\n"
    "35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:15 - "
    "cgroup cgroup rw,cpu,cpuacct\n"
    "36 30 0:32 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd\n"
)


def test_fields_of_each_line() -> None:
    infos = parse_mountinfo(HYBRID)
    assert [m.mount_id for m in infos] == [25, 30, 31, 35, 36]
    cpu = infos[3]
    assert cpu == MountInfo(35, 30, "/", "/sys/fs/cgroup/cpu,cpuacct",
                            ("rw", "nosuid", "nodev", "noexec", "relatime"), "cgroup", "cgroup",
                            os.makedev(0, 31), ("rw", "cpu", "cpuacct"))
    # No optional fields before the separator.
    assert infos[4].fstype == "cgroup" and infos[4].super_options == ("rw", "xattr", "name=systemd")


@pytest.mark.parametrize("field, path", [
    ("/a\\040b", "/a b"),
    ("/tab\\011x", "/tab\tx"),
    ("/nl\\012x", "/nl\nx"),
    ("/back\\134slash", "/back\\slash"),
    ("/back\\134040", "/back\\040"),       # an escaped backslash before digits
    ("/a\\040\\040b\\040", "/a  b "),
    ("/not\\101escaped", "/not\\101escaped"),  # the kernel escapes only those four
    ("/end\\", "/end\\"),
    ("/plain", "/plain"),
])
def test_unescape_what_the_kernel_escapes(field: str, path: str) -> None:
    assert unescape(field) == path


def test_escaped_fields_of_a_line() -> None:
    [m] = parse_mountinfo("40 1 0:50 /r\\040oot /mnt/a\\040b\\011c rw - tmpfs my\\040disk rw\n")
    assert (m.root, m.mountpoint, m.source) == ("/r oot", "/mnt/a b\tc", "my disk")


def test_an_empty_source_keeps_the_fields_in_place() -> None:
    [m] = parse_mountinfo("40 1 0:50 / /mnt rw - tmpfs  rw,size=4k\n")
    assert (m.fstype, m.source, m.super_options) == ("tmpfs", "", ("rw", "size=4k"))


def test_a_malformed_line_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_mountinfo("40 1 0:50 /\n")


def test_a_table_read_again_parses_only_its_new_lines() -> None:
    from pidsafe.mount import _mountinfo

    first = parse_mountinfo(HYBRID)
    changed = HYBRID.replace("36 30 0:32 / /sys/fs/cgroup/systemd rw,relatime",
                             "37 30 0:32 / /sys/fs/cgroup/systemd ro,relatime")
    changed += "40 1 0:50 / /mnt rw - tmpfs tmp rw\n"
    again = parse_mountinfo(changed)
    assert [a is b for a, b in zip(first, again)] == [True, True, True, True, False]
    assert (again[4].mount_id, again[4].options[0], again[5].mountpoint) == (37, "ro", "/mnt")
    # What is kept is the last table's lines, no more.
    assert set(_mountinfo._parsed) == set(changed.splitlines())
    _mountinfo._parsed = {}
    assert parse_mountinfo(changed) == again   # as parsed from nothing
    # A malformed line is refused however often it is read; the memo stays.
    for _ in range(2):
        with pytest.raises(ValueError):
            parse_mountinfo(HYBRID + "40 1 0:50 /\n")


@pytest.fixture
def spaced(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs mounted on a directory whose name has a space, a tab and a backslash."""
    d = tmp_path / "a b\tc\\d"
    d.mkdir()
    run_tool(["mount", "-t", "tmpfs", "-o", "size=64k", "pidsafe test", str(d)])
    try:
        yield d
    finally:
        _sys.umount2(str(d), 0)


@pytest.mark.root
def test_a_mount_point_with_a_space_is_found(spaced: Path) -> None:
    st = os.stat(spaced)
    found = [m for m in mountinfo() if m.mountpoint == str(spaced)]
    assert len(found) == 1, [m.mountpoint for m in mountinfo() if "a b" in m.mountpoint]
    assert found[0].fstype == "tmpfs" and found[0].source == "pidsafe test"
    assert found[0].dev == st.st_dev
    with open("/proc/self/mountinfo") as f:
        assert "a\\040b\\011c\\134d" in f.read()   # as the kernel spells it


# -- this process's table: read again only once the kernel says it changed ----------

def _kernel_table() -> List[MountInfo]:
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        return parse_mountinfo(f.read())


@pytest.mark.root
def test_the_table_follows_every_change_the_kernel_makes(tmp_path: Path) -> None:
    """A mount, a read-only flag set on it, a mount moved, an unmount: each
    shows at the next read, which is the kernel's table each time."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert mountinfo() == _kernel_table()
    run_tool(["mount", "-t", "tmpfs", "cached-a", str(a)])
    try:
        seen = [m for m in mountinfo() if m.mountpoint == str(a)]
        assert [m.source for m in seen] == ["cached-a"]
        run_tool(["mount", "-o", "remount,bind,ro", str(a)])
        assert "ro" in next(m for m in mountinfo() if m.mountpoint == str(a)).options
        run_tool(["mount", "--move", str(a), str(b)])
        points = [m.mountpoint for m in mountinfo()]
        assert str(b) in points and str(a) not in points
        assert mountinfo() == _kernel_table()
    finally:
        for p in (a, b):
            if os.path.ismount(p):
                run_tool(["umount", str(p)])
    points = [m.mountpoint for m in mountinfo()]
    assert str(a) not in points and str(b) not in points
    assert mountinfo() == _kernel_table()


def test_each_caller_gets_a_list_of_its_own() -> None:
    first = mountinfo()
    first.clear()
    assert mountinfo() != []


def _fdinfo_mnt_id(fd: int) -> int:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("mnt_id:"))


def test_a_kernel_lacking_a_statx_mount_id_is_learnt_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without STATX_MNT_ID (before Linux 5.8) the id comes from fdinfo, and
    without STATX_MNT_ID_UNIQUE (before 6.8) the unique id is 0; the first
    call asks the kernel, the later ones do not."""
    from pidsafe.mount import _mountinfo

    asked: List[int] = []

    def lacking(fd: int) -> int:
        asked.append(fd)
        raise OSError(errno.EOPNOTSUPP, "no such statx field")

    monkeypatch.setattr(_mountinfo, "_mnt_id_by_statx", [])
    monkeypatch.setattr(_mountinfo, "_unique_supported", [])
    monkeypatch.setattr(_sys, "mnt_id", lacking)
    monkeypatch.setattr(_sys, "mnt_id_unique", lacking)
    fd = os.open("/proc", os.O_PATH | os.O_CLOEXEC)
    try:
        want = _fdinfo_mnt_id(fd)
        assert [_mountinfo.mount_id_of(fd) for _ in range(2)] == [want, want]
        assert [_mountinfo.unique_id_of(fd) for _ in range(2)] == [0, 0]
    finally:
        os.close(fd)
    assert asked == [fd, fd]   # once each


def test_a_statx_failing_otherwise_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe.mount import _mountinfo

    def failing(fd: int) -> int:
        raise OSError(errno.EBADF, "bad fd")

    for known in ([], [True]):
        monkeypatch.setattr(_mountinfo, "_mnt_id_by_statx", list(known))
        monkeypatch.setattr(_mountinfo, "_unique_supported", list(known))
        monkeypatch.setattr(_sys, "mnt_id", failing)
        monkeypatch.setattr(_sys, "mnt_id_unique", failing)
        with pytest.raises(OSError) as info:
            _mountinfo.mount_id_of(-1)
        assert info.value.errno == errno.EBADF
        with pytest.raises(OSError) as info:
            _mountinfo.unique_id_of(-1)
        assert info.value.errno == errno.EBADF
        assert _mountinfo._mnt_id_by_statx == _mountinfo._unique_supported == known


def test_a_mount_id_from_statx_is_fdinfos() -> None:
    from pidsafe.mount._mountinfo import mount_id_of

    fd = os.open("/proc", os.O_PATH | os.O_CLOEXEC)
    try:
        want = _fdinfo_mnt_id(fd)
        assert mount_id_of(fd) == want == _sys.mnt_id(fd)
    finally:
        os.close(fd)
