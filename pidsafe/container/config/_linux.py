"""``linux`` of config.json: namespaces, maps, devices, cgroups, paths, sysctl.

runtime-spec config-linux.md.  What pidsafe does not implement yet
(mount labels, blockIO, hugepages, network classes, RDMA, Intel
RDT, personality ...) is refused by its JSON path.
"""

from __future__ import annotations

import stat
from ..._value import Record, field

from ...errors import ConfigError, IDMapError, UnsupportedConfigError
from ...userns import IDMap
from ._reader import MAX_U32, JsonObject, check_abs_path, check_unique, id_mappings, one_of

TYPE_CHECKING = False   # not typing's: typing is only for mypy here
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

    # The seccomp config (its records) only for a config that has one: most
    # bundles do not, and pidsafe-runc create pays for every import.
    from ._seccomp import SeccompSpec

#: OCI namespace types -> the /proc/PID/ns/ file name.
NAMESPACE_TYPES: Dict[str, str] = {
    "pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts",
    "user": "user", "cgroup": "cgroup", "time": "time"}

PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared",
                "unbindable", "runbindable")

_DEVICE_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class NamespaceSpec(Record):
    """One ``linux.namespaces`` entry: a new namespace, or ``path`` to join one."""

    type: str
    path: Optional[str] = None


class Device(Record):
    """One ``linux.devices`` entry (a node to create or bind into ``/dev``)."""

    path: str
    type: str
    major: int = 0
    minor: int = 0
    file_mode: Optional[int] = None
    uid: Optional[int] = None
    gid: Optional[int] = None

    @property
    def kind(self) -> int:
        """``stat.S_IFCHR``, ``S_IFBLK`` or ``S_IFIFO``."""
        return _DEVICE_TYPES[self.type]


class DeviceRule(Record):
    """One ``linux.resources.devices`` cgroup rule."""

    allow: bool
    type: str = "a"          # a, c or b
    major: Optional[int] = None   # None: any (*)
    minor: Optional[int] = None
    access: str = "rwm"


class MemoryLimits(Record):
    limit: Optional[int] = None
    reservation: Optional[int] = None
    swap: Optional[int] = None
    swappiness: Optional[int] = None
    disable_oom_killer: bool = False


class CpuLimits(Record):
    shares: Optional[int] = None
    quota: Optional[int] = None
    burst: Optional[int] = None
    period: Optional[int] = None
    cpus: str = ""
    mems: str = ""
    idle: Optional[int] = None


class Resources(Record):
    """``linux.resources``: what pidsafe can apply on cgroup v1 and v2."""

    memory: Optional[MemoryLimits] = None
    pids_limit: Optional[int] = None
    cpu: Optional[CpuLimits] = None
    devices: Tuple[DeviceRule, ...] = ()


class LinuxSpec(Record):
    """``linux`` of config.json."""

    namespaces: Tuple[NamespaceSpec, ...] = ()
    uid_mappings: Optional[IDMap] = None
    gid_mappings: Optional[IDMap] = None
    devices: Tuple[Device, ...] = ()
    cgroups_path: Optional[str] = None
    resources: Resources = field(default_factory=Resources)
    masked_paths: Tuple[str, ...] = ()
    readonly_paths: Tuple[str, ...] = ()
    rootfs_propagation: Optional[str] = None
    sysctl: Tuple[Tuple[str, str], ...] = ()
    seccomp: Optional[SeccompSpec] = None

    def namespace(self, kind: str) -> Optional[NamespaceSpec]:
        """The entry for namespace ``kind`` ("pid", "user" ...), or ``None``."""
        for ns in self.namespaces:
            if ns.type == kind:
                return ns
        return None


def _namespace(value: Any, path: str) -> NamespaceSpec:
    o = JsonObject(value, path)
    kind = o.get_str("type")
    one_of(kind, o.where("type"), NAMESPACE_TYPES)
    ns_path = o.raw("path")
    if ns_path is not None:
        ns_path = check_abs_path(ns_path, o.where("path"))
    o.finish()
    return NamespaceSpec(kind, ns_path)


def _idmap(o: JsonObject, key: str) -> Optional[IDMap]:
    value = o.raw(key)
    if value is None:
        return None
    try:
        return IDMap.from_oci(id_mappings(value))
    except IDMapError as exc:
        raise ConfigError(o.where(key), str(exc)) from None


def _device(value: Any, path: str) -> Device:
    o = JsonObject(value, path)
    dev_path = check_abs_path(o.get_str("path"), o.where("path"))
    kind = o.get_str("type")
    one_of(kind, o.where("type"), _DEVICE_TYPES)
    major = minor = 0
    if kind != "p":
        major = o.get_int("major", lo=0, hi=MAX_U32)
        minor = o.get_int("minor", lo=0, hi=MAX_U32)
    mode = o.get_int("fileMode", None, lo=0, hi=0o7777)
    uid = o.get_int("uid", None, lo=0, hi=MAX_U32 - 1)
    gid = o.get_int("gid", None, lo=0, hi=MAX_U32 - 1)
    o.finish(ignored=("major", "minor") if kind == "p" else ())
    return Device(dev_path, kind, major, minor, mode, uid, gid)


def _device_rule(value: Any, path: str) -> DeviceRule:
    o = JsonObject(value, path)
    allow = o.get_bool("allow")
    kind = o.get_str("type", "a")
    one_of(kind, o.where("type"), {"a": 0, "c": 0, "b": 0})
    major = o.get_int("major", None, lo=-1, hi=MAX_U32)
    minor = o.get_int("minor", None, lo=-1, hi=MAX_U32)
    access = o.get_str("access", "rwm")
    if not access or set(access) - set("rwm") or len(set(access)) != len(access):
        raise ConfigError(o.where("access"), f"must be letters from 'rwm', not {access!r}")
    o.finish()
    return DeviceRule(allow, kind, None if major in (None, -1) else major,
                      None if minor in (None, -1) else minor, access)


def _resources(o: Optional[JsonObject]) -> Resources:
    if o is None:
        return Resources()
    memory = None
    m = o.get_obj("memory")
    if m is not None:
        memory = MemoryLimits(
            limit=m.get_int("limit", None, lo=-1), reservation=m.get_int("reservation", None, lo=-1),
            swap=m.get_int("swap", None, lo=-1), swappiness=m.get_int("swappiness", None, lo=0, hi=100),
            disable_oom_killer=m.get_bool("disableOOMKiller", False))
        m.unsupported("kernel", "kernel memory limits (deprecated)", allow=lambda v: v == 0)
        m.unsupported("kernelTCP", "kernel TCP memory limits", allow=lambda v: v == 0)
        m.raw("useHierarchy")        # always on in cgroup v2 and modern v1
        m.raw("checkBeforeUpdate")   # only for `update`
        m.finish()
    pids_limit = None
    p = o.get_obj("pids")
    if p is not None:
        pids_limit = p.get_int("limit", lo=-1)
        p.finish()
    cpu = None
    c = o.get_obj("cpu")
    if c is not None:
        cpu = CpuLimits(
            shares=c.get_int("shares", None, lo=0), quota=c.get_int("quota", None),
            burst=c.get_int("burst", None, lo=0), period=c.get_int("period", None, lo=0),
            cpus=c.get_str("cpus", ""), mems=c.get_str("mems", ""), idle=c.get_int("idle", None, lo=0, hi=1))
        c.unsupported("realtimeRuntime", "real-time CPU budgets", allow=lambda v: v == 0)
        c.unsupported("realtimePeriod", "real-time CPU budgets", allow=lambda v: v == 0)
        c.finish()
    devices = tuple(o.get_list("devices", _device_rule))
    for key, what in (("blockIO", "block I/O limits"), ("hugepageLimits", "hugepage limits"),
                      ("network", "network classes and priorities"), ("rdma", "RDMA limits"),
                      ("unified", "raw cgroup v2 settings")):
        o.unsupported(key, what, allow=lambda v: v in ({}, []))
    o.finish()
    return Resources(memory, pids_limit, cpu, devices)


def parse_resources(value: Any, path: str = "linux.resources") -> Resources:
    """A ``linux.resources`` object on its own (``runc update --resources``).

    Raises:
        ConfigError, UnsupportedConfigError: as for config.json (``path`` names it).
    """
    return _resources(JsonObject(value, path))


#: Properties of ``linux`` pidsafe refuses when set, and what they are.
_UNSUPPORTED = {"intelRdt": "Intel RDT", "personality": "execution domains",
                "timeOffsets": "time namespace offsets", "memoryPolicy": "NUMA memory policy"}


def parse_linux(o: Optional[JsonObject]) -> LinuxSpec:
    """Parse the ``linux`` object.

    Raises:
        ConfigError: a field is malformed (its JSON path is named).
        UnsupportedConfigError: a field pidsafe does not implement.
    """
    if o is None:
        return LinuxSpec()
    namespaces = tuple(o.get_list("namespaces", _namespace))
    check_unique(o.where("namespaces"), [ns.type for ns in namespaces], "namespace {!r}")
    uid_map, gid_map = _idmap(o, "uidMappings"), _idmap(o, "gidMappings")
    user = next((ns for ns in namespaces if ns.type == "user"), None)
    if (uid_map is None) != (gid_map is None):
        missing = "gidMappings" if gid_map is None else "uidMappings"
        raise ConfigError(o.where(missing), "is required with the other mapping")
    if uid_map is not None and user is None:
        raise ConfigError(o.where("uidMappings"), "needs a user namespace in linux.namespaces")
    if uid_map is not None and user is not None and user.path is not None:
        raise ConfigError(o.where("uidMappings"),
                          "cannot be set when joining an existing user namespace (path)")
    if user is not None and user.path is None and uid_map is None:
        raise ConfigError(o.where("uidMappings"), "is required for a new user namespace")
    devices = tuple(o.get_list("devices", _device))
    cgroups_path = o.get_str("cgroupsPath", None)
    resources = _resources(o.get_obj("resources"))
    masked = tuple(o.get_list("maskedPaths", check_abs_path))
    readonly = tuple(o.get_list("readonlyPaths", check_abs_path))
    propagation = o.get_str("rootfsPropagation", None)
    if propagation is not None:
        one_of(propagation, o.where("rootfsPropagation"), dict.fromkeys(PROPAGATIONS, 0))
    sysctl = tuple(sorted(o.get_str_map("sysctl").items()))
    for key, _ in sysctl:
        if not key or "/" in key or ".." in key.split("."):
            raise ConfigError(f"{o.where('sysctl')}.{key}", "is not a sysctl name")
    seccomp_obj = o.get_obj("seccomp")
    seccomp: Optional[SeccompSpec] = None
    if seccomp_obj is not None:
        from ._seccomp import parse_seccomp

        seccomp = parse_seccomp(seccomp_obj)
    o.refuse_label("mountLabel")
    for key, what in _UNSUPPORTED.items():
        o.unsupported(key, what)
    o.finish()
    return LinuxSpec(namespaces, uid_map, gid_map, devices, cgroups_path, resources,
                     masked, readonly, propagation, sysctl, seccomp)

