"""What a container handle knows from its state file: the record, and what follows from it.

:class:`RecordedState` is owned by a :class:`pidsafe.Container`.  It keeps
the record (:class:`._record.ContainerRecord`) as last read or saved, the
spec parsed from its config, and turns them into the container's status,
its OCI state, its cgroup and the hooks that run after the fact.  Each
operation that changes the container reads the record again under the
state's lock (:meth:`RecordedState.reload`); a ``StateFile`` is made per
call, so that a handle may be used from several threads.
"""

from __future__ import annotations

import os

from ..errors import StateError
from ..state import StateFile
from ._record import ContainerRecord

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Tuple

    from .cgroup import Cgroup
    from .config import Spec


class RecordedState:
    """The recorded state of container ``container_id`` under ``state_dir``.

    Args:
        record: the record as read (or as create saved it).
        spec: the spec parsed from ``record.config``, if the caller has it.
    """

    def __init__(self, state_dir: str, container_id: str, record: ContainerRecord,
                 spec: Optional[Spec] = None) -> None:
        self.state_dir = state_dir
        self.id = container_id
        self.record = record
        self._spec = spec
        #: (the record's cgroup entry, its handle) for :meth:`exec_cgroup`.
        self._exec_cgroup: Optional[Tuple[Dict[str, Any], Cgroup]] = None

    def state_file(self) -> StateFile:
        """The container's state file (a new object: one per call, one per thread)."""
        return StateFile(self.state_dir, self.id)

    def reload(self, state: StateFile) -> ContainerRecord:
        """The record ``state`` holds now (``state`` locked), kept as this handle's."""
        self.record = ContainerRecord.load(state)
        return self.record

    def keep(self, record: ContainerRecord, config_changed: bool = False) -> None:
        """Keep ``record`` (as an operation on the container read or saved it) as
        this handle's; with ``config_changed``, its spec is parsed again when asked."""
        self.record = record
        if config_changed:
            self._spec = None

    def status(self, alive: Callable[[], bool], record: Optional[ContainerRecord] = None
               ) -> str:
        """The container's status as ``record`` (default: the one kept) says it,
        with ``alive`` saying whether init still runs."""
        record = record if record is not None else self.record
        if record.status == "creating":
            return "creating"
        if not alive():
            return "stopped"
        if record.frozen():
            return "paused"
        # start() unlinks the gate once it is open (as runc does its exec
        # FIFO): that, not a save of the state, says "started" to later readers.
        return "running" if record.started or not os.path.exists(record.fifo) else "created"

    def oci_state(self, status: str, pid: Optional[int]) -> Dict[str, Any]:
        """The OCI state with ``status``: ociVersion, id, status, bundle, annotations,
        and ``pid`` while init is created, running or paused."""
        record = self.record
        out: Dict[str, Any] = {"ociVersion": record.oci_version, "id": self.id,
                               "status": status, "bundle": record.bundle}
        if status in ("created", "running", "paused") and pid is not None:
            out["pid"] = pid
        if record.annotations:
            out["annotations"] = dict(record.annotations)
        return out

    def spec(self) -> Spec:
        """The config the container was created with, parsed once."""
        if self._spec is None:
            from .config import parse_spec

            self._spec = parse_spec(self.record.config)
        return self._spec

    def cgroup(self) -> Optional[Cgroup]:
        """The recorded cgroup (a new handle), or None for a container that has none."""
        from ._records import cgroup_of

        return cgroup_of(self.record)

    def exec_cgroup(self) -> Optional[Cgroup]:
        """The recorded cgroup for an exec to join: :meth:`cgroup`, made once
        per recorded cgroup (the record's ``cgroup`` entry) this handle sees.

        Made, the handle is a function of that entry alone: its paths were
        checked once against the cgroup mounts of this process (which say
        where a cgroup may be, not what it is: every exec opens the files
        at those paths anew, and fails as any open does).  So each exec
        spares reading ``/proc/self/cgroup`` and mountinfo and checking
        every path again.  The handle is only read (its files opened).
        """
        data = self.record.cgroup
        if not data:
            return None
        cached = self._exec_cgroup
        if cached is not None and cached[0] == data:
            return cached[1]
        cg = self.cgroup()
        assert cg is not None
        self._exec_cgroup = (data, cg)   # one store: a thread sees all or none
        return cg

    def remember_cgroup(self) -> None:
        """Make :meth:`exec_cgroup`'s handle now, from the layout the create
        that made the cgroup detected (no file is read): so a created
        container's first exec costs what its others do.  Raises nothing
        (a layout that changed meanwhile leaves the first exec to make it)."""
        from .cgroup import Cgroup, CgroupLayout

        data = self.record.cgroup
        layout = CgroupLayout.remembered()
        if not data or layout is None:
            return
        try:
            cg = Cgroup.load(data, layout=layout)
        except StateError:
            return
        self._exec_cgroup = (data, cg)

    def run_hooks(self, kind: str, status: str, pid: Optional[int]) -> None:
        """The hooks of ``kind`` that run in the runtime after the fact (poststart,
        poststop), given the state with ``status`` and ``pid``: a failure is a
        warning and the other hooks still run."""
        if self.record.has_hooks(kind):
            from ._hooks import run_hooks

            run_hooks(kind, getattr(self.spec().hooks, kind), self.record.hook_state(status, pid),
                      fatal=False)
