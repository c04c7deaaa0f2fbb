"""pidsafe-runc and cgroups: update is all or nothing; delete --force finishes a half-deleted cgroup (root, real containers)."""

from __future__ import annotations

import json
import time
from typing import Any, Dict, List

import pytest

import pidsafe

from cgroup_states import half_deleted
from runc_cli import (Cli, cgroup_dir, cgroup_dirs, cli, own_cgroup,  # noqa: F401 - fixtures
                      state_files, subreaper)

pytestmark = pytest.mark.root


def _limits(pid: int) -> Dict[str, str]:
    mem = cgroup_dir(pid, "memory")
    limit = mem / "memory.limit_in_bytes"
    cpu = cgroup_dir(pid, "cpu")
    shares = cpu / "cpu.shares"
    return {"memory": (limit if limit.exists() else mem / "memory.max").read_text(),
            "pids": (cgroup_dir(pid, "pids") / "pids.max").read_text(),
            "cpu": (shares if shares.exists() else cpu / "cpu.weight").read_text()}


def test_an_update_that_fails_half_way_changes_nothing(cli: Cli, make_bundle: Any) -> None:
    """update wrote the memory, pids and cpu limits, failed on the CPU period
    (the kernel wants at least 1 ms), exited 1, and left the first three
    changed (and unrecorded)."""
    cli("run", "--detach", "--bundle", str(make_bundle(["sleep", "1000"])), "u1")
    pid = json.loads(cli("state", "u1")[1])["pid"]
    before = _limits(pid)
    code, _, err = cli("update", "--memory", "64m", "--pids-limit", "7", "--cpu-share", "512",
                       "--cpu-period", "1", "u1", check=False)
    assert code == 1 and "linux.resources.cpu.period" in err, err
    assert _limits(pid) == before
    c = pidsafe.Container.load(str(cli.root), "u1")
    try:   # nor recorded
        assert c.spec().linux.resources.pids_limit != 7
    finally:
        c.close()
    cli("update", "--memory", "64m", "--pids-limit", "7", "--cpu-share", "512", "u1")
    assert _limits(pid) != before and _limits(pid)["pids"].strip() == "7"


def test_delete_force_finishes_a_delete_killed_with_the_freezer_gone(
        cli: Cli, make_bundle: Any) -> None:
    """``delete --force`` of a container whose last delete was killed half-way
    (init gone, the v1 freezer directory removed, the pids one not) exits
    0 and leaves no state and no cgroup in any hierarchy."""
    path: List[str] = []
    cli("run", "--detach", "--bundle",
        str(make_bundle(["sleep", "1000"], lambda d: path.append(own_cgroup(d)))), "hd")
    c = pidsafe.Container.load(str(cli.root), "hd")
    try:
        cg = c.cgroup()
        assert cg is not None
        cli("kill", "hd", "KILL")
        deadline = time.monotonic() + 30
        while cg.pids():
            assert time.monotonic() < deadline, "init did not die"
            time.sleep(0.01)
    finally:
        c.close()
    assert half_deleted(cg)
    cli("delete", "--force", "hd")
    assert state_files(cli.root, "hd") == []
    assert cgroup_dirs(path[0]) == []
