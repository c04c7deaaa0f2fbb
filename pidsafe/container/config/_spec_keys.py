"""The properties runtime-spec defines, object by object.

Two rules meet here.  runtime-spec config.md, "Extensibility": a runtime
MUST ignore a property it does not know (it MAY log it) and MUST NOT fail
on it.  pidsafe's own rule: a field the spec defines but pidsafe does not
implement is refused by its JSON path, never silently skipped.  This table
draws the line: a key listed for its object is the spec's, so an unread one
is refused (:meth:`._reader.JsonObject.finish`); a key not listed is
ignored, and :func:`ignored_paths` lists it so that the caller can show it
(``Spec.ignored``, pidsafe-runc's warnings).

Names are those of runtime-spec 1.0 to 1.3 (and its main branch): a
property that an older release defined and a newer one renamed stays
listed, so a config written for that release is refused rather than
half-run.  Objects are named by their JSON path with array indices as
``[]`` (``linux.seccomp.syscalls[].args[]``).  Maps with free keys
(``annotations``, ``linux.sysctl``, ``linux.resources.unified``,
``linux.resources.rdma``, ``linux.netDevices``) have no entry: their keys
are data, not properties.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, List, Optional, Tuple

_HOOK = frozenset({"path", "args", "env", "timeout"})
#: As ``_reader.ID_MAPPING_KEYS`` (this module imports nothing of pidsafe's).
_ID_MAPPING = frozenset({"containerID", "hostID", "size"})
_THROTTLE = frozenset({"major", "minor", "rate"})
_TIME_OFFSET = frozenset({"secs", "nanosecs"})

#: Top-level sections for other operating systems.  config.md
#: ("Platform-specific configuration") scopes each to its platform: "MAY be
#: set if the target platform of this spec is" FreeBSD, Solaris or z/OS,
#: "MUST be set if" it is Windows.  On Linux they configure nothing (a
#: Linux-on-Windows config carries both ``windows`` and ``linux``), so they
#: are not fields pidsafe leaves undone: they are ignored and listed, as runc
#: ignores them (its spec conversion reads only ``linux``).  ``vm`` is not
#: among them: it asks a Linux host for a hardware-virtualised container
#: (hypervisor, guest kernel), which pidsafe does not provide, so it is
#: refused.
#: ``_reader.OTHER_PLATFORMS`` holds the same names.
OTHER_PLATFORMS: FrozenSet[str] = frozenset({"windows", "solaris", "zos", "freebsd"})

#: Object path -> the properties runtime-spec defines for it.
DEFINED: Dict[str, FrozenSet[str]] = {
    "": frozenset({
        "ociVersion", "process", "root", "hostname", "domainname", "mounts", "hooks",
        "annotations", "linux", "vm"}) | OTHER_PLATFORMS,
    "root": frozenset({"path", "readonly"}),
    "mounts[]": frozenset({
        "destination", "type", "source", "options", "uidMappings", "gidMappings"}),
    "mounts[].uidMappings[]": _ID_MAPPING,
    "mounts[].gidMappings[]": _ID_MAPPING,
    "process": frozenset({
        "terminal", "consoleSize", "cwd", "env", "args", "commandLine", "rlimits",
        "apparmorProfile", "capabilities", "noNewPrivileges", "oomScoreAdj", "scheduler",
        "selinuxLabel", "ioPriority", "execCPUAffinity", "user"}),
    "process.consoleSize": frozenset({"height", "width"}),
    "process.user": frozenset({"uid", "gid", "umask", "additionalGids", "username"}),
    "process.capabilities": frozenset({
        "bounding", "effective", "inheritable", "permitted", "ambient"}),
    "process.rlimits[]": frozenset({"type", "soft", "hard"}),
    "process.scheduler": frozenset({
        "policy", "nice", "priority", "flags", "runtime", "deadline", "period"}),
    "process.ioPriority": frozenset({"class", "priority"}),
    "process.execCPUAffinity": frozenset({"initial", "final"}),
    "hooks": frozenset({
        "prestart", "createRuntime", "createContainer", "startContainer", "poststart",
        "poststop"}),
    "hooks.prestart[]": _HOOK,
    "hooks.createRuntime[]": _HOOK,
    "hooks.createContainer[]": _HOOK,
    "hooks.startContainer[]": _HOOK,
    "hooks.poststart[]": _HOOK,
    "hooks.poststop[]": _HOOK,
    "linux": frozenset({
        "namespaces", "uidMappings", "gidMappings", "timeOffsets", "devices", "netDevices",
        "cgroupsPath", "resources", "rootfsPropagation", "seccomp", "sysctl", "maskedPaths",
        "readonlyPaths", "mountLabel", "intelRdt", "personality", "memoryPolicy"}),
    "linux.namespaces[]": frozenset({"type", "path"}),
    "linux.uidMappings[]": _ID_MAPPING,
    "linux.gidMappings[]": _ID_MAPPING,
    "linux.timeOffsets": frozenset({"boottime", "monotonic"}),
    "linux.timeOffsets.boottime": _TIME_OFFSET,
    "linux.timeOffsets.monotonic": _TIME_OFFSET,
    "linux.devices[]": frozenset({"path", "type", "major", "minor", "fileMode", "uid", "gid"}),
    "linux.resources": frozenset({
        "devices", "memory", "cpu", "pids", "blockIO", "hugepageLimits", "network", "rdma",
        "unified"}),
    "linux.resources.devices[]": frozenset({"allow", "type", "major", "minor", "access"}),
    "linux.resources.memory": frozenset({
        "limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
        "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"}),
    "linux.resources.cpu": frozenset({
        "shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus",
        "mems", "idle"}),
    "linux.resources.pids": frozenset({"limit"}),
    "linux.resources.blockIO": frozenset({
        "weight", "leafWeight", "weightDevice", "throttleReadBpsDevice",
        "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice",
        # runtime-spec 1.0.0's schema spelt these two so.
        "throttleReadIopsDevice", "throttleWriteIopsDevice"}),
    "linux.resources.blockIO.weightDevice[]": frozenset({
        "major", "minor", "weight", "leafWeight"}),
    "linux.resources.blockIO.throttleReadBpsDevice[]": _THROTTLE,
    "linux.resources.blockIO.throttleWriteBpsDevice[]": _THROTTLE,
    "linux.resources.blockIO.throttleReadIOPSDevice[]": _THROTTLE,
    "linux.resources.blockIO.throttleWriteIOPSDevice[]": _THROTTLE,
    "linux.resources.blockIO.throttleReadIopsDevice[]": _THROTTLE,
    "linux.resources.blockIO.throttleWriteIopsDevice[]": _THROTTLE,
    "linux.resources.hugepageLimits[]": frozenset({"pageSize", "limit"}),
    "linux.resources.network": frozenset({"classID", "priorities"}),
    "linux.resources.network.priorities[]": frozenset({"name", "priority"}),
    "linux.seccomp": frozenset({
        "defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath",
        "listenerMetadata", "syscalls"}),
    "linux.seccomp.syscalls[]": frozenset({"names", "action", "errnoRet", "args"}),
    "linux.seccomp.syscalls[].args[]": frozenset({"index", "value", "valueTwo", "op"}),
    "linux.intelRdt": frozenset({
        "closID", "l3CacheSchema", "memBwSchema", "schemata", "enableMonitoring",
        # runtime-spec 1.1 and 1.2; 1.3 replaced them by enableMonitoring.
        "enableCMT", "enableMBM"}),
    "linux.personality": frozenset({"domain", "flags"}),
    "linux.memoryPolicy": frozenset({"mode", "nodes", "flags"}),
}


def object_path(path: str) -> str:
    """``linux.seccomp.syscalls[3].args[0]`` -> ``linux.seccomp.syscalls[].args[]``."""
    if "[" not in path:
        return path
    out: List[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        out.append(ch)
        i += 1
        if ch == "[":
            while i < len(path) and path[i].isdigit():
                i += 1
    return "".join(out)


def defined_keys(path: str) -> Optional[FrozenSet[str]]:
    """The properties runtime-spec defines for the object at ``path`` (a JSON
    path with indices), or ``None`` for an object this table does not know."""
    return DEFINED.get(object_path(path))


def ignored_paths(document: Any, root: str = "") -> Tuple[str, ...]:
    """The JSON paths of every property pidsafe ignores in ``document`` (the
    object at ``root``): keys runtime-spec does not define, in document
    order, and the sections for other platforms (:data:`OTHER_PLATFORMS`).

    Only objects of :data:`DEFINED` are looked into; ``null`` is absent.
    """
    out: List[str] = []
    _walk(document, root, object_path(root), out)
    return tuple(out)


def _walk(value: Any, path: str, table: str, out: List[str]) -> None:
    if not isinstance(value, dict):
        return
    defined = DEFINED.get(table)
    if defined is None:
        return
    for key, child in value.items():
        if child is None:
            continue
        where = f"{path}.{key}" if path else key
        if key not in defined or (not table and key in OTHER_PLATFORMS):
            out.append(where)
            continue
        sub = f"{table}.{key}" if table else key
        if isinstance(child, dict):
            _walk(child, where, sub, out)
        elif isinstance(child, list):
            for i, item in enumerate(child):
                _walk(item, f"{where}[{i}]", sub + "[]", out)
