"""pidsafe's debug log: what it created and what it undid, on ``logging.getLogger("pidsafe")``.

Each layer logs to a child of the ``pidsafe`` logger (``pidsafe.process``,
``pidsafe.mount``, ``pidsafe.container``, ``pidsafe.reaper`` ...), at
``DEBUG``: containers created, started and deleted; mounts made and
unmounted; cgroups created and removed; children killed on an error path;
a reaper started and stopped.  Turn it on as usual::

    logging.basicConfig()
    logging.getLogger("pidsafe").setLevel(logging.DEBUG)

or ``pidsafe-runc --debug``.

Free when nobody listens.  :mod:`logging` is never imported here: a
program that has not imported it has no handler anywhere, so no record
could be emitted, and :func:`debug` returns after one dict lookup.
(pidsafe-runc runs a new interpreter per command and does not import
``logging`` unless ``--debug`` or ``--log`` asks for it.)  A leaf: it
imports nothing of pidsafe.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any

#: The root of pidsafe's loggers.
LOGGER = "pidsafe"


def debug(area: str, msg: str, *args: Any) -> None:
    """Log ``msg % args`` at ``DEBUG`` on the ``pidsafe.<area>`` logger, if anyone listens.

    Never raises: a failing handler is :mod:`logging`'s business (it
    reports it on stderr), and the callers are cleanup paths.
    """
    logging = sys.modules.get("logging")
    if logging is None:
        return
    from ._sigsafe import critical
    # logging takes its module lock and its handlers' locks: a signal
    # handler raising between an acquire and its try (a caller's Ctrl-C,
    # an alarm) would leave a lock held for good, and every later log call
    # of every thread would block.  Handlers run once the record is out.
    with critical:
        logger = logging.getLogger(f"{LOGGER}.{area}")
        if logger.isEnabledFor(logging.DEBUG):
            # stacklevel=2: the record names the pidsafe function that logged.
            logger.debug(msg, *args, stacklevel=2)
