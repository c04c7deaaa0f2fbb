"""pidsafe.userns: see DESIGN.md, "Layers".

``_idmap`` (IDMap), ``_namespace`` (Namespace flags), ``_userns`` (writing a
child's maps; spawn()'s namespace plan), ``_helper`` (get_userns_fd),
``_cache`` (UsernsCache).  Imported on first use (pidsafe/_lazy.py): a user
of one module (the container config needs only IDMap) does not load the
others.
"""

from typing import TYPE_CHECKING

from .. import _lazy

if TYPE_CHECKING:
    from ._cache import UsernsCache
    from ._helper import get_userns_fd
    from ._idmap import IDMap, IDRange
    from ._namespace import Namespace

__getattr__, __dir__ = _lazy.exports(__name__, {
    "IDMap": "._idmap",
    "IDRange": "._idmap",
    "Namespace": "._namespace",
    "UsernsCache": "._cache",
    "get_userns_fd": "._helper",
})

__all__ = ["IDMap", "IDRange", "Namespace", "UsernsCache", "get_userns_fd"]
