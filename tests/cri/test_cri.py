"""Pods through containerd's CRI plugin, over gRPC, on a real containerd.

Host-network pods (no CNI here) in the worker's private containerd
(tests/ctrd), once per runtime handler in ``HANDLERS`` (tests/ctrd/fixtures.py).
"""

from __future__ import annotations

import json

import pytest

from ctrd import CRI_NAMESPACE, Containerd
from ctrd.cri import CriClient, api

pytestmark = [pytest.mark.root, pytest.mark.containerd]


def test_pod_life(cri: CriClient, containerd: Containerd, cri_handler: str) -> None:
    pod = cri.pod_config("life")
    pod_id = cri.run_pod(pod, cri_handler)
    assert cri.pod_status(pod_id).state == api.SANDBOX_READY
    sleeper = cri.create_container(pod_id, pod, "sleeper", ["sleep", "600"])
    quitter = cri.create_container(pod_id, pod, "quitter", ["sh", "-c", "echo bye; exit 7"])
    cri.start_container(sleeper)
    cri.start_container(quitter)

    res = cri.exec_sync(sleeper, ["sh", "-c", "echo exec-ok; echo oops >&2; exit 5"])
    assert (res.exit_code, res.stdout, res.stderr) == (5, b"exec-ok\n", b"oops\n")
    assert cri.exec_sync(sleeper, ["cat", "/proc/1/cmdline"]).stdout == b"/pause\0"  # pod pid ns

    status = cri.wait_exited(quitter)
    assert status.exit_code == 7
    assert cri.container_status(sleeper).state == api.CONTAINER_RUNNING
    listed = {c.id: (c.metadata.name, c.state) for c in cri.containers(pod_id)}
    assert listed == {sleeper: ("sleeper", api.CONTAINER_RUNNING),
                      quitter: ("quitter", api.CONTAINER_EXITED)}

    # the runtime handler reached containerd: the sandbox runs on that runtime
    info = json.loads(containerd.ctr("containers", "info", pod_id,
                                     namespace=CRI_NAMESPACE).check().stdout)
    assert info["Runtime"]["Name"] == {"runc": "io.containerd.runc.v2",
                                       "pidsafe": "io.containerd.pidsafe.v1"}[cri_handler]

    cri.stop_pod(pod_id)
    assert cri.container_status(sleeper).state == api.CONTAINER_EXITED
    assert cri.container_status(sleeper).exit_code == 137   # SIGKILL
    assert cri.pod_status(pod_id).state == api.SANDBOX_NOTREADY
    cri.remove_pod(pod_id)
    assert cri.containers(pod_id) == []
    assert [p.id for p in cri.pods()] == []


def test_userns_options_are_dropped_by_containerd_1_6(cri: CriClient, containerd: Containerd
                                                      ) -> None:
    """containerd 1.6 reads no CRI ``userns_options``: the pod gets no user namespace.

    pkg/cri at v1.6.20 never calls ``GetUsernsOptions`` (support came in
    1.7.0, "cri: Support pods with user namespaces"): the sandbox's OCI spec
    has the namespaces of a plain pod and no ID mappings.  If this fails,
    the containerd under test passes user namespaces on to the runtime.
    """
    version = cri.version()
    if not version.runtime_version.startswith("1.6."):
        pytest.skip(f"about containerd 1.6 (this is {version.runtime_version})")
    mapping = [api.IDMapping(host_id=100000, container_id=0, length=65536)]
    pod = cri.pod_config("userns", userns=api.UserNamespace(mode=api.POD, uids=mapping,
                                                            gids=mapping))
    pod_id = cri.run_pod(pod, "runc")
    try:
        info = json.loads(containerd.ctr("containers", "info", pod_id,
                                         namespace=CRI_NAMESPACE).check().stdout)
        linux = info["Spec"]["linux"]
        assert "user" not in [ns["type"] for ns in linux["namespaces"]]
        assert "uidMappings" not in linux and "gidMappings" not in linux
    finally:
        cri.stop_pod(pod_id)
        cri.remove_pod(pod_id)


def test_user_namespace_pod_by_annotation(cri: CriClient, containerd: Containerd) -> None:
    """containerd 1.6 drops ``userns_options``: pidsafe's shim takes the pod annotation
    ``org.pidsafe.userns`` instead (passed on by the handler's ``pod_annotations``).

    The pause gets a user namespace with the mappings, the pod's other
    containers join it, and each rootfs is idmapped: the image's root-owned
    files read as 0 inside, though nothing was chowned.
    """
    pod = cri.pod_config("userns", annotations={"org.pidsafe.userns": "0:100000:65536"})
    pod_id = cri.run_pod(pod, "pidsafe")
    app = cri.create_container(pod_id, pod, "app", ["sleep", "600"])
    cri.start_container(app)

    def sh(script: str) -> str:
        res = cri.exec_sync(app, ["sh", "-c", script])
        assert res.exit_code == 0, res
        return res.stdout.decode()

    assert sh("cat /proc/self/uid_map /proc/self/gid_map").split() == \
        ["0", "100000", "65536"] * 2
    # One user namespace for the pod: the app's is the pause's (pid 1 of the pod).
    assert sh("readlink /proc/self/ns/user") == sh("readlink /proc/1/ns/user")
    assert sh("cat /proc/1/uid_map").split() == ["0", "100000", "65536"]
    # The image's files are owned by 0 on disk and read as 0 (idmapped), so do new ones.
    assert sh("stat -c %u:%g /bin/busybox /; touch /made; stat -c %u:%g /made").split() == \
        ["0:0"] * 3
    # Host-network pod: /sys is the host's, bound read-only (sysfs cannot be mounted).
    assert "/sys" in sh("grep ' /sys ' /proc/self/mounts | cut -d' ' -f2")
    cri.stop_pod(pod_id)
    cri.remove_pod(pod_id)


def test_bad_user_namespace_annotation(cri: CriClient, containerd: Containerd) -> None:
    import grpc

    pod = cri.pod_config("badns", annotations={"org.pidsafe.userns": "0:100000"})
    with pytest.raises(grpc.RpcError) as ei:
        cri.run_pod(pod, "pidsafe")
    assert "org.pidsafe.userns" in str(ei.value.details()), ei.value
