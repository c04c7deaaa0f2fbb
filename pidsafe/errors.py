"""pidsafe's own exception types.

System errors are plain ``OSError`` subclasses chosen by errno (see
``_sys.make_oserror``); the types here add what errno cannot say.
"""

from __future__ import annotations

import errno
import subprocess
from typing import Any, Optional


class UnsupportedError(OSError):
    """The running kernel (or this build) lacks a feature pidsafe needs.

    ``feature`` names it as :func:`pidsafe.features` does; ``errno`` is what
    the probe or the failing call got (usually ``ENOSYS``).
    """

    feature: str

    def __init__(self, feature: str, detail: str = "", err: int = errno.ENOSYS) -> None:
        from ._features import describe  # late: _features imports us

        what = describe(feature)
        msg = f"unsupported: {what}"
        if detail:
            msg += f" ({detail})"
        super().__init__(err, msg)
        self.feature = feature


class TimeoutExpired(subprocess.TimeoutExpired):
    """``wait()`` or ``communicate()`` ran out of time.

    A subclass of ``subprocess.TimeoutExpired``, so existing handlers catch it.
    """

    def __init__(self, cmd: Any, timeout: float, output: Optional[bytes] = None,
                 stderr: Optional[bytes] = None) -> None:
        super().__init__(cmd, timeout, output, stderr)
