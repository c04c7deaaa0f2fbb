"""pidsafe.userns: see DESIGN.md, "Layers".

``_idmap`` (IDMap), ``_namespace`` (Namespace flags), ``_userns`` (writing a
child's maps; spawn()'s namespace plan), ``_helper`` (get_userns_fd),
``_cache`` (UsernsCache).
"""

from ._cache import UsernsCache
from ._helper import get_userns_fd
from ._idmap import IDMap, IDRange
from ._namespace import Namespace

__all__ = ["IDMap", "IDRange", "Namespace", "UsernsCache", "get_userns_fd"]
