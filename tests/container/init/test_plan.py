"""The plan (pidsafe/container/init/_plan.py): the ``cgroup`` mount from the host's layout.

A ``cgroup`` entry of ``mounts`` becomes what the host has: one cgroup2
mount on a pure-v2 host; on v1 and hybrid hosts a tmpfs with each v1
hierarchy of ``/sys/fs/cgroup/`` mounted in it by name (and cgroup2 at
``unified`` beside them).  The layout is :class:`CgroupLayout`, the cgroup
layer's, from the one mountinfo parser.
"""

from __future__ import annotations

from typing import Any, List, Tuple

import pytest

from pidsafe.container.cgroup import CgroupLayout
from pidsafe.container.cgroup._layout import Hierarchy
from pidsafe.container.config import parse_spec
from pidsafe.container.init import plan_init
from pidsafe.container.init._protocol import (OP_MOUNT_FS, OP_MOUNT_TREE, OP_PIVOT,
                                              OP_ROOT_CLONE, nul_list)

from bundles import runc_spec

V2 = Hierarchy("", frozenset({"memory", "pids"}), "/sys/fs/cgroup", "/", "/")
UNIFIED = Hierarchy("", frozenset({"hugetlb"}), "/sys/fs/cgroup/unified", "/", "/")
V1 = (Hierarchy("cpu,cpuacct", frozenset({"cpu", "cpuacct"}), "/sys/fs/cgroup/cpu,cpuacct",
                "/", "/", ("cpu", "cpuacct")),
      Hierarchy("name=systemd", frozenset({"name=systemd"}), "/sys/fs/cgroup/systemd", "/", "/",
                ("xattr", "name=systemd")),
      # A hierarchy mounted elsewhere too is not the host's /sys/fs/cgroup: left out.
      Hierarchy("memory", frozenset({"memory"}), "/mnt/memory", "/", "/", ("memory",)))


def _no_tree(*args: Any) -> int:
    raise AssertionError("the runc spec has no bind mounts")


def cgroup_mounts(layout: CgroupLayout) -> List[Tuple[str, str, bytes]]:
    """(type, target, options) of each op of the config's ``cgroup`` mount."""
    doc = runc_spec(["true"])
    index = next(i for i, m in enumerate(doc["mounts"]) if m["type"] == "cgroup")
    plan = plan_init(parse_spec(doc), "/bundle", "/bundle/rootfs", gate_fd=3, join_fds={},
                     idmap_fds={}, open_tree=_no_tree, layout=layout)
    ops = [op for op in plan.ops if op.field == f"mounts[{index}]"]
    assert ops and all(op.code == OP_MOUNT_FS for op in ops)
    return [(str(op.args[0]), str(op.args[2]), bytes(op.args[5])) for op in ops]  # type: ignore


def test_a_pure_v2_host_gets_one_cgroup2_mount() -> None:
    assert cgroup_mounts(CgroupLayout((), V2)) == [("cgroup2", "/sys/fs/cgroup", b"")]


def test_a_hybrid_host_gets_each_v1_hierarchy_and_unified() -> None:
    assert cgroup_mounts(CgroupLayout(V1, UNIFIED)) == [
        ("tmpfs", "/sys/fs/cgroup", nul_list(["mode=755"])),
        ("cgroup", "/sys/fs/cgroup/cpu,cpuacct", nul_list(["cpu", "cpuacct"])),
        ("cgroup", "/sys/fs/cgroup/systemd", nul_list(["xattr", "name=systemd"])),
        ("cgroup2", "/sys/fs/cgroup/unified", b""),
    ]


def test_a_v1_host_gets_no_unified() -> None:
    assert [t for _, t, _ in cgroup_mounts(CgroupLayout(V1[:1], None))] == [
        "/sys/fs/cgroup", "/sys/fs/cgroup/cpu,cpuacct"]


def test_this_hosts_layout_is_read_when_none_is_given() -> None:
    layout = CgroupLayout.detect()
    doc = runc_spec(["true"])
    plan = plan_init(parse_spec(doc), "/bundle", "/bundle/rootfs", gate_fd=3, join_fds={},
                     idmap_fds={}, open_tree=_no_tree)
    again = plan_init(parse_spec(doc), "/bundle", "/bundle/rootfs", gate_fd=3, join_fds={},
                      idmap_fds={}, open_tree=_no_tree, layout=layout)
    assert plan == again


def _plan_with_mounts(*mounts: Any) -> List[Tuple[int, Tuple[Any, ...]]]:
    doc = runc_spec(["true"])
    doc["mounts"] += list(mounts)
    trees = iter(range(100, 200))
    plan = plan_init(parse_spec(doc), "/bundle", "/bundle/rootfs", gate_fd=3, join_fds={},
                     idmap_fds={}, open_tree=lambda *a: next(trees),
                     layout=CgroupLayout((), V2))
    return [(op.code, op.args) for op in plan.ops]


def test_binds_are_attached_as_they_are_and_the_root_cloned_once_before_pivot() -> None:
    """One recursive clone of the root gives every mount its fresh id, where
    each bind used to be cloned again and the parent's tree detached."""
    ops = _plan_with_mounts({"destination": "/mnt", "source": "/tmp", "options": ["rbind"]})
    codes = [c for c, _ in ops]
    trees = [args for c, args in ops if c == OP_MOUNT_TREE]
    assert trees and all(args[5] == 0 for args in trees)   # attached as they are
    assert codes.count(OP_ROOT_CLONE) == 1
    assert codes.index(OP_ROOT_CLONE) > max(i for i, c in enumerate(codes)
                                             if c in (OP_MOUNT_TREE, OP_MOUNT_FS))
    assert codes.index(OP_ROOT_CLONE) < codes.index(OP_PIVOT)


@pytest.mark.parametrize("option", ["unbindable", "runbindable"])
def test_an_unbindable_mount_makes_init_clone_each_bind_where_it_is_attached(
        option: str) -> None:
    """An unbindable mount cannot be cloned (EINVAL): no root clone then."""
    ops = _plan_with_mounts({"destination": "/mnt", "source": "/tmp",
                             "options": ["rbind", option]})
    assert OP_ROOT_CLONE not in [c for c, _ in ops]
    trees = [args for c, args in ops if c == OP_MOUNT_TREE]
    assert trees and all(args[5] == 1 for args in trees)
