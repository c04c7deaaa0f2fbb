"""pidsafe.mount: see DESIGN.md, "Layers".

Public names (re-exported by :mod:`pidsafe`): :func:`idmapped_bind`,
:class:`Mount`, :func:`mount_all` (returns :class:`Mounted`, a tuple of
:class:`MountRecord`), :func:`unmount_all`.
"""

from ._mount import idmapped_bind
from ._mounted import MountRecord, Mounted
from ._rootfs import mount_all
from ._unmount_all import unmount_all
from ._spec import Mount

__all__ = ["Mount", "MountRecord", "Mounted", "idmapped_bind", "mount_all", "unmount_all"]
