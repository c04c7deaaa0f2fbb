"""Errors of user namespaces and mounts."""

from __future__ import annotations

import os

from ._base import Error, at_face, set_privilege, step_class_and_message

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional, Protocol, Tuple, Union

    class _Mount(Protocol):
        """What :class:`InvalidMountError` reads of a :class:`pidsafe.Mount`
        (this package is a leaf: it imports no layer)."""

        @property
        def type(self) -> str: ...

        @property
        def source(self) -> str: ...

        @property
        def target(self) -> str: ...


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

    def __init__(self, index: int, mount: "_Mount", reason: str) -> None:
        super().__init__(f"mount {index} ({mount.type or 'bind'} {mount.source!r} on "
                         f"{mount.target!r}): {reason}")
        self.index = index
        self.mount = mount
        self.reason = reason

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.index, self.mount, self.reason), self.__dict__


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
        return (_rebuild_mount_error, (self.errno, self.strerror, self.path, self.step,
                                       getattr(self, "capability", "")))


def _rebuild_mount_error(err: int, message: str, path: Optional[str],
                         step: str, capability: str = "") -> MountError:
    return mount_error(err, step, path, message=message, privilege=capability)


def mount_error(err: int, step: str, path: Union[None, str, "os.PathLike[str]"] = None,
                hint: str = "", *, message: Optional[str] = None,
                privilege: str = "") -> MountError:
    """A :class:`MountError` that is also the errno's own OSError subclass.

    The message is ``"<step>: <strerror>"``, then `` (<hint>)`` if given.
    ``privilege``: the capability the caller lacks, when that is why the
    step failed; the error is then also a :class:`PrivilegeError`.
    """
    cls, message = step_class_and_message(MountError, err, step, hint, message, privilege)
    exc = cls(err, message, os.fspath(path) if path is not None else None, step)
    if privilege:
        set_privilege(exc, step, privilege)
    return exc


at_face(IDMapError, HelperDiedError, InvalidMountError, MountError, _rebuild_mount_error,
        mount_error)
