"""Undoing what a container's record says exists (delete, a failed create)."""

from __future__ import annotations

import errno

from .. import _lite, _log
from .. import errors as pidsafe_errors
from ..errors import note
from ..process import Process
from ..state import StateFile
from .cgroup import Cgroup
from ._gate import remove_gate

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from ._record import ContainerRecord

# The mount layer only for records that hold rootfs mounts (containerd's
# rootfs, given to create): pidsafe-runc's delete of a bundle's container
# does not import it (tests/cli/test_runc_imports.py).
if TYPE_CHECKING:
    from ..mount import Mount

#: How long delete(force=True) waits for a killed init to be gone.
KILL_TIMEOUT = 10.0


def _mount_from_json(d: Dict[str, Any]) -> Mount:
    from ..mount import Mount

    return Mount(d["type"], d["source"], d["target"], d["options"])



def cgroup_of(record: ContainerRecord) -> Optional[Cgroup]:
    """The cgroup ``record`` describes, or None if it has none (yet)."""
    return Cgroup.load(record.cgroup) if record.cgroup else None


def undo(state: StateFile, record: ContainerRecord) -> None:
    """Everything the record says exists, undone; the state destroyed last.

    Every step is tried even if an earlier one fails.  If any failed, the
    state is kept (so that a later ``delete(force=True)`` finds what is
    left) and the first error is raised, the others noted on it.
    """
    _log.debug("container", "undoing container %s: cgroup, mounts, gate fifo, state",
               record.id)
    errors: List[BaseException] = []

    def step(fn: Callable[[], None]) -> None:
        try:
            fn()
        except (OSError, pidsafe_errors.Error) as exc:
            errors.append(exc)

    cg = cgroup_of(record)
    if cg is not None:
        def remove_cgroup() -> None:
            assert cg is not None
            cg.kill(_lite.SIGKILL)   # anything init left (none, with a pid namespace)
            cg.delete(timeout=KILL_TIMEOUT)

        step(remove_cgroup)
    shared = record.shared_mounts
    if shared:
        # Made by init in the runtime's mount namespace, on top of the rest.
        from ._shared_mounts import unmount_new

        step(lambda: unmount_new(shared))
    mounted = record.mounted
    if mounted:
        from ..mount import Mounted
        from ..mount import unmount_all

        step(lambda: unmount_all(Mounted.from_dict(mounted)))
    elif record.mounts:
        # Killed between recording the mounts and knowing their identity.
        root = record.mount_root or ""
        step(lambda: _unmount_present([_mount_from_json(m) for m in record.mounts], root))
    step(lambda: remove_gate(record.fifo))
    if errors:
        for other in errors[1:]:
            note(errors[0], f"also: {other}")
        raise errors[0]
    state.destroy()


def end(proc: Process) -> None:
    """SIGKILL init through its pidfd and wait until it is gone."""
    try:
        proc.kill()
    except (ProcessLookupError, ValueError):
        pass
    try:
        proc.wait(KILL_TIMEOUT)
    except ChildProcessError:  # pragma: no cover - not our child: poll its pidfd
        pass


def _unmount_present(mounts: List[Mount], root: str) -> None:
    """unmount_all() of the rootfs mounts that are still there."""
    from ..mount import unmount_all

    try:
        unmount_all(mounts, root)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
