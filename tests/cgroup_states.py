"""Cgroup states a test puts a container's cgroup in (shared by tests/container and tests/cli)."""

from __future__ import annotations

import os
from typing import Any, List


def half_deleted(cg: Any) -> List[str]:
    """Leave the (empty) cgroup ``cg`` as a delete killed half-way does where
    the pids hierarchy is removed after the freezer: the v2 directory (which
    delete removes first) and the freezer's gone, pids' and the rest there.
    Returns the directories still there."""
    v1 = cg.v1_paths
    freezer = [p for k, p in v1.items() if "freezer" in k.split(",")]
    pids = [p for k, p in v1.items() if "pids" in k.split(",")]
    assert freezer and pids, f"this test needs the v1 freezer and pids hierarchies: {v1}"
    if cg.v2_path is not None:
        os.rmdir(cg.v2_path)
    os.rmdir(freezer[0])
    assert os.path.isdir(pids[0])
    return sorted(p for p in v1.values() if os.path.isdir(p))

