"""pidsafe.state: a layer of pidsafe (see "Layout" in README.md).

Public names (re-exported by :mod:`pidsafe`): :class:`StateFile`.
Imported on first use (pidsafe/_lazy.py).
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._statefile import StateFile

__getattr__, __dir__ = _lazy.exports(__name__, {"StateFile": "._statefile"})

__all__ = ["StateFile"]
