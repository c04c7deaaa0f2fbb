"""ContainerRecord: what a container's state file holds, typed.

Create writes the record before each resource it makes exists, so that
``delete(force=True)`` from any process can undo a create killed half-way
(:mod:`._records`); start, state, kill, pause and delete read it back.  On
disk it is one JSON object under the state directory (:class:`pidsafe.StateFile`),
with the keys pidsafe has always written (``ociVersion``, ``mountRoot``,
``sharedMounts`` ...): a state written by an earlier pidsafe loads, and
one written now loads in it.  Keys this pidsafe does not know (a later
one's) are kept as they were, and written back.

pidsafe-runc reads it in every command: this module imports nothing but
pidsafe's leaves.
"""

from __future__ import annotations

from .._value import Record, field
from ..errors import ContainerLookupError, StaleProcessError, StateError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional

    from ..process import Process
    from ..state import StateFile

#: The runtime-spec version a container's state reports (``state()``, hooks).
OCI_VERSION = "1.0.2"

#: Field name -> JSON key, where they differ.
_KEYS = {"oci_version": "ociVersion", "mount_root": "mountRoot",
         "shared_mounts": "sharedMounts"}

#: Fields written only once set (absent from the JSON while None), as ever.
_SET_LATER = frozenset({"pid", "cgroup", "mounted", "mount_root", "shared_mounts"})

#: The JSON type each field has (null too where its default is None).
_TYPES: Dict[str, Any] = {
    "id": str, "bundle": str, "rootfs": str, "fifo": str, "config": dict, "status": str,
    "created": (int, float), "annotations": dict, "started": bool, "oci_version": str,
    "init": dict, "pid": int, "cgroup": dict, "mounts": list, "mount_root": str,
    "mounted": dict, "shared_mounts": dict}

#: What a state must have.
_REQUIRED = ("id", "bundle", "rootfs", "fifo", "config")


class ContainerRecord(Record, frozen=False):
    """A container's state (a mutable record, pidsafe/_value.py).

    Attributes:
        id: the container's id.
        bundle: the bundle's absolute path.
        rootfs: the root filesystem's path on the host.
        fifo: the start gate (a FIFO in the state directory).
        config: ``config.json`` as create read it (``update`` changes its
            ``linux.resources``): the container's spec is parsed from it.
        status: ``"creating"`` until create has finished, then ``"created"``.
        created: when create began (Unix time).
        annotations: the config's annotations.
        started: whether ``start`` has opened the gate, in the process that
            did (older pidsafe saved it too); a record read back says so by
            its gate FIFO being gone (start unlinks it, as runc does its
            exec FIFO), which saves a state write per start.
        oci_version: the runtime-spec version its state reports.
        init: init's identity (:meth:`pidsafe.ProcessIdentity.to_json`),
            once it exists.
        pid: init's pid (as seen by its creator), once it exists.
        cgroup: :meth:`Cgroup.to_dict <pidsafe.container.Cgroup.to_dict>`,
            once the cgroup exists.
        mounts: the rootfs mounts (containerd's), recorded before they are
            made (``type``, ``source``, ``target``, ``options``).
        mount_root: the directory their targets are relative to.
        mounted: their identities once made (:class:`pidsafe.Mounted`'s dict).
        shared_mounts: for a container without a mount namespace of its
            own, the mounts under its root before init ran
            (:mod:`._shared_mounts`).
        extra: keys of the JSON this pidsafe does not know, kept as they were.
    """

    id: str
    bundle: str
    rootfs: str
    fifo: str
    config: Dict[str, Any]
    status: str = "creating"
    created: float = 0.0
    annotations: Dict[str, str] = field(default_factory=dict)
    started: bool = False
    oci_version: str = OCI_VERSION
    init: Optional[Dict[str, Any]] = None
    pid: Optional[int] = None
    cgroup: Optional[Dict[str, Any]] = None
    mounts: List[Dict[str, Any]] = field(default_factory=list)
    mount_root: Optional[str] = None
    mounted: Optional[Dict[str, Any]] = None
    shared_mounts: Optional[Dict[str, Any]] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> Dict[str, Any]:
        """The JSON object the state file holds."""
        out: Dict[str, Any] = {}
        for name in self._fields:
            value = getattr(self, name)
            if name == "extra" or (value is None and name in _SET_LATER):
                continue
            out[_KEYS.get(name, name)] = value
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out

    @classmethod
    def load(cls, state: StateFile) -> "ContainerRecord":
        """The record ``state`` holds.

        Raises:
            FileNotFoundError: there is none.
            StateError: it is malformed (see :meth:`from_json`).
        """
        return cls.from_json(state.load())

    def save(self, state: StateFile, config_json: Optional[str] = None) -> None:
        """Replace what ``state`` holds with this record (``state`` locked).

        ``config_json``: :attr:`config` as JSON already (compact, keys
        sorted), from a caller that saves it unchanged several times (a
        create saves four times; the config is most of the file).

        Raises:
            OSError: as :meth:`pidsafe.StateFile.save`; the old state is then intact.
        """
        if config_json is None:
            state.save(self.to_json())
        else:
            state.save(self.to_json(), encoded={"config": config_json})

    def has_hooks(self, *kinds: str) -> bool:
        """Whether the config has hooks of these kinds (``"poststop"``...), or of
        any kind if none is named; read from the document, nothing parsed."""
        hooks = self.config.get("hooks")
        if not isinstance(hooks, dict):
            return False
        return any(hooks.get(k) for k in (kinds or tuple(hooks)))

    def hook_state(self, status: str, pid: Optional[int]) -> Dict[str, Any]:
        """The OCI state a hook reads on stdin: ociVersion, id, status, pid, bundle,
        annotations.

        ``status`` is the container's as of the hook's point in the lifecycle
        (``created`` for the create and startContainer hooks, ``running`` for
        poststart, ``stopped`` for poststop), not re-read: a program that has
        already exited by the time a poststart hook runs was still started.
        """
        out: Dict[str, Any] = {"ociVersion": self.oci_version, "id": self.id, "status": status}
        if pid is not None:
            out["pid"] = pid
        out["bundle"] = self.bundle
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def open_init(self) -> Optional[Process]:
        """The recorded init, opened and proven (:class:`pidsafe.ProcessIdentity`),
        or None if it is gone: its recorded pid is never trusted bare."""
        if not self.init:
            return None
        from ..process import ProcessIdentity

        try:
            return ProcessIdentity.from_json(self.init).open()
        except StaleProcessError:
            return None

    def frozen(self) -> bool:
        """Whether the recorded cgroup is frozen now (the container is paused)."""
        from .cgroup import is_paused

        return is_paused(self.cgroup)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "ContainerRecord":
        """The record a state file holds (written by this or an earlier pidsafe).

        Raises:
            StateError: it is not an object, misses ``id``, ``bundle``,
                ``rootfs``, ``fifo`` or ``config``, or a field has the wrong
                JSON type (the key is named).
        """
        if not isinstance(data, dict):
            raise StateError(f"container state is not a JSON object: {type(data).__name__}")
        known = {_KEYS.get(name, name): name for name in cls._fields if name != "extra"}
        values: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for key, value in data.items():
            name = known.get(key)
            if name is None:
                extra[key] = value
                continue
            if value is None and name not in _REQUIRED and cls._defaults.get(name) is None:
                continue
            kind = _TYPES[name]
            if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
                raise StateError(f"container state: {key} has the wrong type: {value!r}")
            values[name] = value
        missing = [k for k in _REQUIRED if k not in values]
        if missing:
            raise StateError(f"container state has no {missing[0]}")
        return cls(**values, extra=extra)


def find_id(state_dir: str, prefix: str) -> str:
    """The container id that is ``prefix``, or the one id under ``state_dir`` that
    starts with it.

    Raises:
        ContainerLookupError: none does, or several do (they are named).
    """
    from ..state import StateFile

    ids = StateFile.list(state_dir)
    if prefix in ids:
        return prefix
    matches = [i for i in ids if i.startswith(prefix)] if prefix else []
    if not matches:
        raise ContainerLookupError(f"no container {prefix!r} in {state_dir}")
    if len(matches) > 1:
        raise ContainerLookupError(f"{prefix!r} is ambiguous: it matches " + ", ".join(matches))
    return matches[0]
