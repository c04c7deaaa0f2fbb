"""Errors of cgroups: a directory, a control file or a wait."""

from __future__ import annotations

from ._base import Error, at_face, set_privilege, step_class_and_message

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional, Tuple


class CgroupError(Error, OSError):
    """A cgroup step failed: a directory, a control file or a wait.

    Instances are also of the errno's own ``OSError`` subclass
    (``PermissionError`` for ``EPERM``, ``TimeoutError`` for ``ETIMEDOUT``
    ...).  ``str()`` reads like ``[Errno 22] unable to write '0-999' to
    /sys/fs/cgroup/cpuset/c1/cpuset.cpus (linux.resources.cpu.cpus): Invalid
    argument: '/sys/fs/cgroup/cpuset/c1/cpuset.cpus'``.

    Attributes:
        step: what was being done, e.g. ``"unable to write '0-999' to ..."``.
        path: the directory or control file (also ``filename``).
        value: the value being written, or ``None``.
    """

    step: str
    path: str
    value: Optional[str]

    def __init__(self, err: int, message: str, path: Optional[str] = None,
                 step: str = "", value: Optional[str] = None) -> None:
        super().__init__(err, message, path)
        self.step = step
        self.path = path or ""
        self.value = value

    def __reduce__(self) -> Tuple[object, ...]:
        return (_rebuild_cgroup_error,
                (self.errno, self.strerror, self.path, self.step, self.value,
                 getattr(self, "capability", "")))


def _rebuild_cgroup_error(err: int, message: str, path: Optional[str], step: str,
                          value: Optional[str], capability: str = "") -> CgroupError:
    return cgroup_error(err, step, path, value=value, message=message, privilege=capability)


def cgroup_error(err: int, step: str, path: Optional[str] = None, hint: str = "", *,
                 value: Optional[str] = None, message: Optional[str] = None,
                 privilege: str = "") -> CgroupError:
    """A :class:`CgroupError` that is also the errno's own OSError subclass.

    The message is ``"<step>: <strerror>"``, then `` (<hint>)`` if given.
    ``privilege``: the capability the caller lacks, when that is why the
    step failed; the error is then also a :class:`PrivilegeError`.
    """
    cls, message = step_class_and_message(CgroupError, err, step, hint, message, privilege)
    exc = cls(err, message, path, step, value)
    if privilege:
        set_privilege(exc, step, privilege)
    return exc


at_face(CgroupError, _rebuild_cgroup_error, cgroup_error)
