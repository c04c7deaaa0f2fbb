"""Every exception pidsafe raises of its own.

System errors are plain ``OSError`` subclasses chosen by errno (see
``_sys.make_oserror``); the types here add what errno cannot say.  Each
keeps a builtin base (``ValueError``, ``OSError``, ``RuntimeError`` ...) so
that existing handlers catch it, and every one is also a
:class:`pidsafe.Error`, so ``except pidsafe.Error`` catches all of
pidsafe's own.
"""

from __future__ import annotations

import errno
import os
import subprocess
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Type, Union, cast

from ._feature_names import describe

if TYPE_CHECKING:
    from .mount._spec import Mount


class Error(Exception):
    """The common base of every exception type pidsafe defines."""


class UnsupportedError(Error, OSError):
    """The running kernel (or this build) lacks a feature pidsafe needs.

    ``feature`` names it as :func:`pidsafe.features` does; ``errno`` is what
    the probe or the failing call got (usually ``ENOSYS``).
    """

    feature: str

    def __init__(self, feature: str, detail: str = "", err: int = errno.ENOSYS) -> None:
        what = describe(feature)
        msg = f"unsupported: {what}"
        if detail:
            msg += f" ({detail})"
        super().__init__(err, msg)
        self.feature = feature


class TimeoutExpired(Error, subprocess.TimeoutExpired):
    """``wait()`` or ``communicate()`` ran out of time.

    A subclass of ``subprocess.TimeoutExpired``, so existing handlers catch it.
    """

    def __init__(self, cmd: Any, timeout: float, output: Optional[bytes] = None,
                 stderr: Optional[bytes] = None) -> None:
        super().__init__(cmd, timeout, output, stderr)


# --- user namespaces ----------------------------------------------------------

class IDMapError(Error, ValueError):
    """A uid/gid map is malformed or breaks the kernel's rules.

    The message names the map, the offending range (by position and text)
    and the reason.
    """


class HelperDiedError(Error, ProcessLookupError):
    """A child was reaped before its new user namespace could be proven.

    The child is get_userns_fd()'s helper, or the child of
    ``spawn(uidmap=, gidmap=)``.  Nothing it left behind is trusted or
    returned: the fds opened under ``/proc/PID/`` may belong to another
    process that reused the pid.  The child dies only if something killed
    it (or our thread died), so this is rare; retrying is safe.  ``errno``
    is ``ESRCH``.
    """


# --- mounts ---------------------------------------------------------------------

class InvalidMountError(Error, ValueError):
    """A :class:`Mount` is malformed; raised before anything is mounted.

    Attributes:
        index: the mount's position in the list given to :func:`mount_all`.
        mount: the :class:`Mount` itself.
    """

    def __init__(self, index: int, mount: "Mount", reason: str) -> None:
        super().__init__(f"mount {index} ({mount.type or 'bind'} {mount.source!r} on "
                         f"{mount.target!r}): {reason}")
        self.index = index
        self.mount = mount


class MountError(Error, OSError):
    """A mount step failed.

    Instances are also of the errno's own ``OSError`` subclass (catch
    ``PermissionError`` for ``EPERM``, ``FileNotFoundError`` for ``ENOENT``
    ...).  ``str()`` reads like
    ``[Errno 1] unable to attach mount tree to /x: Operation not permitted
    (needs CAP_SYS_ADMIN ...): '/x'``.

    Attributes:
        step: what was being done, e.g. ``"unable to attach mount tree to /x"``.
        path: the path the step was about (also ``filename``).
    """

    step: str
    path: str

    def __init__(self, err: int, message: str, path: Optional[str] = None,
                 step: str = "") -> None:
        super().__init__(err, message, path)
        self.step = step
        self.path = path or ""

    def __reduce__(self) -> Tuple[object, ...]:
        return (_rebuild_mount_error, (self.errno, self.strerror, self.path, self.step))


_MOUNT_ERROR_TYPES: Dict[Type[OSError], Type[MountError]] = {OSError: MountError}


def _rebuild_mount_error(err: int, message: str, path: Optional[str],
                         step: str) -> MountError:
    return mount_error(err, step, path, message=message)


def mount_error(err: int, step: str, path: Union[None, str, "os.PathLike[str]"] = None,
                hint: str = "", *, message: Optional[str] = None) -> MountError:
    """A :class:`MountError` that is also the errno's own OSError subclass.

    The message is ``"<step>: <strerror>"``, then `` (<hint>)`` if given.
    """
    base = type(OSError(err, ""))
    cls = _MOUNT_ERROR_TYPES.get(base)
    if cls is None:
        cls = cast(Type[MountError], type(f"Mount{base.__name__}", (MountError, base),
                                          {"__module__": __name__}))
        _MOUNT_ERROR_TYPES[base] = cls
    if message is None:
        message = f"{step}: {os.strerror(err)}" + (f" ({hint})" if hint else "")
    return cls(err, message, os.fspath(path) if path is not None else None, step)


# --- state files ----------------------------------------------------------------

class StateError(Error, ValueError):
    """A state file operation used wrongly (bad id, not locked, ...)."""


# --- the reaper -------------------------------------------------------------------

class ReaperError(Error, RuntimeError):
    """A :class:`pidsafe.Reaper` was used in a state that cannot work.

    Not started, already stopped, inherited by a forked child (whose reaper
    thread does not exist), a second subreaper, or a reaper thread that
    failed.
    """


class ForeignChildWarning(Error, RuntimeWarning):
    """A child was started outside pidsafe while a subreaper-mode Reaper runs.

    That reaper will reap it like an orphan, so its own waiter gets nothing
    (``Popen.wait()`` returns 0).  Open ``reaper.claim()`` before starting
    it.  Turn it into an error (``-W error::pidsafe.ForeignChildWarning``)
    to refuse such starts.
    """


class SubscriptionClosed(Error, EOFError):
    """The subscription has ended and holds no more exits.

    It was closed, or its reaper stopped.  Iteration ends quietly instead.
    """


class SubscriptionOverflow(ReaperError):
    """The subscriber fell ``maxsize`` exits behind and was detached.

    Every exit queued before the overflow has been delivered; later exits
    were not.  ``maxsize`` says what the bound was.
    """

    def __init__(self, maxsize: int) -> None:
        super().__init__(
            f"subscription fell {maxsize} exits behind and was detached: exits after the "
            "last one delivered were dropped (resubscribe, then resynchronise)")
        self.maxsize = maxsize
