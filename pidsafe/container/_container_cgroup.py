"""Cgroup operations on a live container: pause, resume, update.

:class:`CgroupControl` is owned by a :class:`pidsafe.Container`.  Each
operation takes the container's state lock, reads the record as saved,
checks the container's status, acts on the recorded cgroup and returns
the record (which the container keeps).
"""

from __future__ import annotations

from ..errors import ContainerStateError
from ._record import ContainerRecord

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Sequence

    from ..state import StateFile
    from .cgroup import Cgroup
    from ._recorded_state import RecordedState


class CgroupControl:
    """Pause, resume and update of one container's cgroup, under its state's lock.

    Args:
        recorded: the container's recorded state.
        alive: whether the container's init still runs.
    """

    def __init__(self, recorded: RecordedState, alive: Callable[[], bool]) -> None:
        self._recorded = recorded
        self._id = recorded.id
        self._alive = alive

    def pause(self, timeout: float) -> ContainerRecord:
        """Freeze the cgroup (see :meth:`pidsafe.Container.pause`)."""
        return self._locked("pause", ("created", "running"), lambda cg: cg.freeze(timeout))

    def resume(self) -> ContainerRecord:
        """Thaw the cgroup (see :meth:`pidsafe.Container.resume`)."""
        return self._locked("resume", ("paused",), lambda cg: cg.thaw())

    def _locked(self, what: str, allowed: Sequence[str], fn: Callable[[Cgroup], None]
                ) -> ContainerRecord:
        state = self._recorded.state_file()
        with state.locked():
            record = ContainerRecord.load(state)
            fn(self._cgroup(record, what, allowed))
            return record

    def _cgroup(self, record: ContainerRecord, what: str, allowed: Sequence[str]) -> Cgroup:
        from ._records import cgroup_of

        status = self._recorded.status(self._alive, record)
        if status not in allowed:
            raise ContainerStateError(f"cannot {what} container {self._id!r}: it is "
                                      f"{status}")
        cg = cgroup_of(record)
        if cg is None:   # pragma: no cover - every container made here has one
            raise ContainerStateError(f"container {self._id!r} has no cgroup")
        return cg

    def update(self, resources: Dict[str, Any]) -> ContainerRecord:
        """Change the limits, and the recorded config with them (see
        :meth:`pidsafe.Container.update`): all or nothing."""
        from .config import parse_resources

        parsed = parse_resources(resources).replace(devices=())
        given = {k: v for k, v in resources.items() if k != "devices"}
        state = self._recorded.state_file()
        with state.locked():
            record = ContainerRecord.load(state)
            cg = self._cgroup(record, "update", ("created", "running", "paused"))
            previous = cg.update(parsed)   # all or nothing
            try:
                linux = record.config.setdefault("linux", {})
                kept = linux.setdefault("resources", {})
                for key, value in given.items():
                    if isinstance(value, dict) and isinstance(kept.get(key), dict):
                        kept[key] = {**kept[key], **value}
                    else:
                        kept[key] = value
                record.save(state)
            except BaseException as exc:
                # The files follow the record: limits it does not hold are put
                # back.  (save() can fail after its rename, in the directory's
                # fsync: the new record is then in place, and so are the limits.)
                if not _saved(state, record):
                    cg.put_back(previous, exc)
                raise
            return record


def _saved(state: StateFile, record: ContainerRecord) -> bool:
    """Whether the state on disk is ``record`` (read under the lock we hold)."""
    import json

    try:
        # As JSON sees it: a caller's tuple is saved as a list.
        return bool(state.load() == json.loads(json.dumps(record.to_json())))
    except (OSError, ValueError):
        return False   # unreadable: not what we saved
