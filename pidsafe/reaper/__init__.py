"""pidsafe.reaper: a layer of pidsafe (see "Layout" in README.md).

Public names (re-exported by :mod:`pidsafe`): :class:`Reaper`,
:class:`Subscription` and the :class:`Exit` records it delivers,
:class:`Claim`.  Imported on first use (pidsafe/_lazy.py).
"""

from .. import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._claim import Claim
    from ._reaper import Reaper
    from ._subscription import Exit, Subscription

__getattr__, __dir__ = _lazy.exports(__name__, {
    "Claim": "._claim",
    "Exit": "._subscription",
    "Reaper": "._reaper",
    "Subscription": "._subscription",
})

__all__ = ["Claim", "Exit", "Reaper", "Subscription"]
