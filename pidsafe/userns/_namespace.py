"""Namespace: the namespace flags of ``spawn(namespaces=)``."""

from __future__ import annotations

import enum

from .. import _sys


class Namespace(enum.IntFlag):
    """Namespaces a spawned child gets new ones of (``spawn(namespaces=)``).

    The user namespace is not here: ``spawn(uidmap=, gidmap=)`` makes one,
    ``spawn(userns=)`` joins one.
    """

    NEWNS = _sys.CLONE_NEWNS
    NEWPID = _sys.CLONE_NEWPID
    NEWNET = _sys.CLONE_NEWNET
    NEWUTS = _sys.CLONE_NEWUTS
    NEWIPC = _sys.CLONE_NEWIPC
    NEWCGROUP = _sys.CLONE_NEWCGROUP


#: Every flag of :class:`Namespace`, as an int.
ALL_NAMESPACES = int(Namespace.NEWNS | Namespace.NEWPID | Namespace.NEWNET
                     | Namespace.NEWUTS | Namespace.NEWIPC | Namespace.NEWCGROUP)
