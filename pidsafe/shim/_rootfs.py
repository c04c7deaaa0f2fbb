"""The rootfs containerd hands over (``CreateTaskRequest.rootfs``), as pidsafe mounts.

containerd gives the snapshot as a list of mounts for ``<bundle>/rootfs``:
an ``overlay`` (``lowerdir=``, ``upperdir=``, ``workdir=`` options) or a
``bind`` of a directory.  ``Container.create(rootfs_mounts=)`` mounts them
(targets relative to the rootfs) and its delete unmounts them.

User namespaces without chowning: when config.json gives the container a
user namespace of its own with id mappings, every rootfs mount gets
containerd's ``uidmap=``/``gidmap=`` options (and an overlay pidsafe's
``x-pidsafe.idmap-upper``), so pidsafe mounts the snapshot through
idmapped mounts: each overlay layer, upper and work included, is a
detached idmapped clone; a bind is an idmapped bind.  A file
the image owns as 0 then reads as 0 inside; a file made inside lands in
the upper directory as 0 on disk; nothing is copied or chowned.

``ctr run --uidmap`` without ``--remap-labels`` (and containerd 1.6's CRI)
instead chown a copy of the image for the mapping (``WithRemappedSnapshot``).
Mapping such a snapshot again would shift every owner twice, so a snapshot
whose root directory is already owned by the host ids that container 0 maps
to is used as it is.
"""

from __future__ import annotations

import os

#: pidsafe's overlay option that idmaps the upperdir and workdir as well.
IDMAP_UPPER = "x-pidsafe.idmap-upper"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence, Tuple

    from ..mount import Mount


def userns_maps(config: Any) -> Optional[Tuple[str, str]]:
    """containerd's ``uidmap=``/``gidmap=`` values for a config with a new user
    namespace and its mappings; None otherwise (or for what create will refuse)."""
    try:
        linux = config["linux"]
        if not any(ns.get("type") == "user" and not ns.get("path")
                   for ns in linux.get("namespaces") or ()):
            return None
        uids, gids = linux.get("uidMappings"), linux.get("gidMappings")
        if not uids or not gids:
            return None
        return _map_text(uids), _map_text(gids)
    except (KeyError, TypeError, AttributeError, ValueError):
        return None   # a malformed config: Container.create names the field


def _map_text(ranges: Any) -> str:
    return ",".join(f"{int(r['containerID'])}:{int(r['hostID'])}:{int(r['size'])}"
                    for r in ranges)


def _host_of_zero(text: str) -> Optional[int]:
    for part in text.split(","):
        c, h, _ = (int(x) for x in part.split(":"))
        if c == 0:
            return h
    return None


def _bottom_layer(m: Any) -> Optional[str]:
    """The directory whose owner tells whether the snapshot is chowned already."""
    if m.type == "bind" or "bind" in m.options or "rbind" in m.options:
        return str(m.source)
    for opt in m.options:
        if opt.startswith("lowerdir="):
            return str(opt[len("lowerdir="):].split(":")[-1])
    return None


def _shifted(m: Any, maps: Tuple[str, str]) -> bool:
    uid0, gid0 = _host_of_zero(maps[0]), _host_of_zero(maps[1])
    path = _bottom_layer(m)
    if not uid0 or gid0 is None or path is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False   # the mount itself will say what is wrong
    return st.st_uid == uid0 and st.st_gid == gid0


def rootfs_mounts(mounts: Sequence[Any], config: Any,
                  idmap: Optional[Tuple[str, str]] = None) -> List[Mount]:
    """``CreateTaskRequest.rootfs`` as :class:`pidsafe.Mount` records, idmapped
    for a container with a user namespace of its own (see the module docstring),
    or with ``idmap`` (uidmap, gidmap) when given (a namespace it joins)."""
    from ..mount import Mount

    maps = idmap if idmap is not None else userns_maps(config)
    out = []
    for m in mounts:
        options = list(m.options)
        if maps is not None and not any(o.startswith(("uidmap=", "gidmap=")) for o in options) \
                and not _shifted(m, maps):
            options += [f"uidmap={maps[0]}", f"gidmap={maps[1]}"]
            if m.type == "overlay" and any(o.startswith("upperdir=") for o in options):
                options.append(IDMAP_UPPER)
        out.append(Mount(m.type, m.source, m.target, tuple(options)))
    return out
