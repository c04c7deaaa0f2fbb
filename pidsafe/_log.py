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
    from typing import Any, Optional, Tuple

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
    _emit(logging, area, logging.DEBUG, msg, args, None)


def warning(area: str, msg: str, *args: Any) -> None:
    """Log ``msg % args`` at ``WARNING`` on the ``pidsafe.<area>`` logger.

    Imports :mod:`logging` if nobody has: with no handler configured, its
    last-resort handler prints the warning on stderr.
    """
    import logging

    _emit(logging, area, logging.WARNING, msg, args, None)


def error(area: str, msg: str, *args: Any, exc: Optional[BaseException] = None) -> None:
    """Log ``msg % args`` at ``ERROR`` on the ``pidsafe.<area>`` logger, with
    ``exc``'s traceback if given (see :func:`warning`)."""
    import logging

    _emit(logging, area, logging.ERROR, msg, args, exc)


def _emit(logging: Any, area: str, level: int, msg: str, args: Tuple[Any, ...],
          exc: Optional[BaseException]) -> None:
    from ._sigsafe import critical
    # logging takes its module lock and its handlers' locks: a signal
    # handler raising between an acquire and its try (a caller's Ctrl-C,
    # an alarm) would leave a lock held for good, and every later log call
    # of every thread would block.  Handlers run once the record is out.
    with critical:
        logger = logging.getLogger(f"{LOGGER}.{area}")
        if logger.isEnabledFor(level):
            # stacklevel=3: the record names the pidsafe function that logged.
            logger.log(level, msg, *args, exc_info=exc, stacklevel=3)
