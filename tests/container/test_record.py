"""ContainerRecord (pidsafe/container/_record.py): the state file, typed and compatible.

``states/`` holds state files written by pidsafe before the record was
typed (a plain dict): a started container, and a created one with
containerd's rootfs mounts and no mount namespace of its own (so every
key the dict ever had).  They must load, and save back unchanged.
"""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any, Dict

import pytest

import pidsafe
from pidsafe.container._record import OCI_VERSION, ContainerRecord

STATES = pathlib.Path(__file__).parent / "states"
FILES = sorted(p.name for p in STATES.glob("*.json"))


def _state(name: str) -> Dict[str, Any]:
    data = json.loads((STATES / name).read_text())
    assert isinstance(data, dict)
    return data


def test_the_saved_states_are_there() -> None:
    assert FILES == ["created-shared-mounts.json", "started.json"]


@pytest.mark.parametrize("name", FILES)
def test_a_state_written_before_loads_and_saves_back_unchanged(name: str) -> None:
    data = _state(name)
    record = ContainerRecord.from_json(data)
    assert record.to_json() == data
    assert json.loads(json.dumps(record.to_json())) == data
    assert record.id == data["id"] and record.config == data["config"]
    assert record.oci_version == data["ociVersion"] and record.extra == {}


def test_every_key_of_the_old_dict_is_a_field() -> None:
    record = ContainerRecord.from_json(_state("created-shared-mounts.json"))
    assert record.mounts and record.mount_root and record.mounted and record.shared_mounts
    assert record.cgroup and record.init and record.pid == record.init["pid"]
    assert (record.status, record.started) == ("created", False)
    started = ContainerRecord.from_json(_state("started.json"))
    assert started.started and started.annotations == {"org.example": "yes"}
    assert started.mount_root is None and started.mounted is None


def test_a_new_record_writes_what_create_always_wrote() -> None:
    record = ContainerRecord("c1", "/b", "/b/rootfs", "/s/c1.fifo", {"ociVersion": "1.0.2"},
                             created=1.5)
    # Keys only set later (pid, cgroup, mounts' identities...) are absent until then.
    assert record.to_json() == {
        "ociVersion": OCI_VERSION, "id": "c1", "bundle": "/b", "rootfs": "/b/rootfs",
        "status": "creating", "created": 1.5, "annotations": {}, "started": False,
        "mounts": [], "fifo": "/s/c1.fifo", "init": None, "config": {"ociVersion": "1.0.2"}}
    record.pid = 42
    record.mount_root = "/b"
    assert record.to_json()["pid"] == 42 and record.to_json()["mountRoot"] == "/b"


def test_keys_of_a_later_pidsafe_are_kept() -> None:
    data = _state("started.json")
    data["checkpoint"] = {"path": "/x"}
    record = ContainerRecord.from_json(data)
    assert record.extra == {"checkpoint": {"path": "/x"}}
    assert record.to_json() == data


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("fifo"), "has no fifo"),
    (lambda d: d.pop("config"), "has no config"),
    (lambda d: d.update(id=7), "id has the wrong type"),
    (lambda d: d.update(config=None), "config has the wrong type"),
    (lambda d: d.update(pid=True), "pid has the wrong type"),
    (lambda d: d.update(started="yes"), "started has the wrong type"),
    (lambda d: d.update(cgroup=[]), "cgroup has the wrong type"),
    (lambda d: d.update(mountRoot=3), "mountRoot has the wrong type"),
])
def test_a_malformed_state_is_a_state_error(edit: Any, message: str) -> None:
    data = _state("started.json")
    edit(data)
    with pytest.raises(pidsafe.StateError, match=message):
        ContainerRecord.from_json(data)


def test_null_where_a_field_may_be_unset() -> None:
    data = _state("started.json")
    data.update(pid=None, cgroup=None, init=None, mountRoot=None)
    record = ContainerRecord.from_json(data)
    assert (record.pid, record.cgroup, record.init, record.mount_root) == (None,) * 4


def test_not_an_object_is_a_state_error() -> None:
    with pytest.raises(pidsafe.StateError, match="not a JSON object"):
        ContainerRecord.from_json([])  # type: ignore[arg-type]


@pytest.mark.root
@pytest.mark.parametrize("name", FILES)
def test_a_container_loads_from_a_state_written_before(name: str,
                                                       tmp_path: pathlib.Path) -> None:
    data = _state(name)
    shutil.copy(STATES / name, tmp_path / f"{data['id']}.json")
    c = pidsafe.Container.load(str(tmp_path), data["id"])
    try:
        # Its init is long gone (open-then-prove: the recorded pid is not trusted).
        assert c.pid is None and c.status() == "stopped"
        assert c.state() == {"ociVersion": data["ociVersion"], "id": data["id"],
                             "status": "stopped", "bundle": data["bundle"],
                             **({"annotations": data["annotations"]}
                                if data["annotations"] else {})}
        assert c.spec().process.args == ("sleep", "1000")
        assert c.rootfs == data["rootfs"] and c.created == data["created"]
    finally:
        c.close()
