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
