"""pidsafe.mount: see DESIGN.md, "Layers".

Public names (re-exported by :mod:`pidsafe`): :func:`idmapped_bind`,
:class:`Mount`, :func:`mount_all` (returns :class:`Mounted`, a tuple of
:class:`MountRecord`), :func:`unmount_all`.  Imported on first use
(pidsafe/_lazy.py): a user of one module does not load the others.
"""

from typing import TYPE_CHECKING

from .. import _lazy

if TYPE_CHECKING:
    from ._mount import idmapped_bind
    from ._mounted import MountRecord, Mounted
    from ._rootfs import mount_all
    from ._spec import Mount
    from ._unmount_all import unmount_all

__getattr__, __dir__ = _lazy.exports(__name__, {
    "Mount": "._spec",
    "MountRecord": "._mounted",
    "Mounted": "._mounted",
    "idmapped_bind": "._mount",
    "mount_all": "._rootfs",
    "unmount_all": "._unmount_all",
})

__all__ = ["Mount", "MountRecord", "Mounted", "idmapped_bind", "mount_all", "unmount_all"]
