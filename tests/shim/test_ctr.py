"""Runtimes driven through a real containerd with ``ctr`` (tests/ctrd).

These prove the harness with containerd's own runc shim and runc; the same
tests run through pidsafe's shim once it is in ``RUNTIMES``
(tests/ctrd/fixtures.py).  A process whose output is checked waits for ctr
to have read it (``Containerd.ctr_handshake``: ctr 1.6 may drop the output
of one that exits at once).
"""

from __future__ import annotations

import pytest

from ctrd import Containerd, Runtime

pytestmark = [pytest.mark.root, pytest.mark.containerd]


def test_run_rm_stdout_and_exit_code(containerd: Containerd, shim_runtime: Runtime) -> None:
    events = containerd.events()
    res = containerd.ctr_handshake(
        "run", "--rm", *shim_runtime.ctr_args(containerd), containerd.image, "rm1",
        "sh", "-c", "echo ok; echo err >&2; read _; exit 3", stdout="ok\n", stderr="err\n")
    assert (res.returncode, res.stdout, res.stderr) == (3, "ok\n", "err\n"), res
    events.wait("/containers/delete", id="rm1")
    assert events.topics(container_id="rm1") == [
        "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
    assert events.all("/tasks/exit", container_id="rm1")[0].get("exit_status") == 3


def test_run_detached_exec_kill_rm(containerd: Containerd, shim_runtime: Runtime) -> None:
    events = containerd.events()
    containerd.ctr("run", "-d", *shim_runtime.ctr_args(containerd), containerd.image, "d1",
                   "sleep", "600").check()
    started = events.wait("/tasks/start", container_id="d1")
    assert "d1" in containerd.ctr("tasks", "ls", "-q").stdout.split()

    res = containerd.ctr_handshake("tasks", "exec", "--exec-id", "e1", "d1",
                                   "sh", "-c", "echo exec-ok; read _; exit 5", stdout="exec-ok\n")
    assert (res.returncode, res.stdout) == (5, "exec-ok\n"), res
    assert events.wait("/tasks/exit", container_id="d1", id="e1").get("exit_status") == 5

    containerd.ctr("tasks", "kill", "-s", "SIGKILL", "d1").check()
    init_exit = events.wait("/tasks/exit", container_id="d1", id="d1")
    assert init_exit.get("exit_status") == 137
    assert init_exit.get("pid") == started.get("pid")
    containerd.ctr("tasks", "rm", "d1").check()
    containerd.ctr("containers", "rm", "d1").check()
    events.wait("/containers/delete", id="d1")
    assert events.topics(container_id="d1") == [
        "/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
        "/tasks/exit", "/tasks/exit", "/tasks/delete"]


def test_task_survives_containerd_restart(containerd: Containerd, shim_runtime: Runtime) -> None:
    containerd.ctr("run", "-d", *shim_runtime.ctr_args(containerd), containerd.image, "r1",
                   "sleep", "600").check()
    shims = containerd.shim_pids()
    old = containerd.pid
    containerd.restart()
    assert containerd.pid != old
    assert containerd.shim_pids() == shims   # the shim lived on and containerd found it again
    res = containerd.ctr_handshake("tasks", "exec", "--exec-id", "e1", "r1",
                                   "sh", "-c", "echo still-here; read _; exit 0",
                                   stdout="still-here\n")
    assert (res.returncode, res.stdout) == (0, "still-here\n"), res
    events = containerd.events()
    containerd.ctr("tasks", "kill", "-s", "SIGKILL", "r1").check()
    events.wait("/tasks/exit", container_id="r1", id="r1")
    containerd.ctr("tasks", "rm", "r1").check()
    containerd.ctr("containers", "rm", "r1").check()
