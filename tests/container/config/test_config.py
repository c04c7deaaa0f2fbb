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
from pidsafe.container.config._process import CAPABILITIES

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
    assert spec.ignored == ()
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
    assert spec.ignored == ()   # annotations are free-form: none of their keys is listed


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


def test_read_config_checks_the_same_bytes_once_and_new_bytes_afresh(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe.container.config import _spec

    calls = []
    real = _spec.parse_spec
    monkeypatch.setattr(_spec, "parse_spec", lambda doc: calls.append(doc) or real(doc))
    monkeypatch.setattr(_spec, "_last_read", None)   # what an earlier test read
    doc = runc_spec()
    (tmp_path / "config.json").write_text(json.dumps(doc))
    document, spec = _spec.read_config(tmp_path)
    again, same = _spec.read_config(tmp_path)
    assert len(calls) == 1 and same is spec
    # The document is the caller's own, every time (a record keeps and edits it).
    assert again == document and again is not document
    doc["hostname"] = "other"
    (tmp_path / "config.json").write_text(json.dumps(doc))
    _, changed = _spec.read_config(tmp_path)
    assert len(calls) == 2 and changed.hostname == "other"
    doc["linux"]["namespaces"] = [{"type": "bogus"}]
    (tmp_path / "config.json").write_text(json.dumps(doc))
    for _ in range(2):   # a refused document is checked again, and refused again
        with pytest.raises(pidsafe.ConfigError, match="namespaces"):
            _spec.read_config(tmp_path)
    assert len(calls) == 4

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
            node[key] = copy.deepcopy(value)   # edits never share (or change) their value
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
    (_set("root", DELETE), "root", False),
    (_set("root.path", ""), "root.path", False),
    (_set("root.readonly", 1), "root.readonly", False),
    (_set("hostname", 7), "hostname", False),
    (_set("mounts[0].type", "nfs"), "mounts[0].type", True),
    (_set("mounts[0].destination", ""), "mounts[0].destination", False),
    (_set("mounts[1].options", "nosuid"), "mounts[1].options", False),
    (_set("mounts[0].uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
     "mounts[0].gidMappings", False),
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
    (_set("hooks", [{"path": "/x"}]), "hooks", False),
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
    from pidsafe.container.config._seccomp import SeccompArg, SeccompSpec, SeccompSyscall

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
    from pidsafe.container.config._hooks import Hook, Hooks

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


# --- Extensibility: unknown properties are ignored and listed; the spec's own are not -----

def _user_ns(doc: Dict[str, Any]) -> None:
    doc["linux"]["namespaces"].append({"type": "user"})
    for key in ("uidMappings", "gidMappings"):
        doc["linux"][key] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def _idmapped_bind(doc: Dict[str, Any]) -> None:
    doc["mounts"].append({"destination": "/data", "type": "bind", "source": "/srv",
                          "options": ["rbind"]})
    for key in ("uidMappings", "gidMappings"):
        doc["mounts"][-1][key] = [{"containerID": 0, "hostID": 1000, "size": 1}]


_SECCOMP = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}

#: (what the config needs first, the unknown property's JSON path, its value).
UNKNOWN = [
    (None, "unknownTopLevel", {}),
    (None, "x-vendor", {"linux": {"anything": [1, 2]}}),   # listed once, not looked into
    (None, "process.frobnicate", 1),
    (_set("process.consoleSize", {"height": 24, "width": 80}), "process.consoleSize.depth", 1),
    (None, "process.user.nickname", "nobody"),
    (None, "process.capabilities.sometimes", ["CAP_KILL"]),
    (None, "process.rlimits[0].comment", "files"),
    (None, "root.fstype", "ext4"),
    (None, "mounts[0].extra", True),
    (_idmapped_bind, "mounts[7].uidMappings[0].note", "x"),
    (None, "linux.namespace", []),   # a typo of namespaces: the spec says ignore it
    (None, "linux.namespaces[2].flags", 0),
    (_user_ns, "linux.gidMappings[0].comment", "x"),
    (_set("linux.devices", [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]),
     "linux.devices[0].comment", "fuse"),
    (None, "linux.resources.frobnicate", {}),
    (_set("linux.resources.memory", {"limit": 1 << 28}), "linux.resources.memory.high", 1),
    (_set("linux.resources.cpu", {"shares": 2}), "linux.resources.cpu.weight", 10),
    (_set("linux.resources.pids", {"limit": 5}), "linux.resources.pids.max", 5),
    (None, "linux.resources.devices[0].comment", "deny all"),
    (_set("linux.seccomp", _SECCOMP), "linux.seccomp.comment", "x"),
    (_set("linux.seccomp", _SECCOMP), "linux.seccomp.syscalls[0].comment", "x"),
    (_set("linux.seccomp", _SECCOMP), "linux.seccomp.syscalls[0].args[0].comment", "x"),
    (None, "hooks.postStart", []),
    (_set("hooks", {"poststop": [{"path": "/x"}]}), "hooks.poststop[0].user", "root"),
    # Sections for other operating systems: nothing to do on Linux.
    (None, "windows", {"layerFolders": []}),
    (None, "solaris", {"milestone": "x"}),
    (None, "zos", {"namespaces": []}),
    (None, "freebsd", {"jail": {}}),
]


def _delete(path: str) -> Callable[[Dict[str, Any]], None]:
    return _set(path, DELETE)


@pytest.mark.parametrize("prepare, where, value", UNKNOWN, ids=[u[1] for u in UNKNOWN])
def test_unknown_properties_are_ignored_and_listed(
        prepare: Any, where: str, value: Any) -> None:
    """runtime-spec "Extensibility": a runtime MUST ignore a property it does not know."""
    doc = copy.deepcopy(runc_spec())
    if prepare is not None:
        prepare(doc)
    clean = parse_spec(copy.deepcopy(doc))
    assert clean.ignored == ()
    _set(where, value)(doc)
    spec = parse_spec(doc)
    assert spec.ignored == (where,)
    assert spec.replace(ignored=()) == clean   # it changed nothing else
    _delete(where)(doc)
    assert parse_spec(doc) == clean


def test_the_table_is_loaded_only_for_a_config_with_something_to_ignore(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pidsafe-runc create pays no import for a config without unknown
    properties, and still lists every one when the table was not loaded."""
    import sys

    name = "pidsafe.container.config._spec_keys"
    for prepare, where, value in UNKNOWN:
        monkeypatch.delitem(sys.modules, name, raising=False)
        doc = copy.deepcopy(runc_spec())
        if prepare is not None:
            prepare(doc)
        parse_spec(doc)
        assert name not in sys.modules, where
        _set(where, value)(doc)
        assert parse_spec(doc).ignored == (where,)
        assert name in sys.modules


def test_the_reader_and_the_table_agree_on_their_shared_names() -> None:
    from pidsafe.container.config import _reader, _spec_keys

    assert frozenset(_reader.OTHER_PLATFORMS) == _spec_keys.OTHER_PLATFORMS
    assert frozenset(_reader.ID_MAPPING_KEYS) == _spec_keys.DEFINED["linux.uidMappings[]"]


def test_ignored_paths_are_listed_in_document_order() -> None:
    doc = runc_spec()
    doc["zzz"] = 1
    doc["linux"]["namespace"] = [{"type": "pid"}]
    doc["process"]["capabilities"]["sometimes"] = []
    doc["mounts"][2]["note"] = "pts"
    doc["linux"]["resources"]["nope"] = None   # null is absent: not listed
    assert parse_spec(doc).ignored == (
        "process.capabilities.sometimes", "mounts[2].note", "linux.namespace", "zzz")


def test_a_misspelt_field_is_ignored_not_refused() -> None:
    """The spec's consequence: ``linux.namespace`` is not ``linux.namespaces``, so
    the container gets no namespaces from it; the warning is all a user sees."""
    doc = runc_spec()
    doc["linux"]["namespace"] = doc["linux"].pop("namespaces")
    doc["hostname"] = ""   # without a uts namespace
    spec = parse_spec(doc)
    assert spec.linux.namespaces == () and spec.ignored == ("linux.namespace",)


def _seccomp_with(key: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    return _set("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW", key: value})


#: Every property runtime-spec defines that pidsafe does not implement and that
#: a Linux config can carry: (JSON path, a valid value).  Written out here, not
#: taken from the table, so that dropping a name from the table fails.
UNIMPLEMENTED = [
    ("vm", {"hypervisor": {"path": "/usr/bin/qemu"}}),
    ("process.commandLine", "sh"),
    ("process.apparmorProfile", "docker-default"),
    ("process.selinuxLabel", "system_u:system_r:container_t"),
    ("process.scheduler", {"policy": "SCHED_BATCH", "nice": 1}),
    ("process.ioPriority", {"class": "IOPRIO_CLASS_IDLE", "priority": 0}),
    ("process.execCPUAffinity", {"initial": "0", "final": "0-1"}),
    ("process.user.username", "root"),
    ("linux.timeOffsets", {"monotonic": {"secs": 1, "nanosecs": 0}}),
    ("linux.netDevices", {"eth1": {"name": "eth0"}}),
    ("linux.mountLabel", "system_u:object_r:container_file_t"),
    ("linux.intelRdt", {"closID": "guaranteed"}),
    ("linux.personality", {"domain": "LINUX32"}),
    ("linux.memoryPolicy", {"mode": "MPOL_BIND", "nodes": "0"}),
    ("linux.resources.blockIO", {"weight": 10}),
    ("linux.resources.hugepageLimits", [{"pageSize": "2MB", "limit": 1 << 21}]),
    ("linux.resources.network", {"classID": 1}),
    ("linux.resources.rdma", {"mlx5_1": {"hcaHandles": 3}}),
    ("linux.resources.unified", {"memory.high": "1000000"}),
    ("linux.resources.memory.kernel", 1 << 20),
    ("linux.resources.memory.kernelTCP", 1 << 20),
    ("linux.resources.cpu.realtimeRuntime", 1000),
    ("linux.resources.cpu.realtimePeriod", 1000),
    ("linux.seccomp.listenerPath", "/run/notify.sock"),
    ("linux.seccomp.listenerMetadata", "x"),
]


@pytest.mark.parametrize("where, value", UNIMPLEMENTED, ids=[u[0] for u in UNIMPLEMENTED])
def test_spec_fields_pidsafe_does_not_implement_are_refused(where: str, value: Any) -> None:
    from pidsafe.container.config._spec_keys import DEFINED, ignored_paths

    doc = copy.deepcopy(runc_spec())
    parent, _, key = where.rpartition(".")
    if parent == "linux.seccomp":
        _seccomp_with(key, value)(doc)
    else:
        _set(where, value)(doc)
    assert key in DEFINED[parent], f"{where} is missing from _spec_keys.DEFINED"
    assert where not in ignored_paths(doc)
    with pytest.raises(pidsafe.UnsupportedConfigError) as info:
        parse_spec(doc)
    assert info.value.json_path == where, str(info.value)


def test_a_spec_field_nobody_reads_is_refused_by_name() -> None:
    """What a parser does not read is refused when the spec defines it, even
    without a refusal of its own (``linux.netDevices`` has none)."""
    doc = runc_spec()
    doc["linux"]["netDevices"] = {"eth1": {}}
    with pytest.raises(pidsafe.UnsupportedConfigError,
                       match=r"^linux\.netDevices: .*runtime-spec defines it; pidsafe does not"):
        parse_spec(doc)


def test_an_object_the_table_does_not_know_refuses_every_unread_key() -> None:
    from pidsafe.container.config._reader import JsonObject

    o = JsonObject({"a": 1, "b": None}, "somewhere.new")
    with pytest.raises(pidsafe.UnsupportedConfigError, match=r"^somewhere\.new\.a: "):
        o.finish()
    o.raw("a")
    o.finish()


def test_the_table_knows_every_object_pidsafe_parses() -> None:
    """A full config (every implemented object, each with an unknown key) lists
    exactly those keys: no object pidsafe reads is missing from the table."""
    from pidsafe.container.config._spec_keys import DEFINED, object_path

    doc = runc_spec()
    _user_ns(doc)
    _idmapped_bind(doc)
    doc["process"]["consoleSize"] = {"height": 1, "width": 1}
    doc["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    doc["linux"]["resources"].update(memory={"limit": 1 << 28}, cpu={"shares": 2},
                                     pids={"limit": 5})
    doc["linux"]["seccomp"] = copy.deepcopy(_SECCOMP)
    doc["hooks"] = {kind: [{"path": "/x"}] for kind in DEFINED["hooks"]}
    assert parse_spec(doc).ignored == ()
    objects = []

    def mark(node: Any, path: str) -> None:
        if isinstance(node, dict) and object_path(path) in DEFINED:
            for key, child in list(node.items()):
                mark(child, f"{path}.{key}" if path else key)
            node["zz-unknown"] = 1
            objects.append(f"{path}.zz-unknown" if path else "zz-unknown")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                mark(item, f"{path}[{i}]")

    mark(doc, "")
    spec = parse_spec(doc)
    assert sorted(spec.ignored) == sorted(objects)
    assert {object_path(p.rpartition(".")[0]) for p in objects} == {
        o for o in DEFINED if not o.startswith(("linux.timeOffsets", "linux.intelRdt",
                                                "linux.personality", "linux.memoryPolicy",
                                                "linux.resources.blockIO",
                                                "linux.resources.hugepageLimits",
                                                "linux.resources.network", "process.scheduler",
                                                "process.ioPriority",
                                                "process.execCPUAffinity"))}
