"""What pods need of pidsafe's shim, through containerd's CRI (runtime handler ``pidsafe``).

One shim per pod; every container's own exit code when many exit at once;
a create into a pod being removed; the pod's shim killed with SIGKILL.
The ``containerd`` fixture fails a test that leaves a container, a
snapshot, a shim, a mount or a cgroup behind; these tests also look for
shim sockets and bundles.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import grpc
import pytest

from ctrd import CRI_NAMESPACE, Containerd
from ctrd.cri import CriClient, api

pytestmark = [pytest.mark.root, pytest.mark.containerd]

HANDLER = "pidsafe"


def bundle(containerd: Containerd, cid: str) -> Path:
    return containerd.dir / "state" / "io.containerd.runtime.v2.task" / CRI_NAMESPACE / cid


def nothing_left(containerd: Containerd, ids: List[str], timeout: float = 30) -> None:
    """No bundle of ``ids``, no shim socket, no shim process, mount or cgroup, once
    containerd's own clean-up (after a dead shim, in the background) is done."""
    deadline = time.monotonic() + timeout
    while True:
        left = [f"bundle {cid}: {sorted(p.name for p in bundle(containerd, cid).iterdir())}"
                for cid in ids if bundle(containerd, cid).exists()]
        left += containerd.wait_settled(max(0.0, deadline - time.monotonic()))
        left += [f"shim socket {path}" for path in containerd.shim_sockets()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == []


def test_one_shim_per_pod(cri: CriClient, containerd: Containerd) -> None:
    pod = cri.pod_config("onepod")
    pod_id = cri.run_pod(pod, HANDLER)
    (shim,) = containerd.shim_pids()
    ids = [cri.create_container(pod_id, pod, f"c{i}", ["sleep", "600"]) for i in range(2)]
    for cid in ids:
        cri.start_container(cid)
    # The containers' start found the pod's daemon: the same socket, the same process.
    assert containerd.shim_pids() == [shim]
    addresses = {(bundle(containerd, cid) / "address").read_text() for cid in [pod_id, *ids]}
    assert len(addresses) == 1, addresses
    # A container's end leaves the daemon serving the rest of the pod.
    cri.runtime.StopContainer(api.StopContainerRequest(container_id=ids[0], timeout=0),
                              timeout=cri.timeout)
    cri.runtime.RemoveContainer(api.RemoveContainerRequest(container_id=ids[0]),
                                timeout=cri.timeout)
    assert containerd.shim_pids() == [shim]
    assert cri.exec_sync(ids[1], ["echo", "served"]).stdout == b"served\n"
    cri.stop_pod(pod_id)
    cri.remove_pod(pod_id)
    nothing_left(containerd, [pod_id, *ids])     # it exited with the last one


def test_twenty_pods_exit_at_once(cri: CriClient, containerd: Containerd,
                                  tmp_path: Path) -> None:
    """20 pods x 3 containers, all exiting at once, each with its own code: CRI
    learns each exit from its TaskExit (a lost one would hang the pod)."""
    trigger = tmp_path / "trigger"
    trigger.mkdir()
    pods: Dict[str, Tuple[api.PodSandboxConfig, List[Tuple[str, int]]]] = {}

    def one(i: int) -> None:
        pod = cri.pod_config(f"exit{i}")
        pod_id = cri.run_pod(pod, HANDLER)
        pods[pod_id] = (pod, [])
        for k in range(3):
            code = 3 * i + k + 1
            # Each waits for the trigger file, then exits with its own code.
            cid = cri.create_container(
                pod_id, pod, f"x{k}",
                ["sh", "-c", f"while [ ! -e /t/go ]; do sleep 0.05; done; exit {code}"],
                mounts=[(str(trigger), "/t")])
            cri.start_container(cid)
            pods[pod_id][1].append((cid, code))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(20)))
    shims = containerd.shim_pids()
    assert len(shims) == 20, shims            # one per pod
    (trigger / "go").touch()
    got = {cid: cri.wait_exited(cid, timeout=120).exit_code
           for _, containers in pods.values() for cid, _ in containers}
    want = {cid: code for _, containers in pods.values() for cid, code in containers}
    assert got == want

    def remove(pod_id: str) -> None:
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(remove, pods))
    nothing_left(containerd, [*pods, *want])


def test_create_into_a_pod_being_removed(cri: CriClient, containerd: Containerd) -> None:
    """CreateContainer + StartContainer racing StopPodSandbox + RemovePodSandbox: each
    either runs (and goes with the pod) or fails with an error about the sandbox."""
    errors: List[str] = []
    ids: List[str] = []
    for round_ in range(3):
        pod = cri.pod_config(f"going{round_}")
        pod_id = cri.run_pod(pod, HANDLER)
        ids.append(pod_id)
        go = threading.Barrier(2, timeout=60)

        def remove() -> None:
            go.wait()
            try:
                cri.stop_pod(pod_id)
                cri.remove_pod(pod_id)
            except grpc.RpcError as exc:    # CRI's own refusal; removed again below
                assert "can't be removed" in str(exc.details()), exc

        def create() -> None:
            go.wait()
            for k in range(3):
                try:
                    cid = cri.create_container(pod_id, pod, f"late{k}", ["sleep", "600"])
                    ids.append(cid)
                    cri.start_container(cid)
                except grpc.RpcError as exc:
                    errors.append(str(exc.details()))

        threads = [threading.Thread(target=f) for f in (remove, create)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            assert not t.is_alive()
        if any(p.id == pod_id for p in cri.pods()):   # CRI refused while a start ran
            cri.stop_pod(pod_id)
            cri.remove_pod(pod_id)
    # What failed said why: naming the sandbox, or (CRI's own refusal) the
    # container RemovePodSandbox was removing as StartContainer came.
    for message in errors:
        assert "sandbox" in message or "container is in removing state" in message, errors
    assert cri.pods() == []
    assert cri.containers() == []
    nothing_left(containerd, ids)


def kill_shim(containerd: Containerd) -> None:
    (shim,) = containerd.shim_pids()
    fd = os.pidfd_open(shim)
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)


def test_shim_killed_during_pod_runs(cri: CriClient, containerd: Containerd) -> None:
    """The pod's shim SIGKILLed in 10 pod runs, at three points of a pod's life: the
    containers are reported exited, and RemovePodSandbox leaves nothing."""
    steps: List[Callable[[str, api.PodSandboxConfig], List[str]]] = []

    def after_sandbox(pod_id: str, pod: api.PodSandboxConfig) -> List[str]:
        kill_shim(containerd)
        return []

    def after_create(pod_id: str, pod: api.PodSandboxConfig) -> List[str]:
        cri.create_container(pod_id, pod, "created", ["sleep", "600"])
        kill_shim(containerd)
        return []     # no task yet: nothing to report; removed with the pod

    def after_start(pod_id: str, pod: api.PodSandboxConfig) -> List[str]:
        ids = [cri.create_container(pod_id, pod, f"run{k}", ["sleep", "600"])
               for k in range(2)]
        for cid in ids:
            cri.start_container(cid)
        kill_shim(containerd)
        return ids

    steps += [after_sandbox, after_create, after_start]
    all_ids: List[str] = []
    for i in range(10):
        pod = cri.pod_config(f"killed{i}")
        pod_id = cri.run_pod(pod, HANDLER)
        started = steps[i % 3](pod_id, pod)
        for cid in started:
            # containerd's clean-up says 137 (the delete action's), CRI's wait 255.
            assert cri.wait_exited(cid, timeout=60).exit_code in (137, 255)
        cri.stop_pod(pod_id)
        # Not ready at once only if StopPodSandbox waited for the sandbox's exit; with
        # the shim dead it may return before containerd's clean-up publishes it.
        cri.wait_pod_not_ready(pod_id)
        all_ids += [pod_id, *(c.id for c in cri.containers(pod_id))]
        cri.remove_pod(pod_id)
        nothing_left(containerd, all_ids)
    assert cri.pods() == []
