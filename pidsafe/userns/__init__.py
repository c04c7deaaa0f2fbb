"""pidsafe.userns: a layer of pidsafe (see "Layout" in README.md).

``_idmap`` (IDMap), ``_namespace`` (Namespace flags), ``_userns`` (writing a
child's maps; spawn()'s namespace plan), ``_helper`` (get_userns_fd),
``_cache`` (UsernsCache).  Imported on first use (pidsafe/_lazy.py): a user
of one module (the container config needs only IDMap) does not load the
others.

Public names (re-exported by :mod:`pidsafe`): :class:`IDMap`, :class:`IDRange`,
:class:`Namespace`, :class:`UsernsCache`, :func:`get_userns_fd`.  For a
container's create (pidsafe.container): :func:`make_userns` (get_userns_fd
whose helper is reaped later: :class:`NewUserns`).  For spawn()
(pidsafe.process): ``ALL_NAMESPACES``, ``IDMapLike`` (what a map argument
accepts), :func:`spawn_map` (such an argument checked) and
:func:`write_child_maps` (a new user namespace's maps, written for a child
held by its pidfd).
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from ._cache import UsernsCache
    from ._helper import NewUserns, get_userns_fd, make_userns
    from ._idmap import IDMap, IDRange
    from ._namespace import ALL_NAMESPACES, Namespace
    from ._userns import IDMapLike, spawn_map, write_child_maps

__getattr__, __dir__ = _lazy.exports(__name__, {
    "ALL_NAMESPACES": "._namespace",
    "IDMap": "._idmap",
    "IDMapLike": "._userns",
    "IDRange": "._idmap",
    "Namespace": "._namespace",
    "NewUserns": "._helper",
    "UsernsCache": "._cache",
    "get_userns_fd": "._helper",
    "make_userns": "._helper",
    "spawn_map": "._userns",
    "write_child_maps": "._userns",
})

__all__ = ["ALL_NAMESPACES", "IDMap", "IDMapLike", "IDRange", "Namespace", "NewUserns",
           "UsernsCache", "get_userns_fd", "make_userns", "spawn_map", "write_child_maps"]
