"""Errors of processes: their wait and result, their records and their state
files (their reaper's: ``_reaper``)."""

from __future__ import annotations

import errno

from ._base import Error, at_face

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    import subprocess
    from typing import Any, List, Optional, Tuple

    class TimeoutExpired(Error, subprocess.TimeoutExpired):
        """``wait()`` or ``communicate()`` ran out of time (see :func:`_timeout_expired`)."""

        def __init__(self, cmd: Any, timeout: float, output: Optional[bytes] = None,
                     stderr: Optional[bytes] = None) -> None: ...

    class CalledProcessError(Error, subprocess.CalledProcessError):
        """``run(check=True)``: the program failed (see :func:`_called_process_error`)."""

        def __init__(self, returncode: int, cmd: Any, output: Any = None,
                     stderr: Any = None) -> None: ...
else:
    def __getattr__(name: str) -> Any:
        """``TimeoutExpired`` and ``CalledProcessError``, made on first use:
        their base classes are in :mod:`subprocess`, whose import (threading,
        selectors, locale ...) is a tenth of a ``pidsafe-runc state``, and
        most uses of this module never need them."""
        make = _LAZY.get(name)
        if make is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        cls = globals()[name] = make()
        at_face(cls)   # pickle finds it as pidsafe.errors.<name>
        return cls

    def __dir__() -> List[str]:
        return sorted(set(globals()) | set(_LAZY))


def _timeout_expired() -> Any:
    import subprocess

    class TimeoutExpired(Error, subprocess.TimeoutExpired):
        """``wait()`` or ``communicate()`` ran out of time.

        A subclass of ``subprocess.TimeoutExpired``, so existing handlers catch it.
        """

        def __init__(self, cmd: Any, timeout: float, output: Optional[bytes] = None,
                     stderr: Optional[bytes] = None) -> None:
            super().__init__(cmd, timeout, output, stderr)

    TimeoutExpired.__qualname__ = "TimeoutExpired"   # pickle finds it as errors.TimeoutExpired
    return TimeoutExpired


def _called_process_error() -> Any:
    import subprocess

    class CalledProcessError(Error, subprocess.CalledProcessError):
        """:func:`pidsafe.run` with ``check=True``: the program exited non-zero
        (or was killed: ``returncode`` is then ``-N`` for signal ``N``).

        A subclass of ``subprocess.CalledProcessError``, so existing handlers
        catch it; ``returncode``, ``cmd``, ``output`` (alias ``stdout``) and
        ``stderr`` as there.
        """

        def __init__(self, returncode: int, cmd: Any, output: Any = None,
                     stderr: Any = None) -> None:
            super().__init__(returncode, cmd, output, stderr)

        def __reduce__(self) -> Tuple[Any, ...]:
            return type(self), (self.returncode, self.cmd, self.output, self.stderr)

    CalledProcessError.__qualname__ = "CalledProcessError"
    return CalledProcessError


#: The exceptions made on first use (their base classes are in subprocess).
_LAZY = {"TimeoutExpired": _timeout_expired, "CalledProcessError": _called_process_error}


# --- state files ----------------------------------------------------------------

class StateError(Error, ValueError):
    """A state file operation used wrongly (bad id, not locked, ...)."""


# --- recorded processes -------------------------------------------------------------

class StaleProcessError(Error, ProcessLookupError):
    """A recorded process (pid + start time + boot) no longer exists.

    Raised instead of trusting a pid that may have been recycled.
    ``errno`` is ``ESRCH``; ``pid`` is the recorded pid.
    """

    def __init__(self, pid: int, reason: str) -> None:
        super().__init__(errno.ESRCH, f"process {pid} is gone: {reason}")
        self.pid = pid
        self.reason = reason

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.pid, self.reason), self.__dict__


at_face(StateError, StaleProcessError)
