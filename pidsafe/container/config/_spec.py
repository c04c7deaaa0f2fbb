"""An OCI bundle's ``config.json`` as typed, frozen records (:class:`~pidsafe._value.Record`).

:func:`load_spec` reads and checks the whole document before anything is
created: a malformed field raises :class:`~pidsafe.ConfigError` naming its
JSON path (``linux.namespaces[2].type: must be one of ...``), and every
field runtime-spec defines that pidsafe does not implement raises
:class:`~pidsafe.UnsupportedConfigError` naming its path, never silently
ignored.  A property the spec does not define is ignored, as the spec
requires, and listed in :attr:`Spec.ignored`.  See README.md,
"Containers", for the supported fields.
"""

from __future__ import annotations

import os
from ... import _lite
from ..._value import Record, field

from ..._sigsafe import critical
from ...errors import ConfigError, IDMapError, UnsupportedConfigError
from ...userns import IDMap
from ._hooks import Hooks, parse_hooks
from ._linux import LinuxSpec, parse_linux
from ._process import ProcessSpec, parse_process
from ._reader import OTHER_PLATFORMS, JsonObject, check_str, id_mappings, ignored_properties

TYPE_CHECKING = False   # not typing's: typing is only for mypy here
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple, Union

#: Mount types config.json may use (anything with a bind/rbind option is a bind).
MOUNT_TYPES = frozenset({"proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2",
                         "bind", "none", ""})
_BIND_OPTIONS = frozenset({"bind", "rbind"})
#: Largest config.json pidsafe reads (runc's own limit is far beyond any real one).
MAX_CONFIG_SIZE = 16 << 20


class Root(Record):
    """``root``: the container's root filesystem."""

    path: str
    readonly: bool = False


class MountSpec(Record):
    """One ``mounts`` entry, in order; ``destination`` is inside the container."""

    destination: str
    type: str = ""
    source: str = ""
    options: Tuple[str, ...] = ()
    uid_mappings: Optional[IDMap] = None
    gid_mappings: Optional[IDMap] = None

    @property
    def is_bind(self) -> bool:
        """A bind mount: type ``bind``, or a ``bind``/``rbind`` option."""
        return self.type == "bind" or bool(_BIND_OPTIONS.intersection(self.options))


class Spec(Record):
    """A whole ``config.json`` (runtime-spec 1.x), checked."""

    oci_version: str
    process: ProcessSpec
    root: Root
    hostname: str = ""
    domainname: str = ""
    mounts: Tuple[MountSpec, ...] = ()
    linux: LinuxSpec = field(default_factory=LinuxSpec)
    annotations: Tuple[Tuple[str, str], ...] = ()
    hooks: Hooks = field(default_factory=Hooks)
    #: JSON paths of the properties pidsafe ignored, in document order:
    #: those runtime-spec does not define (its "Extensibility" section says
    #: a runtime MUST ignore them) and sections for other platforms
    #: (``windows`` ...).  A misspelt field (``linux.namespace``) lands here.
    ignored: Tuple[str, ...] = ()

    def rootfs(self, bundle: Union[str, "os.PathLike[str]"]) -> str:
        """``root.path`` made absolute: relative paths are relative to the bundle."""
        return os.path.normpath(os.path.join(os.fspath(bundle), self.root.path))

    def annotation_dict(self) -> Dict[str, str]:
        return dict(self.annotations)


def _mount(value: Any, path: str) -> MountSpec:
    o = JsonObject(value, path)
    dest = o.get_str("destination")
    if not dest:
        raise ConfigError(o.where("destination"), "must not be empty")
    if not dest.startswith("/"):
        # runtime-spec 1.1: relative destinations are relative to the root.
        dest = "/" + dest
    kind = o.get_str("type", "")
    source = o.get_str("source", "")
    options = tuple(o.get_list("options", check_str))
    spec = MountSpec(dest, kind, source, options)
    if kind not in MOUNT_TYPES and not spec.is_bind:
        raise UnsupportedConfigError(o.where("type"), f"{kind} mounts")
    if kind in ("none", "") and not spec.is_bind:
        raise ConfigError(o.where("type"), "is required unless options has bind or rbind")
    if spec.is_bind and not source:
        raise ConfigError(o.where("source"), "is required for a bind mount")
    maps = []
    for key in ("uidMappings", "gidMappings"):
        raw = o.raw(key)
        try:
            maps.append(None if raw is None else IDMap.from_oci(id_mappings(raw)))
        except IDMapError as exc:
            raise ConfigError(o.where(key), str(exc)) from None
    if (maps[0] is None) != (maps[1] is None):
        missing = "gidMappings" if maps[1] is None else "uidMappings"
        raise ConfigError(o.where(missing), "is required with the other mapping")
    if maps[0] is not None and not spec.is_bind:
        raise ConfigError(o.where("uidMappings"), "idmapped mounts must be bind mounts")
    o.finish()
    return MountSpec(dest, kind, source, options, maps[0], maps[1])


def parse_spec(document: Any) -> Spec:
    """Check a parsed ``config.json`` and return its :class:`Spec`.

    Raises:
        ConfigError: a field is malformed (its JSON path is named).
        UnsupportedConfigError: a field pidsafe does not implement.
    """
    o = JsonObject(document, "")
    version = o.get_str("ociVersion")
    major = version.split(".", 1)[0]
    if major != "1":
        raise UnsupportedConfigError("ociVersion", f"runtime-spec {version}; pidsafe reads 1.x")
    process_obj = o.get_obj("process")
    if process_obj is None:
        raise ConfigError("process", "is required")
    process = parse_process(process_obj)
    root_obj = o.get_obj("root")
    if root_obj is None:
        raise ConfigError("root", "is required on Linux")
    root_path = root_obj.get_str("path")
    if not root_path:
        raise ConfigError("root.path", "must not be empty")
    root = Root(root_path, root_obj.get_bool("readonly", False))
    root_obj.finish()
    hostname = o.get_str("hostname", "")
    domainname = o.get_str("domainname", "")
    mounts = tuple(o.get_list("mounts", _mount))
    linux = parse_linux(o.get_obj("linux"))
    annotations = tuple(sorted(o.get_str_map("annotations").items()))
    hooks = parse_hooks(o.get_obj("hooks"))
    o.unsupported("vm", "hardware-virtualised (vm) containers")
    if any(o.raw(key) is not None for key in OTHER_PLATFORMS):
        from ._spec_keys import DEFINED  # noqa: F401  (ignored, listed: see OTHER_PLATFORMS)
    o.finish()
    for key, value in (("hostname", hostname), ("domainname", domainname)):
        if value and linux.namespace("uts") is None:
            raise ConfigError(key, "needs a uts namespace in linux.namespaces")
    for key, _ in linux.sysctl:
        _check_sysctl_namespace(key, linux)
    return Spec(version, process, root, hostname, domainname, mounts, linux, annotations,
                hooks, ignored_properties(document))


def _check_sysctl_namespace(key: str, linux: LinuxSpec) -> None:
    """Only namespaced sysctls, and only in a namespace of the container's own."""
    ipc = key.startswith(("kernel.msg", "kernel.sem", "kernel.shm", "fs.mqueue."))
    if ipc:
        if linux.namespace("ipc") is None:
            raise ConfigError(f"linux.sysctl.{key}", "needs an ipc namespace of its own")
        return
    if key.startswith("net."):
        if linux.namespace("network") is None:
            raise ConfigError(f"linux.sysctl.{key}", "needs a network namespace of its own")
        return
    if key in ("kernel.hostname", "kernel.domainname"):
        if linux.namespace("uts") is None:
            raise ConfigError(f"linux.sysctl.{key}", "needs a uts namespace of its own")
        return
    raise ConfigError(f"linux.sysctl.{key}", "is not a namespaced sysctl: it would change "
                                             "the host")


def load_spec(bundle: Union[str, "os.PathLike[str]"]) -> Spec:
    """Read and check ``BUNDLE/config.json``.

    Raises:
        FileNotFoundError, PermissionError, ...: the file cannot be read
            (``filename`` is its path).
        ConfigError: not JSON, or a field is malformed (its JSON path is named).
        UnsupportedConfigError: a field pidsafe does not implement.
    """
    return read_config(bundle)[1]


def read_config(bundle: Union[str, "os.PathLike[str]"]) -> Tuple[Any, Spec]:
    """``BUNDLE/config.json`` as parsed JSON, and checked as a :class:`Spec`.

    Raises:
        FileNotFoundError, PermissionError, ...: the file cannot be read
            (``filename`` is its path).
        ConfigError: not JSON, or a field is malformed (its JSON path is named).
        UnsupportedConfigError: a field pidsafe does not implement.
    """
    path = os.path.join(os.fspath(bundle), "config.json")
    with critical:   # a raising signal handler must not split open from close
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        try:
            data = os.read(fd, MAX_CONFIG_SIZE + 1)
            while len(data) <= MAX_CONFIG_SIZE:
                more = os.read(fd, MAX_CONFIG_SIZE + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            os.close(fd)
    if len(data) > MAX_CONFIG_SIZE:
        raise ConfigError("(document)", f"{path} is larger than {MAX_CONFIG_SIZE} bytes")
    try:
        document = _lite.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError("(document)", f"{path} is not valid JSON: {exc}") from None
    # The same bytes give the same Spec (immutable, and parse_spec looks at
    # nothing but the document), so a create of the bundle read last checks
    # it again only by comparing bytes.  The document is parsed anew: it is
    # the caller's (a container's record keeps it, and ``update`` edits it).
    global _last_read
    last = _last_read   # one tuple: another thread replaces it whole
    if last is not None and last[0] == data:
        return document, last[1]
    spec = parse_spec(document)
    _last_read = (data, spec)
    return document, spec


#: The bytes :func:`read_config` checked last, and their Spec.
_last_read: Optional[Tuple[bytes, Spec]] = None
