"""Cgroup operations on a live container: pause, resume, update, as :class:`Container` methods."""

from __future__ import annotations

from ..errors import ContainerStateError
from ..state import StateFile

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Optional, Sequence

    from .config import Spec


class CgroupMixin:
    """:meth:`pause`, :meth:`resume` and :meth:`update` of :class:`pidsafe.Container`."""

    # The container's, set by Container.__init__.
    id: str
    state_dir: str
    _record: Dict[str, Any]
    _spec: Optional[Spec]

    def status(self) -> str:
        raise NotImplementedError   # Container's


    def pause(self, timeout: float = 10.0) -> None:
        """Freeze every process of the container (its cgroup's freezer).

        Returns once the kernel reports the cgroup frozen; :meth:`status`
        then says ``paused``.  On timeout the cgroup is thawed again.

        Raises:
            ContainerStateError: not created or running (paused, stopped).
            CgroupError: no freezer, or the freeze failed or timed out.
        """
        self._frozen_op("pause", ("created", "running"), lambda cg: cg.freeze(timeout))

    def resume(self) -> None:
        """Thaw a paused container.

        Raises:
            ContainerStateError: it is not paused.
            CgroupError: the thaw failed.
        """
        self._frozen_op("resume", ("paused",), lambda cg: cg.thaw())

    def _frozen_op(self, what: str, allowed: Sequence[str], fn: Callable[[Any], None]) -> None:
        from ._records import cgroup_of

        state = StateFile(self.state_dir, self.id)
        with state.locked():
            self._record = state.load()
            status = self.status()
            if status not in allowed:
                raise ContainerStateError(f"cannot {what} container {self.id!r}: it is "
                                          f"{status}")
            cg = cgroup_of(self._record)
            if cg is None:   # pragma: no cover - every container made here has one
                raise ContainerStateError(f"container {self.id!r} has no cgroup")
            fn(cg)

    def update(self, resources: Dict[str, Any]) -> None:
        """Change the cgroup limits of a live container (``runc update``).

        Args:
            resources: a ``linux.resources`` object as config.json spells
                it (``{"memory": {"limit": ...}, "pids": {"limit": ...}}``).
                Only the fields given change; ``devices`` are left as they
                were created (as runc does).  The new values are also kept
                in the container's recorded config.

        Raises:
            ConfigError, UnsupportedConfigError: a bad or unsupported field
                (named as ``linux.resources....``).
            ContainerStateError: the container is stopped.
            CgroupError: a write failed.  Whenever update raises, the
                cgroup files and the record are as they were.
        """
        from .config import parse_resources
        from ._records import cgroup_of

        parsed = parse_resources(resources).replace(devices=())
        given = {k: v for k, v in resources.items() if k != "devices"}
        state = StateFile(self.state_dir, self.id)
        with state.locked():
            record = state.load()
            self._record = record
            if self.status() in ("stopped", "creating"):
                raise ContainerStateError(f"cannot update container {self.id!r}: it is "
                                          f"{self.status()}")
            cg = cgroup_of(record)
            if cg is None:   # pragma: no cover - every container made here has one
                raise ContainerStateError(f"container {self.id!r} has no cgroup")
            previous = cg.update(parsed)   # all or nothing
            try:
                linux = record["config"].setdefault("linux", {})
                kept = linux.setdefault("resources", {})
                for key, value in given.items():
                    if isinstance(value, dict) and isinstance(kept.get(key), dict):
                        kept[key] = {**kept[key], **value}
                    else:
                        kept[key] = value
                state.save(record)
            except BaseException as exc:
                # The files follow the record: limits it does not hold are put
                # back.  (save() can fail after its rename, in the directory's
                # fsync: the new record is then in place, and so are the limits.)
                if not _saved(state, record):
                    cg.put_back(previous, exc)
                raise
            self._spec = None


def _saved(state: StateFile, record: Dict[str, Any]) -> bool:
    """Whether the state on disk is ``record`` (read under the lock we hold)."""
    import json

    try:
        # As JSON sees it: a caller's tuple is saved as a list.
        return bool(state.load() == json.loads(json.dumps(record)))
    except (OSError, ValueError):
        return False   # unreadable: not what we saved
