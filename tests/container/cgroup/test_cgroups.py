"""Cgroups for containers: paths, limits on v1 and v2, processes, kill, freeze, delete.

Root tests make real cgroups on this machine (hybrid: v1 controllers plus
a v2 mount) under a test-owned, uniquely named parent, and check that none
of its directories is left in any hierarchy.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import select
import signal
import uuid
from subprocess import PIPE
from typing import Dict, Iterator, List, Tuple

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.container import CpuLimits, DeviceRule, MemoryLimits, Resources
from pidsafe.container.cgroup._layout import (CgroupLayout, Hierarchy, cgroup_path_in,
                                              check_cgroups_path)
from pidsafe.container.cgroup._devices_bpf import effective, program
from pidsafe.container.cgroup._resources import Write, cpu_weight, device_filter_on_v2, plan
from pidsafe.container.cgroup._cgroup import Cgroup
from pidsafe.container.cgroup._make import enable_v2

from conftest import open_fds, started_cat
from faults import Faults, Interrupt

FULL = Resources(
    memory=MemoryLimits(limit=64 << 20, reservation=32 << 20, swap=128 << 20, swappiness=10,
                        disable_oom_killer=True),
    pids_limit=50,
    cpu=CpuLimits(shares=512, quota=50000, period=100000, burst=1000, cpus="0", mems="0",
                  idle=0),
    devices=(DeviceRule(False), DeviceRule(True, "c", 1, 3, "rwm"),
             DeviceRule(True, "c", 5, None, "r")))


# --- path resolution and planning (no cgroup is touched) ----------------------------

def test_cgroups_path_default_absolute_and_relative() -> None:
    assert check_cgroups_path(None, "c1") == "/pidsafe/c1"
    assert check_cgroups_path("", "c1", "/k8s") == "/k8s/c1"
    assert check_cgroups_path("/default/c1", "c1") == "/default/c1"
    assert check_cgroups_path("a/b", "c1") == "a/b"
    h = Hierarchy("memory", frozenset({"memory"}), "/sys/fs/cgroup/memory", "/", "/user/1")
    assert cgroup_path_in(h, "/default/c1") == "/default/c1"
    assert cgroup_path_in(h, "a/b") == "/user/1/a/b"
    assert h.directory("/user/1/a/b") == "/sys/fs/cgroup/memory/user/1/a/b"
    sub = h.replace(root="/user")        # a sub-tree mounted (as in a cgroup namespace)
    assert sub.directory("/user/1/a") == "/sys/fs/cgroup/memory/1/a"
    with pytest.raises(pidsafe.ConfigError, match="outside"):
        sub.directory("/other/a")


@pytest.mark.parametrize("bad", ["/", "/a/../b", "../a", "a/..", "/a//b", "/a/", "./a",
                                 "/a/./b", "a\0b"])
def test_bad_cgroups_path_is_refused_by_its_field(bad: str) -> None:
    with pytest.raises(pidsafe.ConfigError) as info:
        check_cgroups_path(bad, "c1")
    assert info.value.json_path == "linux.cgroupsPath"


def test_systemd_slice_form_is_refused_as_unsupported() -> None:
    with pytest.raises(pidsafe.UnsupportedConfigError, match="systemd"):
        check_cgroups_path("system.slice:cri-containerd:c1", "c1")


def test_layout_matches_proc_self_cgroup() -> None:
    layout = CgroupLayout.detect()
    with open("/proc/self/cgroup") as f:
        lines = [line.strip().split(":", 2) for line in f]
    v1_keys = {key for hid, key, _ in lines if hid != "0"}
    assert {h.key for h in layout.v1} == v1_keys
    for h in layout.v1:
        assert os.path.exists(os.path.join(h.mountpoint, "cgroup.procs"))
        assert h.own == next(p for _, key, p in lines if key == h.key)
    with open("/proc/self/mountinfo") as f:
        has_v2 = any(" - cgroup2 " in line for line in f)
    assert (layout.v2 is not None) == has_v2


def _fake_layout(tmp_path: pathlib.Path, mounts: List[str], cgroups: List[str],
                 v2_controllers: str = "") -> CgroupLayout:
    (tmp_path / "cgroup.controllers").write_text(v2_controllers + "\n")
    (tmp_path / "mountinfo").write_text("".join(
        f"{30 + i} 23 0:{40 + i} {line}\n" for i, line in enumerate(mounts)))
    (tmp_path / "cgroup").write_text("".join(line + "\n" for line in cgroups))
    return CgroupLayout.detect(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))


def test_a_mount_point_that_is_not_utf8_does_not_stop_the_layout(
        tmp_path: pathlib.Path) -> None:
    """One mount point with a name that is not UTF-8, anywhere, made every
    cgroup operation (pidsafe-runc delete, update, create) fail with
    "'utf-8' codec can't decode byte 0xe9"."""
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    (tmp_path / "mountinfo").write_bytes(
        b"30 23 0:40 / /tmp/caf\xe9 rw - tmpfs tmpfs rw\n"
        + f"31 23 0:41 / {tmp_path} rw - cgroup2 cgroup2 rw\n".encode())
    (tmp_path / "cgroup").write_bytes(b"0::/caf\xe9/c1\n")
    layout = CgroupLayout.detect(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert layout.v2 is not None and layout.v2.mountpoint == str(tmp_path)
    assert os.fsencode(layout.v2.own) == b"/caf\xe9/c1"   # the same bytes, back in os


def test_a_read_only_cgroup2_mount_is_not_the_v2_hierarchy(tmp_path: pathlib.Path) -> None:
    """A mount namespace without the host's v2 mount (hybrid, unified
    unmounted) still sees other containers' read-only views of it: creating a
    container's cgroup there failed with EROFS."""
    ro_view = f"/ {tmp_path} ro,nosuid - cgroup2 cgroup2 rw"
    layout = _fake_layout(tmp_path, [ro_view, "/ /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids"],
                          ["1:pids:/", "0::/"], "hugetlb")
    assert layout.v2 is None and [h.key for h in layout.v1] == ["pids"]
    rw = f"/ {tmp_path} rw,nosuid - cgroup2 cgroup2 rw"
    layout = _fake_layout(tmp_path, [ro_view, rw], ["0::/"], "hugetlb")
    assert layout.v2 is not None and layout.v2.controllers == {"hugetlb"}


def test_layout_of_a_pure_v2_machine(tmp_path: pathlib.Path) -> None:
    layout = _fake_layout(
        tmp_path, [f"/ {tmp_path} rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
                   "/ /proc rw - proc proc rw"],
        ["0::/user.slice/session-1.scope"], "cpuset cpu io memory pids")
    assert layout.v1 == ()
    assert layout.v2 == Hierarchy("", frozenset({"cpuset", "cpu", "io", "memory", "pids"}),
                                  str(tmp_path), "/", "/user.slice/session-1.scope")
    assert layout.location("memory") is layout.v2 and layout.location("hugetlb") is None
    h = layout.v2
    assert h.directory(cgroup_path_in(h, "ctr/c1")) == (
        f"{tmp_path}/user.slice/session-1.scope/ctr/c1")
    res = Resources(memory=MemoryLimits(limit=1 << 20), devices=(DeviceRule(False),))
    assert _files(plan(layout, res)) == [("memory.max", str(1 << 20))]
    assert device_filter_on_v2(layout, res)


def test_layout_with_joint_v1_controllers_and_a_mounted_subtree(tmp_path: pathlib.Path) -> None:
    layout = _fake_layout(
        tmp_path, ["/ /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct",
                   "/kubepods /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory",
                   "/ /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio",
                   "/ /sys/fs/cgroup/sys\\040temd rw - cgroup cgroup rw,xattr,name=systemd"],
        ["12:memory:/kubepods/pod1", "11:cpu,cpuacct:/", "4:net_cls,net_prio:/",
         "1:name=systemd:/init.scope", "0::/init.scope"])
    assert [h.key for h in layout.v1] == ["memory", "cpu,cpuacct", "net_cls,net_prio",
                                          "name=systemd"]
    assert layout.v2 is None                      # no cgroup2 mount: v1 only
    assert layout.v1[-1].mountpoint == "/sys/fs/cgroup/sys temd"    # octal escape undone
    # What mounting each again takes (a container's cgroup mount): no rw, ro.
    assert [h.options for h in layout.v1] == [("memory",), ("cpu", "cpuacct"),
                                              ("net_cls", "net_prio"), ("xattr", "name=systemd")]
    cpu = layout.location("cpuacct")
    assert cpu is not None and cpu.key == "cpu,cpuacct"
    mem = layout.v1_for("memory")
    assert mem is not None and mem.root == "/kubepods"
    assert mem.directory(cgroup_path_in(mem, "c1")) == "/sys/fs/cgroup/memory/pod1/c1"
    # Absolute: below the mounted root, as runc joins it to the mount point.
    assert mem.directory(cgroup_path_in(mem, "/default/c1")) == "/sys/fs/cgroup/memory/default/c1"


def _v2_only() -> CgroupLayout:
    """A pure-v2 machine's layout (no cgroup is touched by plan())."""
    return CgroupLayout((), Hierarchy("", frozenset({"memory", "pids", "cpu", "cpuset"}),
                                      "/sys/fs/cgroup", "/", "/"))


def _files(writes: List[Write]) -> List[tuple[str, str]]:
    return [(w.file, w.value) for w in writes]


def test_plan_on_v2_converts_as_runc() -> None:
    res = FULL.replace(devices=(), memory=FULL.memory.replace(swappiness=None,
                                                              disable_oom_killer=False))
    assert _files(plan(_v2_only(), res)) == [
        ("memory.max", str(64 << 20)), ("memory.swap.max", str(64 << 20)),
        ("memory.low", str(32 << 20)), ("pids.max", "50"),
        ("cpu.weight", str(cpu_weight(512))), ("cpu.max", "50000 100000"),
        ("cpu.max.burst", "1000"), ("cpu.idle", "0"), ("cpuset.cpus", "0"),
        ("cpuset.mems", "0")]
    assert cpu_weight(2) == 1 and cpu_weight(262144) == 10000 and cpu_weight(1024) == 39
    unlimited = Resources(memory=MemoryLimits(limit=-1), pids_limit=-1,
                          cpu=CpuLimits(quota=-1, period=50000))
    assert _files(plan(_v2_only(), unlimited)) == [
        ("memory.max", "max"), ("memory.swap.max", "max"), ("pids.max", "max"),
        ("cpu.max", "max 50000")]


@pytest.mark.parametrize("res, field", [
    (Resources(memory=MemoryLimits(swappiness=0)), "linux.resources.memory.swappiness"),
    (Resources(memory=MemoryLimits(disable_oom_killer=True)),
     "linux.resources.memory.disableOOMKiller"),
])
def test_what_v2_cannot_do_is_refused_by_its_field(res: Resources, field: str) -> None:
    with pytest.raises(pidsafe.UnsupportedConfigError) as info:
        plan(_v2_only(), res)
    assert info.value.json_path == field


def test_missing_controller_and_bad_swap_are_refused() -> None:
    with pytest.raises(pidsafe.UnsupportedConfigError) as info:
        plan(CgroupLayout((), None), Resources(pids_limit=5))
    assert info.value.json_path == "linux.resources.pids"
    with pytest.raises(pidsafe.UnsupportedConfigError) as info:
        plan(CgroupLayout((), None), Resources(devices=(DeviceRule(False),)))
    assert info.value.json_path == "linux.resources.devices"
    with pytest.raises(pidsafe.ConfigError) as info2:
        plan(_v2_only(), Resources(memory=MemoryLimits(limit=100 << 20, swap=50 << 20)))
    assert info2.value.json_path == "linux.resources.memory.swap"


def test_device_rules_on_v2_become_an_ebpf_program() -> None:
    res = Resources(devices=(DeviceRule(False),))
    assert plan(_v2_only(), res) == [] and device_filter_on_v2(_v2_only(), res)
    assert effective([DeviceRule(False), DeviceRule(True, "c", 1, 3, "rw"),
                      DeviceRule(True, "c", 1, 3, "m"), DeviceRule(False, "c", 1, 3, "r"),
                      DeviceRule(True, "b", 8, None, "r")]) == (
        False, [("c", 1, 3, 0b101), ("b", 8, None, 0b010)])
    # Rules before the last rule for every device no longer matter (as on v1).
    deny_all = program([DeviceRule(False)])
    assert program([DeviceRule(True, "c", 1, 3), DeviceRule(False)]) == deny_all
    assert deny_all[-2:] == [(0xB7, 0, 0, 0, 0), (0x95, 0, 0, 0, 0)]      # r0 = 0; exit
    assert program([])[-2][4] == 1                                     # default: allow
    # A number no device can have never matches: no block for it.
    assert program([DeviceRule(False), DeviceRule(True, "c", 1 << 31, 0)]) == deny_all


def test_plan_on_v1_raises_memsw_first_when_the_limit_would_pass_it() -> None:
    v1 = CgroupLayout((Hierarchy("memory", frozenset({"memory"}), "/m", "/", "/"),), None)
    res = Resources(memory=MemoryLimits(limit=256 << 20, swap=512 << 20))
    assert [w.file for w in plan(v1, res)] == ["memory.limit_in_bytes",
                                               "memory.memsw.limit_in_bytes"]
    assert [w.file for w in plan(v1, res, memsw_now=128 << 20)] == [
        "memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]
    assert [w.file for w in plan(v1, res, memsw_now=1 << 40)] == [
        "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]


# --- real cgroups (root) -----------------------------------------------------------

def _leftovers(layout: CgroupLayout, name: str) -> List[str]:
    """Directories named ``name`` at the top of, or below our own cgroup in, any hierarchy."""
    out = set()
    for h in (*layout.v1, *([layout.v2] if layout.v2 else [])):
        for p in ("/" + name, name):
            d = h.directory(cgroup_path_in(h, p))
            if os.path.exists(d):
                out.add(d)
    return sorted(out)


def _force_remove(d: str) -> None:
    with os.scandir(d) as it:
        subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    for sub in subdirs:
        _force_remove(sub)
    os.rmdir(d)


@pytest.fixture
def layout() -> CgroupLayout:
    return CgroupLayout.detect()


@pytest.fixture
def name(layout: CgroupLayout) -> Iterator[str]:
    """A unique test-owned parent name; fails the test if anything is left under it."""
    n = f"pidsafe-test-{uuid.uuid4().hex[:12]}"
    yield n
    left = _leftovers(layout, n)
    for d in left:
        if os.path.exists(d):
            _force_remove(d)
    assert left == [], f"cgroup directories left behind: {left}"


@contextlib.contextmanager
def sleeper() -> Iterator[pidsafe.Process]:
    """A ``sleep 60`` that is killed (not waited for) if the test fails."""
    with pidsafe.spawn(["sleep", "60"]) as p:
        try:
            yield p
        finally:
            if p.poll() is None:
                p.kill()


def _wait_gone(pidfds: List[pidsafe.OwnedFd]) -> None:
    """Block until every pidfd is readable (its process exited); bounded for safety."""
    for fd in pidfds:
        assert select.select([fd], [], [], 30)[0], "process did not exit"


@pytest.mark.root
def test_create_applies_every_resource_and_delete_removes_all(
        layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", FULL, layout=layout)
    try:
        v1 = cg.v1_paths

        def read(controller: str, file: str) -> str:
            key = next(k for k in v1 if controller in k.split(","))
            with open(os.path.join(v1[key], file)) as f:
                return f.read().strip()
        assert read("memory", "memory.limit_in_bytes") == str(64 << 20)
        assert read("memory", "memory.soft_limit_in_bytes") == str(32 << 20)
        assert read("memory", "memory.memsw.limit_in_bytes") == str(128 << 20)
        assert read("memory", "memory.swappiness") == "10"
        assert "oom_kill_disable 1" in read("memory", "memory.oom_control")
        assert read("pids", "pids.max") == "50"
        assert read("cpu", "cpu.shares") == "512"
        assert read("cpu", "cpu.cfs_quota_us") == "50000"
        assert read("cpu", "cpu.cfs_period_us") == "100000"
        assert read("cpu", "cpu.cfs_burst_us") == "1000"
        assert read("cpu", "cpu.idle") == "0"
        assert read("cpuset", "cpuset.cpus") == "0" and read("cpuset", "cpuset.mems") == "0"
        assert read("devices", "devices.list").splitlines() == ["c 1:3 rwm", "c 5:* r"]
        made = {c for key in v1 for c in key.split(",")}
        assert made >= {"memory", "pids", "cpu", "cpuacct", "devices", "freezer", "cpuset"}
        assert "name=systemd" not in v1 and "blkio" not in v1
        if layout.v2 is not None:
            assert cg.v2_path == os.path.join(layout.v2.mountpoint, name, "c1")
        assert cg.stats().pids_limit == 50 and cg.stats().memory_limit == 64 << 20
        cg.update(Resources(memory=MemoryLimits(limit=256 << 20, swap=512 << 20),
                            pids_limit=-1), layout=layout)
        assert read("memory", "memory.limit_in_bytes") == str(256 << 20)
        assert read("memory", "memory.memsw.limit_in_bytes") == str(512 << 20)
        assert read("pids", "pids.max") == "max"
    finally:
        cg.delete()
    assert _leftovers(layout, name) == []
    cg.delete()    # idempotent


@pytest.mark.root
def test_default_and_relative_paths(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create(name, None, default_parent=f"/{name}", layout=layout)
    try:
        pids = layout.v1_for("pids")
        assert pids is not None
        assert cg.v1_paths[pids.key] == f"{pids.mountpoint}/{name}/{name}"
    finally:
        cg.delete()
    cg = Cgroup.create("c1", f"{name}/c1", layout=layout)
    try:
        mem = layout.v1_for("memory")
        assert mem is not None
        own = mem.directory(mem.own)
        assert cg.v1_paths["memory"] == f"{own}/{name}/c1"
        with open(f"/proc/self/cgroup") as f:
            assert f"memory:{mem.own}\n" in f.read()   # we did not move ourselves
    finally:
        cg.delete()


@pytest.mark.root
def test_a_bad_value_in_the_middle_leaves_nothing(layout: CgroupLayout, name: str) -> None:
    bad = FULL.replace(cpu=FULL.cpu.replace(cpus="not-cpus"))
    with pytest.raises(pidsafe.CgroupError) as info:
        Cgroup.create("c1", f"/{name}/c1", bad, layout=layout)
    exc = info.value
    assert exc.errno == errno.EINVAL and exc.value == "not-cpus"
    assert exc.path.endswith(f"/{name}/c1/cpuset.cpus")
    assert "linux.resources.cpu.cpus" in str(exc)
    assert _leftovers(layout, name) == []


@pytest.mark.root
@pytest.mark.parametrize("kind", ["hybrid", "v1-only", "ebpf-devices"])
def test_every_failing_call_of_create_leaves_nothing(
        layout: CgroupLayout, name: str, faults: Faults, kind: str) -> None:
    lay = {"hybrid": layout, "v1-only": layout.without_v2(),
           "ebpf-devices": CgroupLayout(tuple(h for h in layout.v1
                                              if "devices" not in h.controllers), layout.v2)
           }[kind]
    if lay.v2 is None and kind != "v1-only":
        pytest.skip("no cgroup v2 mount on this machine")
    made: List[Cgroup] = []
    n = faults.count(lambda: made.append(Cgroup.create("c1", f"/{name}/c1", FULL, layout=lay)))
    made[0].delete()
    assert n > 20
    for k in range(1, n + 1):
        with faults.fail_at(k, errno.EIO), pytest.raises(OSError) as info:
            Cgroup.create("c1", f"/{name}/c1", FULL, layout=lay)
        assert info.value.errno == errno.EIO, faults.fired
        assert _leftovers(layout, name) == [], faults.fired


@pytest.mark.root
def test_an_interrupt_at_any_call_of_create_leaves_nothing(
        layout: CgroupLayout, name: str, faults: Faults) -> None:
    made: List[Cgroup] = []
    n = faults.count(lambda: made.append(Cgroup.create("c1", f"/{name}/c1", FULL,
                                                       layout=layout)))
    made[0].delete()
    for k in range(1, n + 1):
        for before in (False, True):
            with pytest.raises(Interrupt), faults.interrupt_at(k, before=before):
                Cgroup.create("c1", f"/{name}/c1", FULL, layout=layout)
            assert _leftovers(layout, name) == [], faults.fired


#: What the update sweeps start from, and change every file of (the OOM killer too).
_BEFORE = FULL.replace(memory=FULL.memory.replace(disable_oom_killer=False), devices=())
_UPDATE = Resources(
    memory=MemoryLimits(limit=256 << 20, reservation=64 << 20, swap=512 << 20, swappiness=20,
                        disable_oom_killer=True),
    pids_limit=-1, cpu=CpuLimits(shares=256, quota=20000, period=50000, burst=0, idle=0))


def _settings(cg: Cgroup, layout: CgroupLayout) -> Dict[str, str]:
    """The files _UPDATE writes, as they read now."""
    out = {}
    for w in plan(layout, _UPDATE, memsw_now=0):
        d = cg.v2_path if w.hierarchy.v2 else cg.v1_paths[w.hierarchy.key]
        assert d is not None
        with open(os.path.join(d, w.file)) as f:
            out[w.file] = f.read()
    return out


@pytest.mark.root
@pytest.mark.parametrize("how", ["fail", "interrupt-before", "interrupt-after"])
def test_a_failing_or_interrupted_update_changes_nothing(
        layout: CgroupLayout, name: str, faults: Faults, how: str) -> None:
    """update wrote its files one by one and left the earlier ones changed
    when a later one failed (runc update exiting 1 with half the limits new)."""
    cg = Cgroup.create("c1", f"/{name}/c1", _BEFORE, layout=layout)
    try:
        before = _settings(cg, layout)
        n = faults.count(lambda: cg.update(_UPDATE, layout=layout))
        after = _settings(cg, layout)
        assert {f for f in before if before[f] != after[f]} >= {
            "memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.oom_control",
            "pids.max", "cpu.shares", "cpu.cfs_quota_us"}
    finally:
        cg.delete()
    for k in range(1, n + 1):
        cg = Cgroup.create("c1", f"/{name}/c1", _BEFORE, layout=layout)
        try:
            arm = (faults.fail_at(k, errno.EIO) if how == "fail" else
                   faults.interrupt_at(k, before=how == "interrupt-before"))
            with pytest.raises((OSError, Interrupt)) as info, arm:
                cg.update(_UPDATE, layout=layout)
            assert faults.fired is not None
            if how == "fail":
                assert info.value.errno == errno.EIO, faults.fired
            else:
                assert isinstance(info.value, Interrupt), faults.fired
            assert _settings(cg, layout) == before, faults.fired
        finally:
            cg.delete()


@pytest.mark.root
@pytest.mark.parametrize("v2", [True, False], ids=["hybrid", "v1-only"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_added_process_is_listed_and_killed(
        layout: CgroupLayout, name: str, v2: bool, sig: int) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout if v2 else layout.without_v2())
    try:
        with sleeper() as p:
            cg.add(p)
            assert cg.pids() == [p.pid]
            with open(f"/proc/{p.pid}/cgroup") as f:
                lines = f.read().splitlines()
            for key in cg.v1_paths:
                assert any(line.endswith(f":{key}:/{name}/c1") for line in lines), key
            if v2 and layout.v2 is not None:
                assert f"0::/{name}/c1" in lines
            cg.kill(sig)
            assert p.wait(timeout=30) == -sig
            assert not cg.frozen
        assert cg.pids() == []
    finally:
        cg.delete()


@pytest.mark.root
@pytest.mark.parametrize("v2", [True, False], ids=["hybrid", "v1-only"])
def test_kill_reaches_processes_that_are_not_our_children(
        layout: CgroupLayout, name: str, v2: bool) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout if v2 else layout.without_v2())
    try:
        # Once added, sh forks two sleeps (its children, not ours) and reports their pids.
        with pidsafe.spawn(["sh", "-c", "read go; sleep 60 & echo $!; sleep 60 & echo $!; wait"],
                           stdin=PIPE, stdout=PIPE) as sh:
            cg.add(sh)
            assert sh.stdin is not None and sh.stdout is not None
            sh.stdin.write(b"go\n")
            sh.stdin.flush()
            kids = [int(sh.stdout.readline()) for _ in range(2)]
            fds = [pidsafe.OwnedFd(_sys.pidfd_open(k), "pidfd") for k in kids]
            try:
                assert cg.pids() == sorted([sh.pid, *kids])
                cg.kill(signal.SIGTERM)
                _wait_gone(fds)
                assert sh.wait(timeout=30) in (-signal.SIGTERM, 128 + signal.SIGTERM)
            finally:
                for fd in fds:
                    fd.close()
        cg.delete(timeout=10)
    finally:
        cg.delete()


@pytest.mark.root
def test_delete_refuses_while_a_process_remains(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        with sleeper() as p:
            cg.add(p)
            with pytest.raises(pidsafe.CgroupError) as info:
                cg.delete(timeout=0.01)
            assert info.value.errno == errno.EBUSY
            assert info.value.path in (cg.v2_path, *cg.v1_paths.values())
            assert str(p.pid) in str(info.value)
            assert cg.pids() == [p.pid]     # nothing was killed
            p.kill()
            p.wait()
        cg.delete()
        cg.delete()
    finally:
        cg.delete()


@pytest.mark.root
def test_an_occupied_cgroup_is_joined_only_when_shared(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        with sleeper() as p:
            cg.add(p)
            with pytest.raises(pidsafe.CgroupError) as info:
                Cgroup.create("c2", f"/{name}/c1", layout=layout)
            assert info.value.errno == errno.EBUSY and "shared" in str(info.value)
            joined = Cgroup.create("c2", f"/{name}/c1", layout=layout, shared=True)
            joined.delete()                 # not its to remove
            assert cg.pids() == [p.pid]
            cg.kill()
            p.wait()
    finally:
        cg.delete()


@pytest.mark.root
def test_nested_cgroups_are_listed_and_removed(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        for d in (cg.v2_path, *cg.v1_paths.values()):
            if d is not None:
                os.mkdir(os.path.join(d, "inner"))
        with sleeper() as p:
            for d in (cg.v2_path, *cg.v1_paths.values()):
                if d is not None:
                    with open(os.path.join(d, "inner", "cgroup.procs"), "w") as f:
                        f.write(str(p.pid))
            assert cg.pids() == [p.pid]
            cg.kill()
            p.wait()
        cg.delete()
    finally:
        cg.delete()


@pytest.mark.root
@pytest.mark.parametrize("v2", [True, False], ids=["hybrid", "v1-only"])
def test_freeze_and_thaw(layout: CgroupLayout, name: str, v2: bool) -> None:
    lay = layout if v2 else layout.without_v2()
    cg = Cgroup.create("c1", f"/{name}/c1", layout=lay)
    try:
        with started_cat() as cat:
            cg.add(cat)
            cg.freeze()
            assert cg.frozen
            if not v2:
                with open(os.path.join(cg.v1_paths["freezer"], "freezer.state")) as f:
                    assert f.read().strip() == "FROZEN"
            assert cat.stdin is not None and cat.stdout is not None
            cat.stdin.write(b"after\n")
            cat.stdin.flush()
            cg.thaw()
            assert not cg.frozen
            assert cat.stdout.readline() == b"after\n"
            cg.kill()
            cat.wait()
    finally:
        cg.delete()


@pytest.mark.root
def test_kill_of_an_empty_cgroup_freezes_nothing(layout: CgroupLayout, name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe.container.cgroup import _cgroup

    def no_freeze(*args: object) -> None:
        raise AssertionError("froze a cgroup with nobody in it")

    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        monkeypatch.setattr(_cgroup.freezer, "freeze", no_freeze)
        cg.kill(signal.SIGTERM)
        assert not cg.frozen and cg.pids() == []
    finally:
        cg.delete()


@pytest.mark.root
def test_kill_of_a_frozen_cgroup_keeps_it_frozen(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout.without_v2())
    try:
        with sleeper() as p:
            cg.add(p)
            cg.freeze()
            cg.kill(signal.SIGTERM)
            assert cg.frozen and p.poll() is None
            cg.thaw()
            assert p.wait(timeout=30) == -signal.SIGTERM
    finally:
        cg.delete()


@pytest.mark.root
def test_v2_fd_places_a_child_with_clone_into_cgroup(layout: CgroupLayout, name: str) -> None:
    if layout.v2 is None:
        pytest.skip("no cgroup v2 mount on this machine")
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        fd = cg.open_v2_fd()
        assert fd is not None
        with fd:
            assert os.readlink(f"/proc/self/fd/{fd.fileno()}") == cg.v2_path
            assert os.get_inheritable(fd.fileno()) is False
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            try:
                pid, pidfd = _sys.spawn(_sys.ChildSpec(
                    exec_paths=(b"/bin/sleep",), argv=(b"sleep", b"60"), errpipe_write=err_w,
                    stdio=(0, 1, 2), keep_fds=(err_w,), cgroup_fd=fd.fileno()))
            finally:
                os.close(err_w)
                os.close(err_r)
        with pidsafe.Process(pid, pidfd) as p:
            def where() -> Dict[str, str]:
                with open(f"/proc/{pid}/cgroup") as f:
                    return {key: path for _, key, path in
                            (line.split(":", 2) for line in f.read().splitlines())}
            ours = f"/{name}/c1"
            assert where()[""] == ours                  # from birth, by clone3
            assert all(where()[key] != ours for key in cg.v1_paths)
            cg.add(p, v2=False)                         # then every v1 hierarchy
            assert all(where()[key] == ours for key in cg.v1_paths)
            cg.kill()
            assert p.wait() == -signal.SIGKILL
    finally:
        cg.delete()


@pytest.mark.root
def test_pidsafe_init_joins_every_hierarchy_through_the_join_fds(
        layout: CgroupLayout, name: str) -> None:
    # OP_CGROUP_JOIN (an exec's first ops): pidsafe-init writes "0" to each
    # file open_join_fds() opened, and the program it execs runs there.
    from pidsafe.container.init._protocol import (OP_CGROUP_JOIN, OP_EXEC, RECORD_READY,
                                                  Op, encode, nul_list, read_record)

    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        joins = cg.open_join_fds()
        try:
            assert [path for _, path in joins] == (
                [d + "/tasks" for d in cg.v1_paths.values()]
                + ([cg.v2_path + "/cgroup.procs"] if cg.v2_path is not None else []))
            for fd, path in joins:
                assert os.readlink(f"/proc/self/fd/{fd.fileno()}") == path
                assert os.get_inheritable(fd.fileno()) is False
            ops = [Op(OP_CGROUP_JOIN, (fd.fileno(),)) for fd, _ in joins]
            ops.append(Op(OP_EXEC, (nul_list(["cat", "/proc/self/cgroup"]),
                                    nul_list(["PATH=/bin:/usr/bin"]))))
            init = _sys.program("pidsafe-init")
            ops_r, ops_w = os.pipe2(os.O_CLOEXEC)
            st_r, st_w = os.pipe2(os.O_CLOEXEC)
            try:
                with pidsafe.spawn([init.path, str(ops_r), str(st_w)], stdout=PIPE,
                                   pass_fds=(ops_r, st_w, *(fd.fileno() for fd, _ in joins))
                                   ) as p:
                    os.write(ops_w, encode(ops))
                    os.close(ops_w)
                    ops_w = -1
                    os.close(st_w)
                    st_w = -1
                    rec = read_record(st_r)
                    assert rec is not None and rec.kind == RECORD_READY, rec
                    assert p.stdout is not None
                    text = p.stdout.read().decode()
                    assert p.wait() == 0
            finally:
                for fd in (ops_r, ops_w, st_r, st_w):
                    if fd >= 0:
                        os.close(fd)
        finally:
            for fd, _ in joins:
                fd.close()
        where = {key: path for _, key, path in
                 (line.split(":", 2) for line in text.splitlines())}
        assert all(where[key] == f"/{name}/c1" for key in cg.v1_paths)
        if cg.v2_path is not None:
            assert where[""] == f"/{name}/c1"
        assert cg.pids() == []
    finally:
        cg.delete()


@pytest.mark.root
def test_tasks_fds_make_a_child_join_every_v1_hierarchy_before_it_execs(
        layout: CgroupLayout, name: str) -> None:
    if not layout.v1:
        pytest.skip("no cgroup v1 hierarchy on this machine")
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        tasks = cg.open_tasks_fds()
        try:
            assert len(tasks) == len(cg.v1_paths)
            for t, d in zip(tasks, cg.v1_paths.values()):
                assert os.readlink(f"/proc/self/fd/{t.fileno()}") == d + "/tasks"
                assert os.get_inheritable(t.fileno()) is False
            err_r, err_w = os.pipe2(os.O_CLOEXEC)
            try:
                # The program prints its own cgroups: it runs inside them.
                pid, pidfd = _sys.spawn(_sys.ChildSpec(
                    exec_paths=(b"/bin/cat",), argv=(b"cat", b"/proc/self/cgroup"),
                    errpipe_write=err_w, stdio=(0, err_w, 2), keep_fds=(err_w,),
                    tasks_fds=tuple(t.fileno() for t in tasks)))
            finally:
                os.close(err_w)
            with pidsafe.Process(pid, pidfd) as p:
                assert p.wait() == 0
            with os.fdopen(err_r, "rb") as f:
                text = f.read().decode()
        finally:
            for t in tasks:
                t.close()
        where = {key: path for _, key, path in
                 (line.split(":", 2) for line in text.splitlines())}
        assert all(where[key] == f"/{name}/c1" for key in cg.v1_paths)
        assert cg.pids() == []
    finally:
        cg.delete()


@pytest.mark.root
def test_a_child_that_cannot_join_fails_at_the_cgroup_stage(layout: CgroupLayout,
                                                           name: str) -> None:
    if not layout.v1:
        pytest.skip("no cgroup v1 hierarchy on this machine")
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        d = next(iter(cg.v1_paths.values()))
        # Opened for reading: the child's write fails (EBADF), it never execs.
        fd = os.open(d + "/tasks", os.O_RDONLY | os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            pid, pidfd = _sys.spawn(_sys.ChildSpec(
                exec_paths=(b"/bin/true",), argv=(b"true",), errpipe_write=err_w,
                stdio=(0, 1, 2), tasks_fds=(fd,)))
            os.close(err_w)
            err_w = -1
            with pidsafe.Process(pid, pidfd) as p:
                assert p.wait() == 127
            assert _sys.read_child_error(err_r) == (_sys.STAGE_CGROUP, errno.EBADF)
        finally:
            for f in (fd, err_r, err_w):
                if f >= 0:
                    os.close(f)
        assert cg.pids() == []
        err = cg.join_error(errno.EBADF)
        assert isinstance(err, pidsafe.CgroupError) and err.errno == errno.EBADF
        assert d in str(err) and err.filename == d
    finally:
        cg.delete()


@pytest.mark.root
def test_add_refuses_an_exited_process(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        with pidsafe.spawn(["true"]) as p:
            p.wait()                # reaped: its pidfd now names no pid
            with pytest.raises(ProcessLookupError):
                cg.add(p)
        assert cg.pids() == []
    finally:
        cg.delete()


@pytest.mark.root
def test_the_cgroups_of_a_process_are_found_and_joined(layout: CgroupLayout,
                                                       name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout)
    try:
        with sleeper() as init, sleeper() as other:
            cg.add(init)
            found = Cgroup.of_process(init, layout=layout)
            assert found.v2_path == cg.v2_path
            # Every hierarchy init is in: the container's, and the others at ours.
            assert {k: p for k, p in found.v1_paths.items() if k in cg.v1_paths} == cg.v1_paths
            assert set(found.v1_paths) == {h.key for h in layout.v1}
            found.add(other)
            assert cg.pids() == sorted([init.pid, other.pid])
            found.delete()              # not its own: removes nothing
            assert os.path.isdir(next(iter(cg.v1_paths.values())))
            init.kill()
            other.kill()
            init.wait()
            other.wait()
        with pidsafe.spawn(["true"]) as gone:
            gone.wait()                 # reaped: its pidfd names no pid
            with pytest.raises(ProcessLookupError):
                Cgroup.of_process(gone, layout=layout)
    finally:
        cg.delete()


@pytest.mark.root
def test_description_reloads_in_another_process(layout: CgroupLayout, name: str) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", Resources(pids_limit=7), layout=layout)
    try:
        text = json.dumps(cg.to_dict())
        again = Cgroup.load(json.loads(text))
        assert again.to_dict() == cg.to_dict()
        assert again.stats().pids_limit == 7
        bad = json.loads(text)
        bad["remove"] = ["/etc"]
        with pytest.raises(pidsafe.StateError):
            Cgroup.load(bad)
        with pytest.raises(pidsafe.StateError):
            Cgroup.load({"v1": []})
        again.delete()
        assert _leftovers(layout, name) == []
    finally:
        cg.delete()


def _device_access(layout: CgroupLayout, name: str, rules: List[DeviceRule]) -> Dict[str, str]:
    """In a cgroup with ``rules``: may sh read /dev/null, write it, read /dev/zero?"""
    cg = Cgroup.create("c1", f"/{name}/c1", Resources(devices=tuple(rules)), layout=layout)
    try:
        script = ("read go; cat /dev/null; echo nr=$?; true >/dev/null; echo nw=$?; "
                  "head -c 1 /dev/zero >/dev/zero; echo zr=$?")
        with pidsafe.spawn(["sh", "-c", script], stdin=PIPE, stdout=PIPE, stderr=PIPE) as p:
            cg.add(p)
            out, _ = p.communicate(b"go\n")
        # Exit status 0, or "1" for any failure (sh says 2 for a failed redirection).
        return {k: "0" if v == "0" else "1"
                for k, v in (line.split("=") for line in out.decode().split())}
    finally:
        cg.delete()


@pytest.mark.root
@pytest.mark.parametrize("v2", [True, False], ids=["ebpf-v2", "v1"])
@pytest.mark.parametrize("rules, expected", [
    ([DeviceRule(False), DeviceRule(True, "c", 1, 5, "rw")], ("1", "1", "0")),
    ([DeviceRule(False, "c", 1, 3)], ("1", "1", "0")),                     # default allow
    ([DeviceRule(False), DeviceRule(True, "c", 1, 3, "r"), DeviceRule(True, "c", 1, 5)],
     ("0", "1", "0")),
    ([DeviceRule(False), DeviceRule(True, "c", None, None, "rwm")], ("0", "0", "0")),
    # v1: a deny in deny-all mode only takes bits from the exactly matching allow.
    ([DeviceRule(False), DeviceRule(True, "c", 1, None), DeviceRule(False, "c", 1, 3)],
     ("0", "0", "0")),
    ([DeviceRule(False), DeviceRule(True, "c", 1, 3), DeviceRule(False, "c", 1, 3, "w")],
     ("0", "1", "1")),
    ([DeviceRule(False, "c", 1, 3, "w")], ("0", "1", "0")),
], ids=["allow-one", "deny-one", "read-only", "any-char", "inexact-deny", "exact-deny",
        "deny-write"])
def test_device_rules_are_enforced(layout: CgroupLayout, name: str, v2: bool,
                                   rules: List[DeviceRule], expected: Tuple[str, ...]) -> None:
    if v2:
        if layout.v2 is None:
            pytest.skip("no cgroup v2 mount on this machine")
        # Leave the v1 devices hierarchy out: the rules must go to the eBPF filter.
        layout = CgroupLayout(tuple(h for h in layout.v1 if "devices" not in h.controllers),
                              layout.v2)
    got = _device_access(layout, name, rules)
    assert (got["nr"], got["nw"], got["zr"]) == expected


@pytest.mark.root
def test_changing_device_rules_on_v2_is_refused(layout: CgroupLayout, name: str) -> None:
    if layout.v2 is None:
        pytest.skip("no cgroup v2 mount on this machine")
    lay = CgroupLayout(tuple(h for h in layout.v1 if "devices" not in h.controllers), layout.v2)
    cg = Cgroup.create("c1", f"/{name}/c1", layout=lay)
    try:
        with pytest.raises(pidsafe.UnsupportedConfigError) as info:
            cg.update(Resources(devices=(DeviceRule(False),)), layout=lay)
        assert info.value.json_path == "linux.resources.devices"
    finally:
        cg.delete()


@pytest.mark.root
def test_concurrent_creates_and_deletes_under_one_parent(layout: CgroupLayout, name: str) -> None:
    import concurrent.futures

    def cycle(i: int) -> None:
        for _ in range(5):
            cg = Cgroup.create(f"c{i}", f"/{name}/c{i}", Resources(pids_limit=10), layout=layout)
            cg.delete()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(cycle, range(8)))
    # Each delete() removes the shared parent when it made it and it is
    # empty; one made by a container whose delete found siblings may stay.
    for d in _leftovers(layout, name):
        assert os.listdir(d) == [] or all(not os.path.isdir(os.path.join(d, e))
                                          for e in os.listdir(d)), d
        os.rmdir(d)


@pytest.mark.root
@pytest.mark.parametrize("v2", [True, False], ids=["hybrid", "v1-only"])
def test_an_interrupt_anywhere_in_kill_leaves_no_fd_and_no_freeze(
        layout: CgroupLayout, name: str, faults: Faults, v2: bool) -> None:
    cg = Cgroup.create("c1", f"/{name}/c1", layout=layout if v2 else layout.without_v2())
    try:
        with sleeper() as p:
            cg.add(p)
            # SIGCONT: the process survives every round.
            n = faults.count(lambda: cg.kill(signal.SIGCONT))
            assert n > 5
            for k in range(1, n + 1):
                for before in (False, True):
                    fds = open_fds()
                    with faults.interrupt_at(k, before=before) as f:
                        try:
                            cg.kill(signal.SIGCONT)
                        except Interrupt:
                            pass
                        else:
                            # The v1 freezer is polled: a quicker run makes
                            # fewer calls, and then call k never came.
                            assert f.fired is None, f.fired
                    assert open_fds() == fds, faults.fired
                    assert not cg.frozen, faults.fired
            cg.kill()
            assert p.wait() == -signal.SIGKILL
    finally:
        cg.delete()


@pytest.mark.root
def test_v2_controllers_are_enabled_down_to_the_container(layout: CgroupLayout,
                                                          name: str) -> None:
    # This machine's v2 holds only hugetlb: enough to prove the mechanism a
    # pure-v2 machine uses for memory, pids, cpu and cpuset.
    if layout.v2 is None or "hugetlb" not in layout.v2.controllers:
        pytest.skip("no v2 hierarchy with the hugetlb controller here")
    cg = Cgroup.create("c1", f"/{name}/mid/c1", layout=layout)
    try:
        assert cg.v2_path is not None
        assert not any(f.startswith("hugetlb.") for f in os.listdir(cg.v2_path))
        enable_v2(layout.v2, cg.v2_path, {"hugetlb"})
        assert any(f.startswith("hugetlb.") for f in os.listdir(cg.v2_path))
        parent = os.path.dirname(cg.v2_path)
        with open(os.path.join(parent, "cgroup.subtree_control")) as f:
            assert "hugetlb" in f.read().split()
        # A parent that holds processes itself cannot pass controllers down.
        with open(os.path.join(parent, "cgroup.subtree_control"), "w") as f:
            f.write("-hugetlb")
        with sleeper() as p:
            with open(os.path.join(parent, "cgroup.procs"), "w") as f:
                f.write(str(p.pid))
            with pytest.raises(pidsafe.CgroupError) as info:
                enable_v2(layout.v2, cg.v2_path, {"hugetlb"})
            assert info.value.errno == errno.EBUSY
            assert "linux.cgroupsPath" in str(info.value)
            p.kill()
            p.wait()
    finally:
        cg.delete()


def test_a_layout_is_worked_out_again_when_what_it_reads_changes(tmp_path: pathlib.Path) -> None:
    """detect() keeps the last layout for the same inputs (a handle's exec,
    kill and delete each load the cgroup); this process moved to another
    cgroup is a new layout."""
    with open("/proc/self/cgroup") as f:
        real = f.read()
    own = tmp_path / "cgroup"
    own.write_text(real)
    first = CgroupLayout.detect(proc_cgroup=str(own))
    assert CgroupLayout.detect(proc_cgroup=str(own)) is first
    if not first.v1:
        pytest.skip("no v1 hierarchy here")
    key = first.v1[0].key
    own.write_text("".join(
        f"{line.rsplit(':', 1)[0]}:/moved\n" if line.split(":")[1] == key else line + "\n"
        for line in real.splitlines()))
    moved = CgroupLayout.detect(proc_cgroup=str(own))
    assert moved is not first and moved.v1[0].key == key and moved.v1[0].own == "/moved"
    assert CgroupLayout.detect() == CgroupLayout.detect(proc_cgroup="/proc/self/cgroup")
