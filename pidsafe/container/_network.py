"""A new network namespace's loopback, brought up through pyroute2.

A new network namespace starts with ``lo`` down: nothing inside can reach
``127.0.0.1``.  runc and crun bring it up before the program runs; so does
pidsafe, over netlink with pyroute2 (no ``ip`` subprocess).

The netlink socket must be created inside the container's namespace.
``setns(CLONE_NEWNET)`` changes the namespace of the calling *thread*
only, so a short-lived thread joins the namespace, opens the socket, sets
the link up and exits: the caller's own threads never leave their
namespace, whatever fails.  pyroute2 is imported on first use only (its
import costs about 0.1 s), and only by containers that ask for a new
network namespace.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, List, Optional, Protocol, TypeVar

from .. import _sys

T = TypeVar("T")


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def _in_netns(netns: _HasFileno, step: str, fn: Callable[[Any], T]) -> T:
    """``fn(ipr)`` with an IPRoute socket opened inside ``netns``, in a thread."""
    fd = netns.fileno()
    result: List[T] = []
    failure: List[BaseException] = []

    def in_namespace() -> None:
        try:
            from pyroute2 import IPRoute
            from pyroute2.netns import setns

            setns(fd)
            with IPRoute() as ipr:
                result.append(fn(ipr))
        except BaseException as exc:  # carried to the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=in_namespace, name="pidsafe-netns")
    worker.start()
    worker.join()
    if failure:
        exc = failure[0]
        if isinstance(exc, OSError) and exc.errno:
            raise _sys.make_oserror(exc.errno, step) from exc
        raise exc
    return result[0]


def loopback_up(netns: _HasFileno) -> None:
    """Set ``lo`` up in the network namespace ``netns`` (an fd of ``/proc/PID/ns/net``).

    Raises:
        PermissionError: no CAP_SYS_ADMIN over the namespace.
        OSError: joining the namespace or the netlink request failed.
    """
    def up(ipr: Any) -> None:
        (index,) = ipr.link_lookup(ifname="lo")
        ipr.link("set", index=index, state="up")

    _in_netns(netns, "bring up lo in the container's network namespace", up)


def loopback_is_up(netns: _HasFileno) -> Optional[bool]:
    """Whether ``lo`` is up in ``netns`` (``None`` if it has no ``lo``)."""
    def state(ipr: Any) -> Optional[bool]:
        links = ipr.get_links(ifname="lo")
        return bool(links[0]["flags"] & 1) if links else None   # IFF_UP

    return _in_netns(netns, "read lo's state", state)
