"""A pod's user namespace from ``org.pidsafe.userns`` (``_userns``): the config.json rewrite."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

from pidsafe.errors import RpcError
from pidsafe.shim import Code
from pidsafe.shim._userns import pod_userns

MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
SYSFS = {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]}


def config(kind: str, *, userns: Optional[str] = "0:100000:65536",
           namespaces: Any = None) -> Dict[str, Any]:
    ann = {"io.kubernetes.cri.sandbox-id": "pod", "io.kubernetes.cri.container-type": kind}
    if userns is not None:
        ann["org.pidsafe.userns"] = userns
    return {"annotations": ann, "mounts": [dict(SYSFS)],
            "linux": {"namespaces": namespaces if namespaces is not None
                      else [{"type": "pid"}, {"type": "mount"}]}}


def rewrite(tmp_path: Path, doc: Dict[str, Any], cid: str, userns: Optional[int] = None
            ) -> Any:
    (tmp_path / "config.json").write_text(json.dumps(doc))
    maps, fd = pod_userns(str(tmp_path), doc, cid, lambda sandbox: userns)
    assert fd == userns
    assert json.loads((tmp_path / "config.json").read_text()) == doc   # what create reads
    assert os.listdir(tmp_path) == ["config.json"]                      # no temp file left
    return maps


def test_the_sandbox_gets_a_new_user_namespace(tmp_path: Path) -> None:
    doc = config("sandbox")
    assert rewrite(tmp_path, doc, "pod") is None           # the mappings are in the config
    linux = doc["linux"]
    assert linux["namespaces"][0] == {"type": "user"}
    assert linux["uidMappings"] == linux["gidMappings"] == MAP
    # Host network (no network namespace): sysfs cannot be mounted; /sys is bound.
    assert doc["mounts"] == [{"destination": "/sys", "type": "bind", "source": "/sys",
                              "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}]


def test_a_container_joins_its_sandboxs_namespace(tmp_path: Path) -> None:
    doc = config("container")
    fd = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)   # the pause's, here
    try:
        maps = rewrite(tmp_path, doc, "app", userns=fd)
    finally:
        os.close(fd)
    assert maps == ("0:100000:65536", "0:100000:65536")   # for its idmapped rootfs
    assert doc["linux"]["namespaces"][0] == {"type": "user", "path": f"/proc/self/fd/{fd}"}
    assert "uidMappings" not in doc["linux"]


def test_without_its_sandbox_a_container_gets_its_own(tmp_path: Path) -> None:
    doc = config("container")
    assert rewrite(tmp_path, doc, "app", userns=None) is None
    assert doc["linux"]["namespaces"][0] == {"type": "user"}
    assert doc["linux"]["uidMappings"] == MAP


def test_sysfs_stays_with_a_network_namespace_of_its_own(tmp_path: Path) -> None:
    doc = config("sandbox", namespaces=[{"type": "network"}])
    rewrite(tmp_path, doc, "pod")
    assert doc["mounts"] == [SYSFS]
    # Joined by path: kept unless it is the host's (the shim's own) network namespace.
    doc = config("sandbox", namespaces=[{"type": "network", "path": "/proc/self/ns/net"}])
    rewrite(tmp_path, doc, "pod")
    assert doc["mounts"][0]["type"] == "bind"


def test_left_alone(tmp_path: Path) -> None:
    doc = config("sandbox", userns=None)
    (tmp_path / "config.json").write_text("{}")
    assert pod_userns(str(tmp_path), doc, "pod", lambda s: None) == (None, None)
    assert (tmp_path / "config.json").read_text() == "{}"          # not rewritten
    own = [{"type": "user"}]
    doc = config("sandbox", namespaces=own)
    assert pod_userns(str(tmp_path), doc, "pod", lambda s: None) == (None, None)
    assert doc["linux"]["namespaces"] == own and doc["mounts"] == [SYSFS]


@pytest.mark.parametrize("value", ["0:100000", "x", "0:100000:0", "0:1:5,0:9:5"])
def test_a_bad_map_is_refused(tmp_path: Path, value: str) -> None:
    doc = config("sandbox", userns=value)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RpcError) as ei:
        pod_userns(str(tmp_path), doc, "pod", lambda s: None)
    assert ei.value.code == Code.INVALID_ARGUMENT
    assert "org.pidsafe.userns" in str(ei.value)
    assert (tmp_path / "config.json").read_text() == "{}"
