"""config.json -> Spec: supported fields, and every bad or unknown field named by JSON path."""

from __future__ import annotations

import copy
import json
import pathlib
import resource
from typing import Any, Callable, Dict

import pytest

import pidsafe
from pidsafe.container import Spec, load_spec, parse_spec
from pidsafe.container._config_process import CAPABILITIES

from bundles import CAPS, runc_spec


def test_runc_spec_parses_to_typed_values() -> None:
    spec = parse_spec(runc_spec())
    assert isinstance(spec, Spec)
    assert spec.process.args == ("sh",) and spec.process.cwd == "/"
    assert spec.process.env_dict()["TERM"] == "xterm"
    assert spec.process.capabilities is not None
    assert spec.process.capabilities.bounding == {CAPABILITIES[c] for c in CAPS}
    assert spec.process.capabilities.inheritable == frozenset()
    (nofile,) = spec.process.rlimits
    assert nofile.resource == resource.RLIMIT_NOFILE and nofile.soft == nofile.hard == 1024
    assert spec.process.no_new_privileges
    assert spec.root.readonly and spec.hostname == "runc"
    assert [m.type for m in spec.mounts] == ["proc", "tmpfs", "devpts", "tmpfs", "mqueue",
                                              "sysfs", "cgroup"]
    assert [ns.type for ns in spec.linux.namespaces] == ["pid", "network", "ipc", "uts",
                                                          "mount", "cgroup"]
    (rule,) = spec.linux.resources.devices
    assert not rule.allow and rule.type == "a" and rule.major is None and rule.access == "rwm"
    assert spec.linux.masked_paths[1] == "/proc/kcore"
    with pytest.raises(Exception):
        spec.hostname = "x"  # type: ignore[misc]  # frozen
    assert not spec.process.terminal and spec.process.console_size is None


def test_terminal_and_console_size() -> None:
    doc = runc_spec()
    doc["process"]["terminal"] = True
    doc["process"]["consoleSize"] = {"height": 24, "width": 80}
    spec = parse_spec(doc)
    assert spec.process.terminal and spec.process.console_size == (24, 80)


def test_user_namespace_bind_mounts_and_resources() -> None:
    doc = runc_spec()
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    doc["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    doc["linux"]["resources"].update({
        "memory": {"limit": 1 << 28, "swap": 1 << 29}, "pids": {"limit": 64},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0"}})
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1"}
    doc["linux"]["rootfsPropagation"] = "rslave"
    doc["linux"]["cgroupsPath"] = "/default/c1"
    doc["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                "fileMode": 0o666, "uid": 0, "gid": 0}]
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv/data",
                          "options": ["rbind", "ro", "idmap"],
                          "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                          "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    doc["process"]["user"] = {"uid": 1000, "gid": 1000, "umask": 0o22, "additionalGids": [5]}
    doc["process"]["oomScoreAdj"] = 100
    doc["annotations"] = {"io.example/a": "b"}
    spec = parse_spec(doc)
    assert spec.linux.uid_mappings == pidsafe.IDMap.parse("0:100000:65536")
    assert spec.linux.resources.memory is not None and spec.linux.resources.memory.limit == 1 << 28
    assert spec.linux.resources.pids_limit == 64
    assert spec.linux.resources.cpu is not None and spec.linux.resources.cpu.cpus == "0"
    assert dict(spec.linux.sysctl)["net.ipv4.ip_forward"] == "1"
    assert spec.linux.devices[0].major == 10
    data = spec.mounts[-1]
    assert data.is_bind and data.uid_mappings == pidsafe.IDMap.parse("0:1000:1")
    assert spec.process.user.additional_gids == (5,) and spec.process.user.umask == 0o22
    assert spec.annotation_dict() == {"io.example/a": "b"}


def test_load_spec_reads_the_bundle_and_resolves_root(tmp_path: pathlib.Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(runc_spec()))
    spec = load_spec(tmp_path)
    assert spec.rootfs(tmp_path) == str(tmp_path / "rootfs")
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(pidsafe.ConfigError, match="not valid JSON"):
        load_spec(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        load_spec(tmp_path / "missing")
    assert info.value.filename == str(tmp_path / "missing" / "config.json")


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    """An edit of the document at a dotted path ([i] for list items); DELETE removes."""
    def edit(doc: Dict[str, Any]) -> None:
        parts = path.replace("[", ".[").split(".")
        node: Any = doc
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
        last = parts[-1]
        key: Any = int(last[1:-1]) if last.startswith("[") else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return edit


DELETE = object()

BAD = [
    # (edit, JSON path named, unsupported?)
    (_set("ociVersion", DELETE), "ociVersion", False),
    (_set("ociVersion", "2.0.0"), "ociVersion", True),
    (_set("process", DELETE), "process", False),
    (_set("process.args", []), "process.args", False),
    (_set("process.args", ["sh", 3]), "process.args[1]", False),
    (_set("process.cwd", "relative"), "process.cwd", False),
    (_set("process.env", ["NOEQUALS"]), "process.env[0]", False),
    (_set("process.terminal", "yes"), "process.terminal", False),
    (_set("process.consoleSize", {"height": -1, "width": 80}), "process.consoleSize.height",
     False),
    (_set("process.consoleSize", {"height": 24, "width": 80, "depth": 1}),
     "process.consoleSize.depth", True),
    (_set("process.user.uid", -1), "process.user.uid", False),
    (_set("process.user.gid", "0"), "process.user.gid", False),
    (_set("process.user.additionalGids", [1, 2**32]), "process.user.additionalGids[1]", False),
    (_set("process.capabilities.bounding", ["CAP_FLY"]), "process.capabilities.bounding[0]",
     False),
    (_set("process.rlimits", [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]),
     "process.rlimits[0].type", False),
    (_set("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]),
     "process.rlimits[0].soft", False),
    (_set("process.rlimits", [{"type": "RLIMIT_CORE", "soft": 1, "hard": 1},
                              {"type": "RLIMIT_CORE", "soft": 1, "hard": 1}]),
     "process.rlimits[1].type", False),
    (_set("process.oomScoreAdj", 1001), "process.oomScoreAdj", False),
    (_set("process.apparmorProfile", "docker-default"), "process.apparmorProfile", True),
    (_set("process.selinuxLabel", "system_u:system_r:container_t"), "process.selinuxLabel",
     True),
    (_set("process.noNewPrivileges", "yes"), "process.noNewPrivileges", False),
    (_set("process.frobnicate", 1), "process.frobnicate", True),
    (_set("root", DELETE), "root", False),
    (_set("root.path", ""), "root.path", False),
    (_set("root.readonly", 1), "root.readonly", False),
    (_set("hostname", 7), "hostname", False),
    (_set("mounts[0].type", "nfs"), "mounts[0].type", True),
    (_set("mounts[0].destination", ""), "mounts[0].destination", False),
    (_set("mounts[1].options", "nosuid"), "mounts[1].options", False),
    (_set("mounts[0].uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
     "mounts[0].gidMappings", False),
    (_set("mounts[0].extra", True), "mounts[0].extra", True),
    (_set("linux.namespaces[0].type", "pidx"), "linux.namespaces[0].type", False),
    (_set("linux.namespaces[1]", {"type": "pid"}), "linux.namespaces[1].type", False),
    (_set("linux.namespaces[0].path", "relative/ns"), "linux.namespaces[0].path", False),
    (_set("linux.uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
     "linux.gidMappings", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_SOMETIMES"}),
     "linux.seccomp.defaultAction", False),
    (_set("linux.seccomp", {}), "linux.seccomp.defaultAction", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_NOTIFY"}),
     "linux.seccomp.defaultAction", True),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}),
     "linux.seccomp.defaultErrnoRet", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}),
     "linux.seccomp.architectures[0]", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_X"]}),
     "linux.seccomp.flags[1]", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}),
     "linux.seccomp.flags[0]", True),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/s"}),
     "linux.seccomp.listenerPath", True),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": [], "action": "SCMP_ACT_ERRNO"}]}), "linux.seccomp.syscalls[0].names", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}),
     "linux.seccomp.syscalls[0].errnoRet", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}),
     "linux.seccomp.syscalls[0].errnoRet", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}),
     "linux.seccomp.syscalls[0].args[0].index", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}),
     "linux.seccomp.syscalls[0].args[0].value", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]}),
     "linux.seccomp.syscalls[0].args[0].op", False),
    (_set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "comment": "x"}]}),
     "linux.seccomp.syscalls[0].comment", True),
    (_set("linux.mountLabel", "system_u:object_r:container_file_t"), "linux.mountLabel", True),
    (_set("linux.intelRdt", {"closID": "x"}), "linux.intelRdt", True),
    (_set("linux.resources.blockIO", {"weight": 10}), "linux.resources.blockIO", True),
    (_set("linux.resources.hugepageLimits", [{"pageSize": "2MB", "limit": 1}]),
     "linux.resources.hugepageLimits", True),
    (_set("linux.resources.memory", {"limit": "lots"}), "linux.resources.memory.limit", False),
    (_set("linux.resources.devices[0].access", "rwx"), "linux.resources.devices[0].access",
     False),
    (_set("linux.resources.devices[0].allow", DELETE), "linux.resources.devices[0].allow",
     False),
    (_set("linux.devices", [{"path": "/dev/x", "type": "z", "major": 1, "minor": 1}]),
     "linux.devices[0].type", False),
    (_set("linux.devices", [{"path": "dev/x", "type": "c", "major": 1, "minor": 1}]),
     "linux.devices[0].path", False),
    (_set("linux.maskedPaths", ["proc/kcore"]), "linux.maskedPaths[0]", False),
    (_set("linux.rootfsPropagation", "sideways"), "linux.rootfsPropagation", False),
    (_set("linux.sysctl", {"vm.swappiness": "1"}), "linux.sysctl.vm.swappiness", False),
    (_set("linux.sysctl", {"net.core.somaxconn": 5}), "linux.sysctl.net.core.somaxconn", False),
    (_set("hooks", {"prestart": [{"path": "bin/true"}]}), "hooks.prestart[0].path", False),
    (_set("hooks", {"prestart": [{"args": ["true"]}]}), "hooks.prestart[0].path", False),
    (_set("hooks", {"poststop": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststop[0].timeout", False),
    (_set("hooks", {"createRuntime": [{"path": "/x", "env": ["NOEQUALS"]}]}),
     "hooks.createRuntime[0].env[0]", False),
    (_set("hooks", {"startContainer": [{"path": "/x", "args": "sh"}]}),
     "hooks.startContainer[0].args", False),
    (_set("hooks", {"createContainer": [{"path": "/x", "user": "root"}]}),
     "hooks.createContainer[0].user", True),
    (_set("hooks", {"postStart": []}), "hooks.postStart", True),
    (_set("hooks", [{"path": "/x"}]), "hooks", False),
    (_set("windows", {"layerFolders": []}), "windows", True),
    (_set("unknownTopLevel", {}), "unknownTopLevel", True),
]


@pytest.mark.parametrize("edit, where, unsupported", BAD,
                         ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD)])
def test_every_bad_field_is_named_by_its_json_path(edit: Callable[[Dict[str, Any]], None],
                                                    where: str, unsupported: bool) -> None:
    doc = copy.deepcopy(runc_spec())
    edit(doc)
    with pytest.raises(pidsafe.ConfigError) as info:
        parse_spec(doc)
    assert info.value.json_path == where, str(info.value)
    assert str(info.value).startswith(where + ": ")
    assert isinstance(info.value, pidsafe.UnsupportedConfigError) == unsupported, str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, pidsafe.Error)


def test_hostname_needs_a_uts_namespace() -> None:
    doc = runc_spec()
    doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"] if ns["type"] != "uts"]
    with pytest.raises(pidsafe.ConfigError) as info:
        parse_spec(doc)
    assert info.value.json_path == "hostname"


def test_user_namespace_rules() -> None:
    doc = runc_spec()
    doc["linux"]["namespaces"].append({"type": "user"})
    with pytest.raises(pidsafe.ConfigError, match="required for a new user namespace"):
        parse_spec(doc)
    doc["linux"]["namespaces"][-1]["path"] = "/proc/1/ns/user"
    assert parse_spec(doc).linux.namespace("user") is not None   # joining: no maps needed
    doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = [
        {"containerID": 0, "hostID": 1, "size": 1}]
    with pytest.raises(pidsafe.ConfigError, match="joining"):
        parse_spec(doc)


def test_null_and_empty_values_count_as_absent() -> None:
    doc = runc_spec()
    doc["hooks"] = {"prestart": []}
    doc["linux"]["seccomp"] = None
    doc["process"]["apparmorProfile"] = ""
    doc["linux"]["resources"]["blockIO"] = {}
    parse_spec(doc)


def test_seccomp_is_read_into_typed_values() -> None:
    from pidsafe.container._config_seccomp import SeccompArg, SeccompSpec, SeccompSyscall

    doc = runc_spec()
    doc["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"], "listenerPath": "",
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [
                {"index": 0, "value": 2**64 - 1, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 255, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}]},
            {"names": ["ptrace"], "action": "SCMP_ACT_TRACE", "errnoRet": 0}]}
    assert parse_spec(doc).linux.seccomp == SeccompSpec(
        "SCMP_ACT_ERRNO", 38, ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86"),
        ("SECCOMP_FILTER_FLAG_SPEC_ALLOW",), (
            SeccompSyscall(("read", "write"), "SCMP_ACT_ALLOW"),
            SeccompSyscall(("personality",), "SCMP_ACT_ALLOW", None, (
                SeccompArg(0, 2**64 - 1, "SCMP_CMP_EQ"),
                SeccompArg(1, 255, "SCMP_CMP_MASKED_EQ", 8))),
            SeccompSyscall(("ptrace",), "SCMP_ACT_TRACE", 0)))
    assert parse_spec(runc_spec()).linux.seccomp is None


def test_relative_mount_destinations_are_relative_to_the_root() -> None:
    doc = runc_spec()
    doc["mounts"][0]["destination"] = "proc"
    assert parse_spec(doc).mounts[0].destination == "/proc"


def test_hooks_are_read_in_lifecycle_order_with_every_field() -> None:
    from pidsafe.container._config_hooks import Hook, Hooks

    doc = runc_spec()
    doc["hooks"] = {
        "poststop": [{"path": "/c", "args": ["c", "-f"]}],
        "prestart": [{"path": "/p1", "args": ["p1", "x"], "env": ["A=1", "A=2"],
                      "timeout": 5}, {"path": "/p2"}],
        "createRuntime": [{"path": "/r"}], "createContainer": [{"path": "/cc"}],
        "startContainer": [{"path": "/sc"}], "poststart": [{"path": "/ps", "timeout": 1}],
    }
    hooks = parse_spec(doc).hooks
    assert hooks == Hooks(
        prestart=(Hook("/p1", ("p1", "x"), ("A=1", "A=2"), 5), Hook("/p2")),
        create_runtime=(Hook("/r"),), create_container=(Hook("/cc"),),
        start_container=(Hook("/sc"),), poststart=(Hook("/ps", timeout=1),),
        poststop=(Hook("/c", ("c", "-f")),))
    assert hooks.prestart[1].argv == ("/p2",) and hooks.prestart[0].env_dict() == {"A": "2"}
    assert hooks.of("createRuntime") == (Hook("/r"),) and hooks.during_create
    assert parse_spec(runc_spec()).hooks == Hooks() and not Hooks().during_create
