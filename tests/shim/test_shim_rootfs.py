"""The rootfs containerd hands over, mounted by the shim; idmapped for a user namespace."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from pidsafe.shim import messages as m
from pidsafe.shim._rootfs import rootfs_mounts, userns_maps

from shimhelp import Shim, fifos, read_all, shim  # noqa: F401 - fixtures

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def userns(doc: Dict[str, Any]) -> None:
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["uidMappings"] = MAP
    doc["linux"]["gidMappings"] = MAP
    doc["root"]["readonly"] = False


def test_maps_from_the_config() -> None:
    doc: Dict[str, Any] = {"linux": {"namespaces": [{"type": "pid"}]}}
    assert userns_maps(doc) is None
    userns(dict(doc, root={}))
    assert userns_maps(doc) == ("0:100000:65536", "0:100000:65536")
    doc["linux"]["namespaces"][-1]["path"] = "/proc/1/ns/user"   # joined: not ours to map
    assert userns_maps(doc) is None
    assert userns_maps({"linux": "bad"}) is None and userns_maps(None) is None


def test_mount_options(tmp_path: Path) -> None:
    doc: Dict[str, Any] = {"linux": {"namespaces": []}, "root": {}}
    userns(doc)
    (tmp_path / "l").mkdir()
    ovl = m.Mount(type="overlay", source="overlay",
                  options=["index=off", f"lowerdir={tmp_path}/l", "upperdir=/u", "workdir=/w"])
    bind = m.Mount(type="bind", source=str(tmp_path / "l"), options=["rbind", "rw"])
    got = rootfs_mounts([ovl, bind], doc)
    assert got[0].options[-3:] == ("uidmap=0:100000:65536", "gidmap=0:100000:65536",
                                   "x-pidsafe.idmap-upper")
    assert got[1].options[-2:] == ("uidmap=0:100000:65536", "gidmap=0:100000:65536")
    assert [g.target for g in got] == ["", ""]
    # Without a user namespace, as given.
    assert [g.options for g in rootfs_mounts([ovl], {})] == [tuple(ovl.options)]
    # A snapshot containerd chowned already for the map (ctr --uidmap, no --remap-labels).
    os.chown(tmp_path / "l", 100000, 100000)
    assert rootfs_mounts([ovl], doc)[0].options == tuple(ovl.options)


@pytest.mark.root
@pytest.mark.parametrize("kind", ["overlay", "bind"])
def test_user_namespace_on_an_idmapped_rootfs(shim: Shim, make_bundle: Any, fifos: Any,
                                              busybox_rootfs: Path, tmp_path: Path,
                                              kind: str) -> None:
    snap = tmp_path / "snap"
    lower = snap / "lower"
    shutil.copytree(busybox_rootfs, lower, symlinks=True)
    (lower / "etc/owned-by-0").write_text("image\n")
    if kind == "overlay":
        (snap / "fs").mkdir()
        (snap / "work").mkdir()
        mount = m.Mount(type="overlay", source="overlay",
                        options=["index=off", f"workdir={snap}/work", f"upperdir={snap}/fs",
                                 f"lowerdir={lower}"])
    else:
        mount = m.Mount(type="bind", source=str(lower), options=["rbind", "rw"])
    bundle = make_bundle(["sh", "-c", "stat -c %u:%g /etc/owned-by-0; id -u; "
                                      "touch /etc/made-inside; stat -c %u /etc/made-inside"],
                         userns)
    shutil.rmtree(bundle / "rootfs")
    (bundle / "rootfs").mkdir()
    io = fifos("u")
    shim.run("u", bundle, rootfs=[mount], **io.io())
    assert shim.wait("u") == 0
    assert read_all(io.out) == b"0:0\n0\n0\n"
    shim.delete("u")
    with open("/proc/self/mountinfo") as f:
        assert not any(line.split()[4] == str(bundle / "rootfs") for line in f)
    made = (snap / "fs" if kind == "overlay" else lower) / "etc/made-inside"
    assert (os.stat(made).st_uid, os.stat(made).st_gid) == (0, 0)   # never shifted
    st = os.stat(lower / "etc/owned-by-0")
    assert (st.st_uid, st.st_gid) == (0, 0)
    if kind == "overlay":
        assert not (lower / "etc/made-inside").exists()          # the lower is unchanged
