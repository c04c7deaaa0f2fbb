"""containerd-shim-pidsafe-v1 under a real containerd 1.6, driven with ``ctr`` (root).

tests/shim/test_ctr.py runs the harness's own cases (run --rm, run -d,
exec, kill, rm, a containerd restart) through this shim and runc's; these
are the shim's: a terminal, ps, pause/resume, metrics, kill --all, a user
namespace on an idmapped rootfs, many runs at once, exit order as ``ctr
events`` shows it, ``ctr shim`` talking to the daemon directly, one daemon
per group, a shim killed with SIGKILL, and a config it refuses.  The
``containerd`` fixture fails a test that leaves a container, a snapshot, a
shim, a mount, a cgroup or a shim socket behind.
"""

from __future__ import annotations

import glob
import json
import os
import pty
import select
import subprocess
import threading
import time
from typing import Any, Dict, List

import pytest

import pidsafe
from conftest import wait_until
from ctrd import PIDSAFE, Containerd
from pidsafe.shim._start import socket_address

pytestmark = [pytest.mark.root, pytest.mark.containerd]


@pytest.fixture
def ctr(containerd: Containerd) -> Any:
    """``ctr(...)`` in the test's containerd; ``run`` and ``exec`` go through the shim."""
    reason = PIDSAFE.skip_reason()
    if reason:
        pytest.skip(reason)
    return containerd.ctr


def run_d(containerd: Containerd, cid: str, *args: str, extra: List[str] = []) -> None:  # noqa: B006
    containerd.ctr("run", "-d", *PIDSAFE.ctr_args(containerd), *extra, containerd.image, cid,
                   *args).check()


def remove(containerd: Containerd, cid: str) -> None:
    """Kill (all), wait for the exit, delete the task and the container."""
    events = containerd.events()
    containerd.ctr("tasks", "kill", "-a", "-s", "SIGKILL", cid)
    if "RUNNING" in task_status(containerd, cid) or "PAUSED" in task_status(containerd, cid):
        events.wait("/tasks/exit", container_id=cid, id=cid)
    containerd.ctr("tasks", "rm", cid).check()
    containerd.ctr("containers", "rm", cid).check()


def task_status(containerd: Containerd, cid: str) -> str:
    for line in containerd.ctr("tasks", "ls").stdout.splitlines()[1:]:
        f = line.split()
        if f and f[0] == cid:
            return f[-1]
    return ""


def ctr_in_a_terminal(containerd: Containerd, *args: str, answer_after: bytes,
                      timeout: float = 60) -> str:
    """``ctr ARGS`` with a pty as its stdio (``-t`` needs one); all it printed.

    Once ``answer_after`` has been printed, a newline is typed: the process
    reads it before it exits, so that ctr has its output first (see
    ``Containerd.ctr_handshake``: ctr 1.6 may drop the output of a process
    that exits at once).
    """
    master, slave = pty.openpty()
    os.set_inheritable(slave, False)
    try:
        with pidsafe.spawn(containerd.ctr_argv(*args), stdin=slave, stdout=slave, stderr=slave,
                           env=containerd.env, start_new_session=True) as p:
            os.close(slave)
            slave = -1
            out = b""
            deadline = time.monotonic() + timeout
            while True:
                ready, _, _ = select.select([master], [], [], max(0, deadline - time.monotonic()))
                assert ready, f"ctr {args} printed {out!r} and no more in {timeout} s"
                try:
                    data = os.read(master, 4096)
                except OSError:       # EIO: every slave closed
                    break
                if not data:
                    break
                out += data
                if answer_after and answer_after in out:
                    os.write(master, b"\n")
                    answer_after = b""
            assert p.wait(timeout=timeout) == 0, out
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return out.decode(errors="replace").replace("\r\n", "\n")


def test_terminal_ps_pause_metrics_kill_all(containerd: Containerd, ctr: Any) -> None:
    run_d(containerd, "t1", "sh", "-c", "sleep 600 & sleep 600")
    out = ctr_in_a_terminal(containerd, "tasks", "exec", "-t", "--exec-id", "tty1", "t1",
                            "sh", "-c", "tty; stty size; echo typed-END; read _",
                            answer_after=b"typed-END")
    assert "/dev/pts/" in out, out
    deadline = time.monotonic() + 30
    while True:   # sh forks its background sleep, then execs the other one
        ps = ctr("tasks", "ps", "t1").check().stdout.splitlines()
        if len(ps) == 3 or time.monotonic() > deadline:
            break
    assert ps[0].split()[0] == "PID" and len(ps) == 3, ps      # the two sleeps
    ctr("tasks", "pause", "t1").check()
    assert task_status(containerd, "t1") == "PAUSED"
    ctr("tasks", "resume", "t1").check()
    assert task_status(containerd, "t1") == "RUNNING"
    metrics = ctr("tasks", "metrics", "t1").check().stdout
    assert "pids.current" in metrics and "memory." in metrics, metrics
    events = containerd.events()
    ctr("tasks", "kill", "--all", "-s", "SIGKILL", "t1").check()
    assert events.wait("/tasks/exit", container_id="t1", id="t1").get("exit_status") == 137
    remove(containerd, "t1")


def test_user_namespace_on_an_idmapped_rootfs(containerd: Containerd, ctr: Any) -> None:
    # --remap-labels: containerd 1.6's overlay snapshotter ignores the labels, so the
    # snapshot is the image as it is, owned by 0; the shim maps it (nothing is chowned).
    run_d(containerd, "u1", "sh", "-c", "touch /made-inside; echo done; sleep 600",
          extra=["--uidmap", "0:100000:65536", "--gidmap", "0:100000:65536",
                 "--remap-labels"])
    snapshots = f"{containerd.dir}/root/io.containerd.snapshotter.v1.overlayfs/snapshots"
    # ``run -d`` returns once the task has started, not once sh has made the file.
    wait_until(lambda: bool(glob.glob(f"{snapshots}/*/fs/made-inside")),
               "the container's sh to touch /made-inside", timeout=60)
    uid_map = f"{0:>10} {100000:>10} {65536:>10}\n"     # as the kernel prints it
    res = containerd.ctr_handshake(
        "tasks", "exec", "--exec-id", "e", "u1", "sh", "-c",
        "stat -c %u:%g /bin/busybox /made-inside; cat /proc/self/uid_map; read _; exit 0",
        stdout="0:0\n0:0\n" + uid_map)
    assert (res.returncode, res.stdout) == (0, "0:0\n0:0\n" + uid_map), res
    made = glob.glob(f"{snapshots}/*/fs/made-inside")
    assert len(made) == 1
    st = os.stat(made[0])
    assert (st.st_uid, st.st_gid) == (0, 0)          # in the upper dir as 0: never shifted
    for busybox in glob.glob(f"{snapshots}/*/fs/bin/busybox"):
        assert os.stat(busybox).st_uid == 0          # the image's layer is unchanged
    remove(containerd, "u1")


def test_eight_runs_at_once(containerd: Containerd, ctr: Any) -> None:
    codes: Dict[int, int] = {}

    def one(i: int) -> None:
        res = ctr("run", "--rm", *PIDSAFE.ctr_args(containerd), containerd.image, f"m{i}",
                  "sh", "-c", f"exit {i}", timeout=120)
        codes[i] = res.returncode

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert codes == {i: i for i in range(8)}


def test_exit_order_in_the_events(containerd: Containerd, ctr: Any) -> None:
    run_d(containerd, "o1", "sleep", "600")
    events = containerd.events()
    # An exec that exits at once: its exit comes after its start.
    assert ctr("tasks", "exec", "--exec-id", "quick", "o1", "sh", "-c", "exit 3").returncode == 3
    for i in range(3):
        ctr("tasks", "exec", "-d", "--exec-id", f"long{i}", "o1", "sleep", "600").check()
        events.wait("/tasks/exec-started", container_id="o1", exec_id=f"long{i}")
    # Only init is killed: its pid namespace ends the execs, and its exit comes last.
    ctr("tasks", "kill", "-s", "SIGKILL", "o1").check()
    events.wait("/tasks/exit", container_id="o1", id="o1")
    topics = [(e.topic, e.get("id") or e.get("exec_id")) for e in events.all(container_id="o1")]
    assert topics.index(("/tasks/exec-started", "quick")) < topics.index(("/tasks/exit", "quick"))
    exits = [who for topic, who in topics if topic == "/tasks/exit"]
    assert exits[-1] == "o1" and sorted(exits[:-1]) == ["long0", "long1", "long2", "quick"]
    remove(containerd, "o1")


def test_ctr_shim_talks_to_the_daemon(containerd: Containerd, ctr: Any) -> None:
    run_d(containerd, "s1", "sleep", "600")
    state = json.loads(ctr("shim", "--id", "s1", "state").check().stdout)
    assert state["id"] == "s1" and state["status"] == 2 and state["pid"] > 0, state
    remove(containerd, "s1")


def test_one_daemon_per_group(containerd: Containerd, ctr: Any) -> None:
    group = ["--annotation", "io.containerd.runc.v2.group=g1"]
    run_d(containerd, "g1a", "sleep", "600", extra=group)
    run_d(containerd, "g1b", "sleep", "600", extra=group)
    shims = containerd.shim_pids()
    assert len(shims) == 1, shims
    remove(containerd, "g1a")
    assert containerd.shim_pids() == shims            # it still serves g1b
    res = containerd.ctr_handshake("tasks", "exec", "--exec-id", "e", "g1b",
                                   "sh", "-c", "echo still-served; read _; exit 0",
                                   stdout="still-served\n")
    assert (res.returncode, res.stdout) == (0, "still-served\n"), res
    remove(containerd, "g1b")
    # The daemon exits with the last one and removes the group's socket, though
    # the bundle that named it (g1a's) went first.
    assert containerd.wait_settled() == []
    address = socket_address(containerd.address, containerd.namespace, "g1")
    assert not os.path.exists(address[len("unix://"):])


def test_a_killed_shim_is_cleaned_up(containerd: Containerd, ctr: Any) -> None:
    run_d(containerd, "k1", "sleep", "600")
    (shim,) = containerd.shim_pids()
    events = containerd.events()
    with pidsafe.Process.from_pid(shim) as p:
        p.kill()
    # containerd sees the shim gone, runs its delete action (which kills init
    # and removes what the state records), and reports the task exited.
    assert events.wait("/tasks/exit", container_id="k1").get("exit_status") == 137
    ctr("tasks", "rm", "k1")
    ctr("containers", "rm", "k1").check()


def test_a_config_it_refuses(containerd: Containerd, ctr: Any) -> None:
    res = ctr("run", "--rm", *PIDSAFE.ctr_args(containerd), "--rdt-class", "gold",
              containerd.image, "bad1", "true")
    assert res.returncode != 0 and "linux.intelRdt" in res.stderr, res
    ctr("containers", "rm", "bad1")
