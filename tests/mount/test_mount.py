"""Idmapped mounts, mount lists, targets resolved inside the rootfs.

Everything here mounts for real, as root, on a tmpfs "disk" mounted under
``tmp_path`` (tmpfs supports idmapped mounts since Linux 6.3), and unmounts
it again: the autouse ``no_leaks`` fixture fails any test that leaves a
mount, an fd or a child behind.  The user namespace is always
``0:100000:65536`` for uids and gids.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

import pidsafe
from pidsafe.mount import _mount, _unmount
from pidsafe import _sys
from pidsafe.cli import main as cli_main

from mounthelp import (IDMAP_OPTS, MAP, disk, in_userns, layers, mountpoints_under, owner,
                       private_tmp, rootfs, run_tool, umount, userns)

__all__ = ["disk", "private_tmp", "rootfs", "userns"]  # fixtures, used by name

pytestmark = pytest.mark.root

# --- idmapped_bind ----------------------------------------------------------------

def test_idmapped_bind_ownership(disk: Path, userns: pidsafe.OwnedFd) -> None:
    src, dst = disk / "src", disk / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "root-file").write_text("x")
    os.chown(src / "root-file", 0, 0)
    pidsafe.idmapped_bind(src, dst, userns)
    try:
        # uid 0 on disk reads as host uid 100000 through the mount ...
        assert owner(dst / "root-file") == (100000, 100000)
        assert owner(src / "root-file") == (0, 0)
        # ... and as 0 from inside the namespace.
        assert in_userns(userns, dst, ["stat", "-c", "%u:%g", "root-file"]) == "0:0\n"
        # The namespace's root (host 100000) creates a file through the
        # mount: on disk it belongs to 0.
        in_userns(userns, dst, ["touch", "made-by-ns-root"])
        assert owner(src / "made-by-ns-root") == (0, 0)
        assert owner(dst / "made-by-ns-root") == (100000, 100000)
        info = [m for m in _mount.mountinfo() if m.mountpoint == str(dst)]
        assert len(info) == 1 and "idmapped" in info[0].options
    finally:
        umount(dst)


def test_idmapped_bind_readonly_gives_erofs(disk: Path, userns: pidsafe.OwnedFd) -> None:
    src, dst = disk / "src", disk / "dst"
    src.mkdir()
    dst.mkdir()
    pidsafe.idmapped_bind(src, dst, userns, readonly=True)
    try:
        with pytest.raises(OSError) as ei:
            (dst / "new").write_text("x")
        assert ei.value.errno == errno.EROFS
        assert not (src / "new").exists()
    finally:
        umount(dst)


@pytest.mark.parametrize("recursive", [True, False])
def test_idmapped_bind_recursive(disk: Path, userns: pidsafe.OwnedFd, recursive: bool) -> None:
    src, dst = disk / "src", disk / "dst"
    (src / "sub").mkdir(parents=True)
    dst.mkdir()
    run_tool(["mount", "-t", "tmpfs", "pidsafe-test-sub", str(src / "sub")])
    (src / "sub" / "in-submount").write_text("x")
    pidsafe.idmapped_bind(src, dst, userns, recursive=recursive)
    try:
        seen = (dst / "sub" / "in-submount").exists()
        assert seen == recursive
        if recursive:
            assert owner(dst / "sub" / "in-submount") == (100000, 100000)
    finally:
        if recursive:
            umount(dst / "sub")
        umount(dst)
        umount(src / "sub")


def test_idmapped_bind_unsupported_filesystem_names_it(tmp_path: Path,
                                                       userns: pidsafe.OwnedFd) -> None:
    # ramfs has no idmapped-mount support: EINVAL from mount_setattr.
    ram, dst = tmp_path / "ram", tmp_path / "dst"
    ram.mkdir()
    dst.mkdir()
    run_tool(["mount", "-t", "ramfs", "pidsafe-test-ramfs", str(ram)])
    try:
        with pytest.raises(pidsafe.MountError) as ei:
            pidsafe.idmapped_bind(ram, dst, userns)
    finally:
        umount(ram)
    e = ei.value
    assert e.errno == errno.EINVAL
    assert e.path == str(ram) and e.filename == str(ram)
    assert e.step == f"unable to idmap mount tree of {ram}"
    assert "ramfs" in str(e) and "does not support idmapped mounts" in str(e)


def test_idmapped_bind_eperm_says_why(disk: Path) -> None:
    src, dst = disk / "src", disk / "dst"
    src.mkdir()
    dst.mkdir()
    with pidsafe.OwnedFd(os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)) as own:
        with pytest.raises(PermissionError) as ei:
            pidsafe.idmapped_bind(src, dst, own)
    assert isinstance(ei.value, pidsafe.MountError)
    assert "initial user namespace can never be used" in str(ei.value)
    # An fd that is not a user namespace at all.
    with pidsafe.OwnedFd(os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)) as mnt:
        with pytest.raises(pidsafe.MountError) as ei2:
            pidsafe.idmapped_bind(src, dst, mnt)
    assert ei2.value.errno == errno.EINVAL and "is not a user namespace" in str(ei2.value)


def test_idmapped_bind_without_cap_sys_admin_names_it(disk: Path) -> None:
    # Root without CAP_SYS_ADMIN (dropped from the bounding set, so exec
    # does not grant it back): the kernel says EPERM, pidsafe says why.
    (disk / "src").mkdir()
    (disk / "dst").mkdir()
    code = ("import sys, pidsafe\n"
            "with pidsafe.get_userns_fd('0:100000:65536', '0:100000:65536') as u:\n"
            "    try:\n"
            "        pidsafe.idmapped_bind(sys.argv[1], sys.argv[2], u)\n"
            "    except PermissionError as e:\n"
            "        print(type(e).__name__, e.step, '|', e.capability, '|',\n"
            "              isinstance(e, pidsafe.PrivilegeError), '|', e)\n")
    with pidsafe.spawn(["setpriv", "--bounding-set=-sys_admin", "--", sys.executable, "-c",
                        code, str(disk / "src"), str(disk / "dst")],
                       stdout=subprocess.PIPE) as p:
        out, _ = p.communicate(timeout=60)
    assert p.returncode == 0
    # Also a PrivilegeError: the caller lacks the capability (root's EPERM
    # with it would be a plain MountPermissionError).
    assert out.decode().startswith(f"MountPrivilegeError unable to clone mount tree of "
                                   f"{disk / 'src'} | CAP_SYS_ADMIN | True | ")
    assert "needs CAP_SYS_ADMIN in the user namespace that owns this process's mount " \
        "namespace" in out.decode()
    assert mountpoints_under(disk) == [str(disk)]


def test_idmapped_bind_missing_paths(disk: Path, userns: pidsafe.OwnedFd) -> None:
    (disk / "src").mkdir()
    with pytest.raises(FileNotFoundError) as ei:
        pidsafe.idmapped_bind(disk / "src", disk / "nowhere", userns)
    assert isinstance(ei.value, pidsafe.MountError)
    assert ei.value.step == f"unable to attach mount tree to {disk / 'nowhere'}"
    with pytest.raises(FileNotFoundError) as ei:
        pidsafe.idmapped_bind(disk / "nothing", disk / "src", userns)
    assert ei.value.step == f"unable to clone mount tree of {disk / 'nothing'}"
    with pytest.raises(TypeError):
        pidsafe.idmapped_bind(disk / "src", disk / "src", 3)  # type: ignore[arg-type]


def test_missing_kernel_features_say_which(disk: Path, rootfs: Path, userns: pidsafe.OwnedFd,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (disk / "src").mkdir()
    # idmapped_bind: the fused C call reports which step failed.
    for stage, feature in ((_sys.BIND_STAGE_OPEN_TREE, "mount_api"),
                           (_sys.BIND_STAGE_MOUNT_SETATTR, "mount_setattr_idmap"),
                           (_sys.BIND_STAGE_MOVE_MOUNT, "mount_api")):
        monkeypatch.setattr(_sys, "idmapped_bind", lambda *a, s=stage: (s, errno.ENOSYS))
        with pytest.raises(pidsafe.UnsupportedError) as ei:
            pidsafe.idmapped_bind(disk / "src", disk / "src", userns)
        assert ei.value.feature == feature and ei.value.errno == errno.ENOSYS

    # mount_all: step by step.  Probe the real kernel first: features() is
    # cached per process, and must not cache the fake ENOSYS below.
    pidsafe.features()

    def enosys(*args: object, **kwargs: object) -> int:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(_sys, "mount_setattr", enosys)
    with pytest.raises(pidsafe.UnsupportedError) as ei:
        pidsafe.mount_all([pidsafe.Mount("bind", str(disk / "src"), "/d", ["rbind", "ridmap"])],
                          rootfs, userns=userns)
    assert ei.value.feature == "mount_setattr_idmap"
    monkeypatch.setattr(_sys, "open_tree", enosys)
    with pytest.raises(pidsafe.UnsupportedError) as ei:
        pidsafe.mount_all([pidsafe.Mount("bind", str(disk / "src"), "/d", ["rbind"])], rootfs)
    assert ei.value.feature == "mount_api" and "open_tree" in str(ei.value)
    monkeypatch.setattr(_sys, "fsopen", enosys)
    with pytest.raises(pidsafe.UnsupportedError) as ei:
        pidsafe.mount_all([pidsafe.Mount("tmpfs", "tmpfs", "/t", [])], rootfs)
    assert ei.value.feature == "mount_api" and "fsopen" in str(ei.value)
    assert mountpoints_under(rootfs) == []


def test_mount_error_pickles() -> None:
    import pickle

    e = _mount.mount_error(errno.EPERM, "unable to x", "/p", "because")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is type(e) and isinstance(e2, PermissionError)
    assert (e2.errno, e2.step, e2.path, str(e2)) == (e.errno, e.step, e.path, str(e))


# --- mount_all / unmount_all --------------------------------------------------------

def test_mount_all_idmapped_bind_and_unmount_all(disk: Path, rootfs: Path) -> None:
    data = disk / "data"
    data.mkdir()
    (data / "f").write_text("x")
    (disk / "file").write_text("one file")
    mounts = [
        pidsafe.Mount("tmpfs", "tmpfs", "/run", ["size=1m", "mode=700", "nosuid", "nodev"]),
        pidsafe.Mount("bind", str(data), "/data", ["rbind", *IDMAP_OPTS]),
        pidsafe.Mount("bind", str(data), "/run/deep/ro-data", ["bind", "ro", "rprivate"]),
        pidsafe.Mount("none", str(disk / "file"), "/etc/hostname", ["bind", "ro"]),
        pidsafe.Mount("tmpfs", "tmpfs", "/shared", ["noexec", "shared", "strictatime"]),
    ]
    assert mounts[0].options == ("size=1m", "mode=700", "nosuid", "nodev")
    pidsafe.mount_all(mounts, rootfs)
    try:
        points = mountpoints_under(rootfs)
        assert points == [str(rootfs / p) for p in ("run", "data", "run/deep/ro-data",
                                                   "etc/hostname", "shared")]
        with open("/proc/self/mountinfo") as f:
            line = next(ln for ln in f if ln.split()[4] == str(rootfs / "shared"))
        assert " shared:" in line and "noexec" in line.split()[5]
        assert "relatime" not in line.split()[5]
        info = {m.mountpoint: m for m in _mount.mountinfo()}
        assert info[str(rootfs / "run")].fstype == "tmpfs"
        assert {"nosuid", "nodev"} <= set(info[str(rootfs / "run")].options)
        assert "idmapped" in info[str(rootfs / "data")].options
        assert owner(rootfs / "data" / "f") == (100000, 100000)
        assert "ro" in info[str(rootfs / "run/deep/ro-data")].options
        assert stat.S_ISREG(os.stat(rootfs / "etc/hostname").st_mode)
        assert (rootfs / "etc/hostname").read_text() == "one file"
        with pytest.raises(OSError) as ei:
            (rootfs / "run/deep/ro-data/new").write_text("x")
        assert ei.value.errno == errno.EROFS
    finally:
        pidsafe.unmount_all(mounts, rootfs)
    assert mountpoints_under(rootfs) == []
    pidsafe.unmount_all(mounts, rootfs)  # nothing mounted: nothing to do
    assert (data / "f").read_text() == "x"


def test_mount_all_uses_a_given_namespace_for_its_maps(disk: Path, rootfs: Path,
                                                       userns: pidsafe.OwnedFd,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import pidsafe.userns

    data = disk / "data"
    data.mkdir()
    (data / "f").write_text("x")

    def no_new_namespace(*args: object, **kwargs: object) -> pidsafe.OwnedFd:
        raise AssertionError("a namespace was made for maps that had one")

    monkeypatch.setattr(pidsafe.userns, "get_userns_fd", no_new_namespace)
    m = pidsafe.IDMap.parse(MAP)
    mounts = [pidsafe.Mount("bind", str(data), "/data", ["rbind", *IDMAP_OPTS])]
    done = pidsafe.mount_all(mounts, rootfs, namespaces={(m, m): userns})
    try:
        assert owner(rootfs / "data" / "f") == (100000, 100000)
        assert not userns.closed                # the caller's: left open
    finally:
        pidsafe.unmount_all(done)
    assert mountpoints_under(rootfs) == []


def test_mount_all_idmap_ridmap_use_container_userns(disk: Path, rootfs: Path,
                                                     userns: pidsafe.OwnedFd) -> None:
    src = disk / "src"
    (src / "sub").mkdir(parents=True)
    run_tool(["mount", "-t", "tmpfs", "pidsafe-test-sub", str(src / "sub")])
    try:
        mounts = [pidsafe.Mount("bind", str(src), "/top-only", ["rbind", "idmap"]),
                  pidsafe.Mount("bind", str(src), "/all", ["rbind", "ridmap"])]
        with pytest.raises(pidsafe.InvalidMountError, match="idmap needs uidmap="):
            pidsafe.mount_all(mounts, rootfs)
        pidsafe.mount_all(mounts, rootfs, userns=userns)
        try:
            opts = {m.mountpoint: m.options for m in _mount.mountinfo()}
            assert "idmapped" in opts[str(rootfs / "top-only")]
            assert "idmapped" not in opts[str(rootfs / "top-only/sub")]
            assert "idmapped" in opts[str(rootfs / "all")]
            assert "idmapped" in opts[str(rootfs / "all/sub")]
        finally:
            pidsafe.unmount_all(mounts, rootfs)
        assert mountpoints_under(rootfs) == []
    finally:
        umount(src / "sub")


def test_overlay_with_idmapped_lowers(disk: Path, rootfs: Path, private_tmp: Path,
                                      userns: pidsafe.OwnedFd) -> None:
    ovl = [pidsafe.Mount("overlay", "overlay", "/merged", [*layers(disk), *IDMAP_OPTS])]
    pidsafe.mount_all(ovl, rootfs)
    try:
        merged = rootfs / "merged"
        # Lowers idmapped: their uid 0 files read as 100000.
        assert owner(merged / "etc/passwd") == (100000, 100000)
        assert owner(merged / "bin/sh") == (100000, 100000)
        assert (merged / "etc/passwd").read_text().startswith("root:")
        # The temporary idmapped mount and its directory are gone already.
        assert os.listdir(private_tmp) == []
        assert not [m for m in _mount.mountinfo() if m.mountpoint.startswith(str(private_tmp))]
        # Writes go to the (not idmapped) upperdir; the ns root can write
        # to the idmapped lower's directories by copy-up.
        in_userns(userns, merged, ["touch", "etc/new"])
        assert owner(disk / "up/etc/new") == (100000, 100000)
        assert not (disk / "layers/l1/etc/new").exists()
    finally:
        pidsafe.unmount_all(ovl, rootfs)
    assert mountpoints_under(rootfs) == []
    assert (disk / "layers/l1/etc/passwd").exists() and (disk / "layers/l2/bin/sh").exists()


def test_overlay_with_idmapped_upper(disk: Path, rootfs: Path,
                                     userns: pidsafe.OwnedFd) -> None:
    """x-pidsafe.idmap-upper: what the namespace's root makes lands on disk as 0."""
    ovl = [pidsafe.Mount("overlay", "overlay", "/merged",
                         [*layers(disk), *IDMAP_OPTS, "x-pidsafe.idmap-upper"])]
    pidsafe.mount_all(ovl, rootfs)
    try:
        merged = rootfs / "merged"
        assert owner(merged / "etc/passwd") == (100000, 100000)
        in_userns(userns, merged, ["sh", "-c", "touch etc/new && echo x >> etc/passwd && "
                                               "rm bin/sh"])
        assert owner(merged / "etc/new") == (100000, 100000)
        # On disk the snapshot keeps the image's ids: a new file as 0, a
        # copied-up one with its owner kept.
        assert owner(disk / "up/etc/new") == (0, 0)
        assert owner(disk / "up/etc/passwd") == (0, 0)
        # overlayfs made the whiteout as its mounter: the id the map added for it.
        assert stat.S_ISCHR(os.lstat(disk / "up/bin/sh").st_mode)
        assert owner(disk / "up/bin/sh") == (65536, 65536)
    finally:
        pidsafe.unmount_all(ovl, rootfs)
    assert mountpoints_under(rootfs) == []
    # The lower layers are as they were.
    assert (disk / "layers/l1/etc/passwd").read_text() == "root:x:0:0::/root:/bin/sh\n"
    assert owner(disk / "layers/l1/etc/passwd") == (0, 0)
    assert (disk / "layers/l2/bin/sh").read_text() == "#!"


@pytest.mark.parametrize("text, want", [
    ("0:100000:65536", "0:100000:65536,65536:0:1"),
    ("0:0:1,1:100000:10", "0:0:1,1:100000:10"),            # root is mapped already
    ("0:1:4294967294", "0:1:4294967294,4294967294:0:1"),   # up to the last id
    ("1:1:4294967294", "0:0:1,1:1:4294967294"),            # the last id taken: a gap
    ("0:5:10,20:15:4294967275", "0:5:10,10:0:1,20:15:4294967275"),
])
def test_mounter_map(text: str, want: str) -> None:
    from pidsafe.mount._overlay import mounter_map

    assert str(mounter_map(pidsafe.IDMap.parse(text))) == want


def test_overlay_plain_and_kernel_message(disk: Path, rootfs: Path) -> None:
    opts = layers(disk)
    ovl = [pidsafe.Mount("overlay", "overlay", "/merged", opts)]
    pidsafe.mount_all(ovl, rootfs)
    try:
        assert owner(rootfs / "merged/etc/passwd") == (0, 0)
    finally:
        pidsafe.unmount_all(ovl, rootfs)
    bad = [pidsafe.Mount("overlay", "overlay", "/merged",
                         [f"lowerdir={disk}/no-such-layer", *opts[1:]])]
    with pytest.raises(pidsafe.MountError) as ei:
        pidsafe.mount_all(bad, rootfs)
    # The kernel's own explanation, read from the fs context's log.
    assert "no-such-layer" in str(ei.value) and "overlay" in str(ei.value)
    assert mountpoints_under(rootfs) == []
    # With idmapped lowers pidsafe opens the layers first.
    bad = [pidsafe.Mount("overlay", "overlay", "/merged",
                         [f"lowerdir={disk}/no-such-layer", *opts[1:], *IDMAP_OPTS])]
    with pytest.raises(FileNotFoundError, match=f"unable to open overlay layer "
                                                f"{disk}/no-such-layer"):
        pidsafe.mount_all(bad, rootfs)
    assert mountpoints_under(rootfs) == []


@pytest.mark.parametrize("failure", ["option", "target", "attach", "source"])
def test_mount_all_rolls_back(disk: Path, rootfs: Path, private_tmp: Path,
                              failure: str) -> None:
    data = disk / "data"
    data.mkdir()
    (rootfs / "a-file").write_text("x")
    third = {
        "option": pidsafe.Mount("tmpfs", "tmpfs", "/t", ["no-such-option=1"]),
        "target": pidsafe.Mount("bind", str(data), "/a-file/below", ["rbind"]),
        "attach": pidsafe.Mount("bind", str(data), "/a-file", ["rbind"]),  # dir on file
        "source": pidsafe.Mount("bind", str(disk / "missing"), "/m", ["rbind"]),
    }[failure]
    mounts = [
        pidsafe.Mount("bind", str(data), "/data", ["rbind", *IDMAP_OPTS]),
        pidsafe.Mount("overlay", "overlay", "/merged", [*layers(disk), *IDMAP_OPTS]),
        third,
    ]
    with pytest.raises(pidsafe.MountError) as ei:
        pidsafe.mount_all(mounts, rootfs)
    if failure == "target":
        assert ei.value.errno == errno.ENOTDIR, ei.value
    if failure == "attach":
        assert ei.value.errno == errno.EINVAL
        assert "a directory cannot be mounted on a file" in str(ei.value)
    assert "while making mount 2" in "\n".join(getattr(ei.value, "__notes__", []))
    assert mountpoints_under(rootfs) == []
    assert os.listdir(private_tmp) == []
    assert sorted(os.listdir(disk / "layers")) == ["l1", "l2"]


def test_rollback_reports_busy_mount_and_deletes_nothing(disk: Path, rootfs: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_unmount, "UNMOUNT_BACKOFF", (0.001, 0.002))
    mounts = [pidsafe.Mount("tmpfs", "tmpfs", "/busy", []),
              pidsafe.Mount("tmpfs", "tmpfs", "/t", ["no-such-option=1"])]
    real_attach = _mount.attach
    holder: List[int] = []

    def attach_then_hold(tree_fd: int, target_fd: int, target: str) -> None:
        real_attach(tree_fd, target_fd, target)
        if target.endswith("/busy"):  # someone starts using the new mount
            holder.append(os.open(os.path.join(target, "."), os.O_RDONLY | os.O_CLOEXEC))

    monkeypatch.setattr("pidsafe.mount._rootfs.attach", attach_then_hold)
    with pytest.raises(pidsafe.MountError) as ei:
        pidsafe.mount_all(mounts, rootfs)
    try:
        notes = "\n".join(getattr(ei.value, "__notes__", []))
        assert "rollback: [Errno 16] unable to unmount" in notes
        assert "still in use after 3 tries; left mounted, nothing deleted" in notes
        assert mountpoints_under(rootfs) == [str(rootfs / "busy")]
    finally:
        os.close(holder.pop())
        pidsafe.unmount_all(mounts, rootfs)
    assert mountpoints_under(rootfs) == []


def test_overlay_idmapped_layers_are_never_attached(disk: Path, rootfs: Path,
                                                    private_tmp: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Regression: the idmapped layers used to be one idmapped
    # mount of their common parent, attached under /tmp while the overlay
    # was built: a mapped host uid could read root-only files through it,
    # and any user holding a directory in it made its unmount fail for good.
    (disk / "layers/l1/etc").mkdir(parents=True)
    (disk / "layers/l2/etc").mkdir(parents=True)
    (disk / "layers/l1/etc/shadow").write_text("top\n")     # the upper layer wins
    (disk / "layers/l2/etc/shadow").write_text("bottom\n")
    os.chmod(disk / "layers/l1/etc/shadow", 0o600)
    (disk / "up").mkdir()
    (disk / "work").mkdir()
    ovl = [pidsafe.Mount("overlay", "overlay", "/merged", [
        f"lowerdir={disk}/layers/l1:{disk}/layers/l2", f"upperdir={disk}/up",
        f"workdir={disk}/work", *IDMAP_OPTS])]
    before = {m.mount_id for m in _mount.mountinfo()}
    # Other pytest workers mount under their own directories meanwhile.
    others = next(str(d) for d in disk.parents if d.name.startswith("pytest-of-"))

    def new_mounts() -> List[_mount.MountInfo]:
        return [m for m in _mount.mountinfo() if m.mount_id not in before and (
            m.mountpoint.startswith((str(disk), str(private_tmp)))
            or not m.mountpoint.startswith(others))]

    during: List[List[str]] = []
    held: List[int] = []
    real_fsconfig = _sys.fsconfig

    def hook(fd: int, cmd: int, *args: object, **kwargs: object) -> None:
        if cmd == _sys.FSCONFIG_CMD_CREATE:  # the layers are ready: look around
            new = new_mounts()
            during.append([m.mountpoint for m in new] + os.listdir(private_tmp))
            # Another user sitting in whatever was attached would keep it busy.
            held.extend(os.open(m.mountpoint, os.O_RDONLY | os.O_CLOEXEC) for m in new)
        real_fsconfig(fd, cmd, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_sys, "fsconfig", hook)
    try:
        mounted = pidsafe.mount_all(ovl, rootfs)
    finally:
        for fd in held:
            os.close(fd)
    try:
        # While the overlay was being built nothing was attached anywhere
        # (no path, for any user, led to the idmapped layers), and nothing
        # was made in the temp dir.
        assert during and all(seen == [] for seen in during)
        new = new_mounts()
        assert [m.mountpoint for m in new] == [str(rootfs / "merged")]
        assert os.listdir(private_tmp) == []
        merged = rootfs / "merged"
        assert (merged / "etc/shadow").read_text() == "top\n"
        assert owner(merged / "etc/shadow") == (100000, 100000)
    finally:
        pidsafe.unmount_all(mounted)
    assert mountpoints_under(rootfs) == []


def test_overlay_layer_fds_unsupported_says_so(disk: Path, rootfs: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe.mount import _overlay

    monkeypatch.setattr(_overlay, "_probed", ["probe: [Errno 22] Invalid argument"])
    ovl = [pidsafe.Mount("overlay", "overlay", "/merged", [*layers(disk), *IDMAP_OPTS])]
    with pytest.raises(pidsafe.UnsupportedError) as ei:
        pidsafe.mount_all(ovl, rootfs)
    assert ei.value.feature == "overlay_layer_fds"
    assert "fds of detached mounts" in str(ei.value)
    assert mountpoints_under(disk) == [str(disk)]


def _rename_mountpoint(old: Path, new: Path) -> None:
    """Rename a directory a mount sits on, as a process of another mount
    namespace can (in ours the kernel refuses with EBUSY): a private copy
    of our namespace, without the mount, does it."""
    run_tool(["unshare", "--mount", "--propagation", "private", "sh", "-c",
              'umount -R "$1" && mv "$1" "$2" && mkdir "$1"', "sh", str(old), str(new)])


def test_unmount_all_finds_mounts_by_identity_after_renames(disk: Path, rootfs: Path) -> None:
    # Regression: unmount_all() re-resolved targets by path and
    # reported success with the mounts still attached once something in the
    # rootfs had renamed a directory on their path.
    data = disk / "data"
    data.mkdir()
    mounts = [pidsafe.Mount("tmpfs", "tmpfs", "/a/b/t", []),
              pidsafe.Mount("tmpfs", "tmpfs", "/a/b/t/inner", []),
              pidsafe.Mount("bind", str(data), "/c/d", ["rbind"])]
    mounted = pidsafe.mount_all(mounts, rootfs)
    assert [(r.index, r.target) for r in mounted] == [(0, "/a/b/t"), (1, "/a/b/t/inner"),
                                                      (2, "/c/d")]
    os.rename(rootfs / "a", rootfs / "x")                 # a directory on the path
    _rename_mountpoint(rootfs / "c/d", rootfs / "c/e")    # the mount point itself
    moved = [str(rootfs / p) for p in ("x/b/t", "x/b/t/inner", "c/e")]
    assert mountpoints_under(rootfs) == moved
    # By path: the targets are gone or empty, but pidsafe must not say "done".
    with pytest.raises(pidsafe.MountError) as ei:
        pidsafe.unmount_all(mounts, rootfs)
    assert ei.value.errno == errno.ENOENT
    assert ei.value.step == f"unable to unmount {rootfs}/c/d"
    assert "unmount by identity" in str(ei.value)
    notes = "\n".join(getattr(ei.value, "__notes__", []))
    assert f"remains at {rootfs}/x/b/t" in notes
    assert mountpoints_under(rootfs) == moved             # left in place, nothing deleted
    # By identity (here as another process would, from stored data): found
    # where they are now.
    stored = json.loads(json.dumps(mounted.to_dict()))
    assert pidsafe.Mounted.from_dict(stored) == mounted
    pidsafe.unmount_all(pidsafe.Mounted.from_dict(stored))
    assert mountpoints_under(rootfs) == []
    pidsafe.unmount_all(mounted)                          # gone already: nothing to do
    pidsafe.unmount_all(mounts, rootfs)                   # by path too, now
    assert (data / ".").is_dir()


def test_unmount_by_identity_reads_the_mount_table_once_per_pass(
        disk: Path, rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One read finds the mount and what is under it (its submounts go first),
    # one more proves it gone: a container's delete pays for two, not three.
    data = disk / "data"
    (data / "sub").mkdir(parents=True)
    run_tool(["mount", "-t", "tmpfs", "pidsafe-test-sub", str(data / "sub")])
    try:
        mounted = pidsafe.mount_all([pidsafe.Mount("bind", str(data), "/d", ["rbind"])], rootfs)
    finally:
        run_tool(["umount", str(data / "sub")])
    assert mountpoints_under(rootfs) == [str(rootfs / "d"), str(rootfs / "d/sub")]
    reads: List[int] = []
    real = _unmount.mountinfo

    def counted(fresh: bool = False) -> List[_mount.MountInfo]:
        reads.append(1)
        return real(fresh=fresh)

    monkeypatch.setattr(_unmount, "mountinfo", counted)
    pidsafe.unmount_all(mounted)
    assert mountpoints_under(rootfs) == []
    assert len(reads) == 2


def test_unmount_all_by_identity_fails_loudly(disk: Path, rootfs: Path) -> None:
    mounts = [pidsafe.Mount("tmpfs", "tmpfs", "/t", [])]
    mounted = pidsafe.mount_all(mounts, rootfs)
    cover = rootfs / "t"
    run_tool(["mount", "-t", "tmpfs", "pidsafe-test-cover", str(cover)])
    try:
        with pytest.raises(pidsafe.MountError, match="covers the one pidsafe made"):
            pidsafe.unmount_all(mounted)
    finally:
        umount(cover)
    # Moved out of the rootfs (a directory on its path renamed to a place
    # outside): found, but not pidsafe's to unmount there: it says so.
    moved = pidsafe.mount_all([pidsafe.Mount("tmpfs", "tmpfs", "/m/t", [])], rootfs)
    os.rename(rootfs / "m", disk / "outside")
    try:
        with pytest.raises(pidsafe.MountError) as ei:
            pidsafe.unmount_all(moved)
        assert ei.value.errno == errno.EXDEV
        assert f"(now at {disk}/outside/t)" in str(ei.value)
        assert "no longer beneath the rootfs" in str(ei.value)
    finally:
        umount(disk / "outside/t")
    # Someone else unmounts ours, and mounts something else there, which
    # may well get the same (reused) mount id: it is not ours to unmount.
    umount(cover)
    (disk / "other").mkdir()
    run_tool(["mount", "--bind", str(disk / "other"), str(cover)])
    try:
        pidsafe.unmount_all(mounted)
        assert mountpoints_under(rootfs) == [str(cover)]
    finally:
        umount(cover)


def test_bad_names_are_invalid_up_front(disk: Path, rootfs: Path) -> None:
    # Regression: a non-UTF-8 type or option name failed midway
    # (UnicodeEncodeError after earlier mounts), a component over NAME_MAX
    # raised a bare OSError.
    good = pidsafe.Mount("tmpfs", "tmpfs", "/first", [])
    for bad, message in [
            (pidsafe.Mount("tmp\udcfffs", "tmpfs", "/t", []), "is not valid UTF-8"),
            (pidsafe.Mount("tmpfs", "tmpfs", "/t", ["mo\udcffde=755"]), "name is not valid UTF-8"),
            (pidsafe.Mount("tmpfs", "tmpfs", "/t", ["\udcff"]), "name is not valid UTF-8"),
            (pidsafe.Mount("tmpfs", "tmpfs", "/d/" + "x" * 256, []), r"over NAME_MAX \(255\)")]:
        with pytest.raises(pidsafe.InvalidMountError, match=message):
            pidsafe.mount_all([good, bad], rootfs)
        assert mountpoints_under(rootfs) == [] and not (rootfs / "first").exists()
    # Non-UTF-8 option values and paths are fine: they go to the kernel as bytes.
    odd = os.fsdecode(b"/caf\xe9")
    pidsafe.unmount_all(pidsafe.mount_all([pidsafe.Mount("tmpfs", "tmpfs", odd, [])], rootfs))


def test_name_too_long_inside_the_rootfs_is_a_mount_error(disk: Path, rootfs: Path) -> None:
    (rootfs / "etc/long").symlink_to("/" + "y" * 300 + "/z")
    mounts = [pidsafe.Mount("tmpfs", "tmpfs", "/first", []),
              pidsafe.Mount("tmpfs", "tmpfs", "/etc/long/q", [])]
    with pytest.raises(pidsafe.MountError) as ei:
        pidsafe.mount_all(mounts, rootfs)
    assert ei.value.errno == errno.ENAMETOOLONG
    assert ei.value.step == f"unable to resolve {rootfs}/etc/long/q"
    assert mountpoints_under(rootfs) == []


def test_targets_cannot_escape_the_rootfs(disk: Path, rootfs: Path) -> None:
    host = disk / "hostdir"          # a directory on the "host", outside rootfs
    host.mkdir()
    (rootfs / "etc/evil").symlink_to(host)                      # absolute
    (rootfs / "etc/up").symlink_to("../../../../../../../..")   # relative, climbs out
    (rootfs / "etc/dangling").symlink_to(str(host) + "/not-yet")
    (rootfs / "etc/loop").symlink_to("loop")
    mounts = [pidsafe.Mount("tmpfs", "tmpfs", "/etc/evil", []),
              pidsafe.Mount("tmpfs", "tmpfs", "/etc/up/x", []),
              pidsafe.Mount("tmpfs", "tmpfs", "/etc/dangling/y", []),
              pidsafe.Mount("tmpfs", "tmpfs", "etc/../../../z/", []),
              pidsafe.Mount("tmpfs", "tmpfs", "/etc/up/w/v/..", [])]
    pidsafe.mount_all(mounts, rootfs)
    try:
        inside = str(rootfs) + str(host)
        assert mountpoints_under(rootfs) == [inside, str(rootfs / "x"),
                                             inside + "/not-yet/y", str(rootfs / "z"),
                                             str(rootfs / "w")]
        assert mountpoints_under(host) == [] and os.listdir(host) == []
    finally:
        pidsafe.unmount_all(mounts, rootfs)
    assert mountpoints_under(rootfs) == []
    with pytest.raises(pidsafe.MountError) as ei:
        pidsafe.mount_all([pidsafe.Mount("tmpfs", "tmpfs", "/etc/loop/q", [])], rootfs)
    assert ei.value.errno == errno.ELOOP
    with pytest.raises(pidsafe.MountError, match="resolves to the rootfs itself"):
        pidsafe.mount_all([pidsafe.Mount("tmpfs", "tmpfs", "/etc/up", [])], rootfs)
    assert mountpoints_under(disk) == [str(disk)]


def test_existing_target_behind_symlink_stays_inside(disk: Path, rootfs: Path,
                                                     userns: pidsafe.OwnedFd) -> None:
    # Everything exists, so the two-lookup path (openat2 RESOLVE_IN_ROOT)
    # resolves it; the host has a directory of the same name as a decoy.
    host = disk / "hostdir"
    (host / "sub").mkdir(parents=True)
    (rootfs / str(host).lstrip("/") / "sub").mkdir(parents=True)
    (rootfs / "etc/evil").symlink_to(host)
    (rootfs / "etc/rel").symlink_to("../../.." + str(host))
    data = disk / "data"
    data.mkdir()
    mounts = [pidsafe.Mount("bind", str(data), "/etc/evil/sub", ["rbind", *IDMAP_OPTS]),
              pidsafe.Mount("tmpfs", "tmpfs", "/etc/rel/sub", [])]
    pidsafe.mount_all(mounts, rootfs)
    try:
        inside = str(rootfs) + str(host) + "/sub"
        assert mountpoints_under(rootfs) == [inside, inside]
        assert mountpoints_under(host) == []
    finally:
        pidsafe.unmount_all(mounts, rootfs)
    assert mountpoints_under(rootfs) == []


@pytest.mark.parametrize("options, message", [
    ([f"uidmap={MAP}"], "uidmap= is given without gidmap="),
    ([f"gidmap={MAP}"], "gidmap= is given without uidmap="),
    (["uidmap=0:100000", f"gidmap={MAP}"], "option 'uidmap=0:100000': "),
    (["uidmap=0:100000:0", f"gidmap={MAP}"], "size is 0"),
    ([f"uidmap={MAP}", "gidmap=x:1:1"], "option 'gidmap=x:1:1'"),
    (["idmap", "ridmap", *IDMAP_OPTS], "one of idmap and ridmap"),
    (["size=1m"], "option 'size=1m' does not apply to a bind mount"),
])
def test_bad_input_leaves_nothing_done(disk: Path, rootfs: Path, options: List[str],
                                       message: str) -> None:
    good = pidsafe.Mount("tmpfs", "tmpfs", "/first", [])
    bad = pidsafe.Mount("bind", str(disk), "/second", ["rbind", *options])
    before = sorted(os.listdir(rootfs))
    with pytest.raises(pidsafe.InvalidMountError) as ei:
        pidsafe.mount_all([good, bad], rootfs)
    assert isinstance(ei.value, ValueError)
    assert message in str(ei.value)
    assert str(ei.value).startswith(f"mount 1 (bind {str(disk)!r} on '/second'): ")
    assert ei.value.index == 1 and ei.value.mount is bad
    assert sorted(os.listdir(rootfs)) == before   # not even a mount point made
    assert mountpoints_under(rootfs) == []


@pytest.mark.parametrize("mount, message", [
    (pidsafe.Mount("overlay", "overlay", "/o", ["upperdir=/u", "workdir=/w"]),
     "an overlay needs a lowerdir= option"),
    (pidsafe.Mount("overlay", "overlay", "/o", ["lowerdir=/l", "upperdir=/u"]),
     "upperdir= and workdir= go together"),
    (pidsafe.Mount("overlay", "overlay", "/o", ["lowerdir=rel:/l"]), "absolute paths"),
    (pidsafe.Mount("overlay", "overlay", "/o", ["lowerdir=/l", "idmap"]), "idmap applies to bind"),
    (pidsafe.Mount("overlay", "overlay", "/o", ["lowerdir=/l", "upperdir=/u", "workdir=/w",
                                                 "x-pidsafe.idmap-upper"]),
     "x-pidsafe.idmap-upper needs uidmap=/gidmap="),
    (pidsafe.Mount("overlay", "overlay", "/o", ["lowerdir=/l", *IDMAP_OPTS,
                                                 "x-pidsafe.idmap-upper"]),
     "x-pidsafe.idmap-upper needs uidmap=/gidmap= and an upperdir="),
    (pidsafe.Mount("tmpfs", "tmpfs", "/t", IDMAP_OPTS), "not to 'tmpfs'"),
    (pidsafe.Mount("tmpfs", "tmpfs", "/", []), "is the rootfs itself"),
    (pidsafe.Mount("tmpfs", "tmpfs", "", []), "target is empty"),
    (pidsafe.Mount("", "x", "/t", []), "type is empty"),
    (pidsafe.Mount("bind", "", "/t", []), "needs a source"),
])
def test_bad_specs(rootfs: Path, mount: pidsafe.Mount, message: str) -> None:
    with pytest.raises(pidsafe.InvalidMountError, match=message):
        pidsafe.mount_all([mount], rootfs)
    assert mountpoints_under(rootfs) == []


def test_mount_spec_types() -> None:
    m = pidsafe.Mount("bind", "/a", "/b", ["rbind"])
    assert m == pidsafe.Mount("bind", "/a", "/b", ("rbind",)) and hash(m)
    with pytest.raises(TypeError):
        pidsafe.Mount("bind", "/a", "/b", "rbind")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pidsafe.Mount("bind", "/a", b"/b", [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        pidsafe.mount_all(["not a mount"], "/")  # type: ignore[list-item]


def test_cli_mount(disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = disk / "src", disk / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "f").write_text("x")
    assert cli_main(["mount", "--uidmap", MAP, "--gidmap", MAP, "--readonly",
                     str(src), str(dst)]) == 0
    try:
        assert owner(dst / "f") == (100000, 100000)
        with pytest.raises(OSError) as ei:
            (dst / "g").write_text("x")
        assert ei.value.errno == errno.EROFS
    finally:
        umount(dst)
    assert cli_main(["mount", "--uidmap", MAP, "--gidmap", "0:1", str(src), str(dst)]) == 2
    assert "gidmap" in capsys.readouterr().err
    assert cli_main(["mount", "--uidmap", MAP, "--gidmap", MAP, str(src),
                     str(disk / "none")]) == 1
    assert "unable to attach mount tree to" in capsys.readouterr().err



def test_unmount_all_finds_a_mount_renamed_after_the_table_was_last_read(
        disk: Path, rootfs: Path) -> None:
    """A directory on the way to a mount renamed after this process last
    read its mount table (any reader: another container's create): a rename
    is no change the kernel signals, so the table read last still shows the
    old path.  unmount_all by identity reads it afresh once the mount is
    not where it said, and finds it (it failed with "kept moving").  In a
    private copy of our mount namespace: in ours, another test's mount
    marks the table changed and hides the stale read."""
    script = """
import os, sys
import pidsafe
from pidsafe.mount import mountinfo
rootfs = sys.argv[1]
mounted = pidsafe.mount_all([pidsafe.Mount("tmpfs", "tmpfs", "/a/b/t", [])], rootfs)
assert [m.mountpoint for m in mountinfo() if m.mountpoint.startswith(rootfs + "/")] == [
    rootfs + "/a/b/t"]   # this process's table, read now
os.rename(rootfs + "/a", rootfs + "/x")
pidsafe.unmount_all(mounted)
with open("/proc/self/mountinfo") as f:
    left = [line.split()[4] for line in f if line.split()[4].startswith(rootfs + "/")]
assert left == [], left
"""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", script, str(rootfs)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert mountpoints_under(rootfs) == []
