"""pidsafe-runc update: all or nothing (root, real containers)."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest

import pidsafe

from runc_cli import Cli, cgroup_dir, cli, subreaper  # noqa: F401 - fixtures

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
