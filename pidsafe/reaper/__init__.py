"""pidsafe.reaper: a layer of pidsafe (see "Layout" in README.md).

Public names (re-exported by :mod:`pidsafe`): :class:`Reaper`,
:class:`Subscription` and the :class:`Exit` records it delivers,
:class:`Claim`.  Imported on first use (pidsafe/_lazy.py).

The Reaper is one thread that reaps every child it owns, through pidfds.

How it works: the reaper thread sleeps in ``epoll_wait`` on one epoll
instance holding the pidfd of every child it owns (leased from its
``Process``), plus an eventfd that wakes it (stop, claims); see
``_pidfdset``.  A pidfd becomes readable when its process exits, and
readiness is level-triggered:
a child that exited before it was registered is seen at once.  So
registration can happen after ``spawn()`` returns, which is what orders
"started" before "exited" without any lock held across clone3 or exec.

The reaper talks to ``Process`` only through its lease interface (lease the
pidfd, try to reap it, end the lease; see the end of ``Process``): reaping
is thread-safe and idempotent (whoever reaps first through the pidfd sets
``returncode``), so a user thread in ``Process.wait()`` and the reaper never
steal from each other and both see the exact code, and the reaper thread
never waits for a user thread (see ``_thread``).  The reaper never waits
on a pid, never uses ``waitid(P_ALL)`` and never reaps a child it was not
given, so
``subprocess`` and ``os.waitpid`` keep their statuses.

No big lock: ``spawn()`` runs ``pidsafe.spawn`` with no reaper lock held;
``watch()`` then registers with a few dict operations and one
``epoll_ctl``, taking no lock at all (see ``_pidfdset``).  Publishing takes
each subscription's own lock, only to append, and happens in the reaper
thread only (``_publisher``).  ``Reaper._lock`` guards only the lifecycle
state.

Subreaper mode (``Reaper(subreaper=True)``) also reaps orphans; see
``_orphans`` for how they are found without stealing anyone's status, and
``_foreign`` for the warning about ``subprocess``/``os.fork`` children.
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
