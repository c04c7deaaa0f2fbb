"""The kernel boundary's core: the compiled module, errno -> OSError, EINTR.

Every call into C goes through a function of ``pidsafe._sys``; those turn a
``-1``/``errno`` return into the right ``OSError`` subclass (Python picks
``ProcessLookupError``, ``ChildProcessError``, ``PermissionError`` ... from
the errno), naming the failing step and the path, and retry ``EINTR`` in
exactly one place: :func:`_retry`.

Each submodule of ``pidsafe._sys`` imports ``lib`` from here and looks it up
at call time (tests swap it for a fault-injecting proxy).
"""

from __future__ import annotations

import errno
import os

from .._lite import import_module
from .._version import __version__
from ._oserror import make_oserror as make_oserror   # re-exported: _spawn, _seccomp

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Union

try:
    _native: Any = import_module("pidsafe._native")
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "pidsafe's compiled extension pidsafe._native is missing; "
        "install the package with pip (it builds the extension) "
        f"rather than importing it from a source tree: {exc}"
    ) from exc

ffi = _native.ffi
lib = _native.lib


def check_built_for(module: str, built_for: str) -> None:
    """Fail loudly when a compiled module and the Python package disagree.

    ``built_for``: the version the extension carries (compiled in).
    """
    if built_for != __version__:  # pragma: no cover - stale builds only
        raise ImportError(
            f"{module} was built for pidsafe {built_for} but the Python package is "
            f"{__version__}; rebuild the extension (pip install --force-reinstall .)")


check_built_for("pidsafe._native", ffi.string(lib.pidsafe_version()).decode())

# Kernel ABI constants (csrc/native/pidsafe.h checks them against system headers).
CLONE_VM: int = lib.PIDSAFE_CLONE_VM
CLONE_VFORK: int = lib.PIDSAFE_CLONE_VFORK
CLONE_PIDFD: int = lib.PIDSAFE_CLONE_PIDFD
CLONE_NEWNS: int = lib.PIDSAFE_CLONE_NEWNS
CLONE_NEWCGROUP: int = lib.PIDSAFE_CLONE_NEWCGROUP
CLONE_NEWUTS: int = lib.PIDSAFE_CLONE_NEWUTS
CLONE_NEWIPC: int = lib.PIDSAFE_CLONE_NEWIPC
CLONE_NEWUSER: int = lib.PIDSAFE_CLONE_NEWUSER
CLONE_NEWPID: int = lib.PIDSAFE_CLONE_NEWPID
CLONE_NEWNET: int = lib.PIDSAFE_CLONE_NEWNET
CLONE_NEWTIME: int = lib.PIDSAFE_CLONE_NEWTIME
WEXITED: int = lib.PIDSAFE_WEXITED
WNOHANG: int = lib.PIDSAFE_WNOHANG
#: waitid(2): report the exit but leave the child waitable (reaps nothing).
WNOWAIT: int = os.WNOWAIT
WALL: int = lib.PIDSAFE_WALL
CLD_EXITED: int = lib.PIDSAFE_CLD_EXITED
CLD_KILLED: int = lib.PIDSAFE_CLD_KILLED
CLD_DUMPED: int = lib.PIDSAFE_CLD_DUMPED


if TYPE_CHECKING:
    StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def _retry(step: str, fn: Callable[..., int], *args: Any,
           filename: Optional[Any] = None) -> int:
    """Call ``fn(*args)``; retry on EINTR; raise on ``-1``.

    The one EINTR loop of pidsafe (PEP 475 semantics: a Python signal handler
    that raises stops the retry, since handlers run between iterations).
    Untimed calls only: timed waits recompute their deadline themselves.
    """
    while True:
        ret = fn(*args)
        if ret != -1:
            return ret
        err = ffi.errno
        if err != errno.EINTR:
            raise make_oserror(err, step, filename)


def errno_of(call: Callable[[], Any]) -> int:
    """Run ``call``; return 0, or the errno of the OSError it raised.

    For feature probes, which want the errno itself rather than an exception.
    """
    try:
        call()
    except OSError as exc:
        return exc.errno or 0
    return 0


def has_clone3_trampoline() -> bool:
    """Whether this build knows how to clone3() onto a new stack here."""
    return bool(lib.pidsafe_has_clone3_trampoline())
