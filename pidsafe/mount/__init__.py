"""pidsafe.mount: a layer of pidsafe (see "Layout" in README.md).

Public names (re-exported by :mod:`pidsafe`): :func:`idmapped_bind`,
:class:`Mount`, :func:`mount_all` (returns :class:`Mounted`, a tuple of
:class:`MountRecord`), :func:`unmount_all`.  For the container layer:
:func:`plan_mount` (how one :class:`Mount` is made: its :class:`MountPlan`)
and pidsafe's one mountinfo parser (:func:`mountinfo`,
:func:`parse_mountinfo`, :class:`MountInfo`, :func:`mount_id_of`), and the
delays of the ``EBUSY`` retries of an unmount (:data:`UNMOUNT_BACKOFF`).
Imported on first use (pidsafe/_lazy.py): a user of one module does not
load the others (pidsafe-runc's delete loads the parser only, for the
cgroup layout).
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from ._mount import idmapped_bind
    from ._mounted import MountRecord, Mounted
    from ._mountinfo import MountInfo, mount_id_of, mountinfo, parse_mountinfo
    from ._rootfs import mount_all
    from ._spec import Mount, Plan as MountPlan, plan as plan_mount
    from ._unmount import UNMOUNT_BACKOFF
    from ._unmount_all import unmount_all

__getattr__, __dir__ = _lazy.exports(__name__, {
    "Mount": "._spec",
    "MountInfo": "._mountinfo",
    "MountPlan": "._spec:Plan",
    "MountRecord": "._mounted",
    "Mounted": "._mounted",
    "idmapped_bind": "._mount",
    "mount_all": "._rootfs",
    "mount_id_of": "._mountinfo",
    "mountinfo": "._mountinfo",
    "parse_mountinfo": "._mountinfo",
    "plan_mount": "._spec:plan",
    "UNMOUNT_BACKOFF": "._unmount",
    "unmount_all": "._unmount_all",
})

__all__ = ["UNMOUNT_BACKOFF", "Mount", "MountInfo", "MountPlan", "MountRecord", "Mounted", "idmapped_bind",
           "mount_all", "mount_id_of", "mountinfo", "parse_mountinfo", "plan_mount",
           "unmount_all"]
