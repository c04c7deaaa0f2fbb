"""errno -> ``OSError``, naming the failing step: the kernel boundary's one way
to report a failed call.

A leaf without the compiled module: the stdlib's pidfd calls that hold a
saved container's init (:meth:`pidsafe.process.ProcessIdentity.open`)
report their failures through it without loading cffi.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Optional


def make_oserror(err: int, step: str, filename: Optional[Any] = None,
                 filename2: Optional[Any] = None) -> OSError:
    """An ``OSError`` of the errno's own subclass, saying which step failed.

    ``str()`` reads like ``[Errno 3] pidfd_send_signal: No such process``.
    """
    msg = f"{step}: {os.strerror(err)}"
    if filename2 is not None:
        return OSError(err, msg, filename, None, filename2)
    if filename is not None:
        return OSError(err, msg, filename)
    return OSError(err, msg)
