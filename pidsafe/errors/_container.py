"""Errors of containers: their steps, their hooks and their states (their config's:
``_config``)."""

from __future__ import annotations

import errno
import os

from ._base import Error, at_face, errno_subclass

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional, Tuple


class ContainerError(Error, OSError):
    """A step of creating or running a container failed.

    Like :class:`MountError`, instances are also of the errno's own
    ``OSError`` subclass (``PermissionError`` for ``EPERM`` ...).

    Attributes:
        step: what was being done, e.g. ``"mount /proc"``.
        path: the path (or value) the step was about, or ``""``.
        field: the ``config.json`` field it implements, e.g. ``"mounts[0]"``.
    """

    step: str
    path: str
    field: str

    def __init__(self, err: int, message: str, path: Optional[str] = None,
                 step: str = "", field: str = "") -> None:
        super().__init__(err, message, path)
        self.step = step
        self.path = path or ""
        self.field = field

    def __reduce__(self) -> Tuple[object, ...]:
        return (_rebuild_container_error,
                (self.errno, self.strerror, self.path, self.step, self.field))


def _rebuild_container_error(err: int, message: str, path: Optional[str], step: str,
                             field: str) -> ContainerError:
    return container_error(err, step, path, field, message=message)


def container_error(err: int, step: str, path: Optional[str] = None, field: str = "", *,
                    message: Optional[str] = None) -> ContainerError:
    """A :class:`ContainerError` that is also the errno's own OSError subclass.

    The message is ``"<step> (<field>): <strerror>"``.
    """
    cls = errno_subclass(ContainerError, err)
    if message is None:
        message = f"{step}{f' ({field})' if field else ''}: {os.strerror(err)}"
    return cls(err, message, path, step, field)


class HookError(ContainerError):
    """An OCI hook (config.json ``hooks``) failed: it could not be started,
    exited non-zero, was killed, or ran past its ``timeout``.

    A :class:`ContainerError` (and the errno's own ``OSError`` subclass):
    ``errno`` is the spawn's errno when the hook could not be started,
    ``ETIMEDOUT`` when it was killed for its timeout, ``ECHILD`` when it
    exited non-zero or was killed.

    Attributes:
        kind: the hook list, e.g. ``"createRuntime"``.
        index: its position in that list (``field`` is ``hooks.KIND[INDEX]``).
        returncode: its exit status (``-N``: killed by signal ``N``), or
            ``None`` if it never ran.
        output: the end of what it wrote to stdout and stderr.
    """

    kind: str
    index: int
    returncode: Optional[int]
    output: bytes

    def __reduce__(self) -> Tuple[object, ...]:
        return (_rebuild_hook_error, (self.errno, self.strerror, self.path, self.kind,
                                      self.index, self.returncode, self.output))


def _rebuild_hook_error(err: int, message: str, path: Optional[str], kind: str, index: int,
                        returncode: Optional[int], output: bytes) -> HookError:
    return hook_error(err, kind, index, path or "", returncode, output, message=message)


def hook_error(err: int, kind: str, index: int, path: str, returncode: Optional[int] = None,
               output: bytes = b"", *, message: Optional[str] = None) -> HookError:
    """A :class:`HookError` that is also the errno's own OSError subclass.

    The message says what happened (``"createRuntime hook /bin/x
    (hooks.createRuntime[0]) exited with status 2: <output>"``).
    """
    cls = errno_subclass(HookError, err)
    field = f"hooks.{kind}[{index}]"
    if message is None:
        if returncode is None:
            what = f"could not be run: {os.strerror(err)}"
        elif err == errno.ETIMEDOUT:
            what = "timed out and was killed"
        elif returncode < 0:
            what = f"was killed by signal {-returncode}"
        else:
            what = f"exited with status {returncode}"
        tail = output.decode(errors="replace").strip()
        message = f"{kind} hook {path} ({field}) {what}" + (f": {tail}" if tail else "")
    exc = cls(err, message, path, f"{kind} hook", field)
    exc.kind = kind
    exc.index = index
    exc.returncode = returncode
    exc.output = output
    return exc


class ContainerStateError(Error, RuntimeError):
    """A container operation that its current state does not allow.

    For example ``start()`` of a running container, ``delete()`` of a
    running one without ``force``, or an exec id already in use.
    """


class ContainerLookupError(Error, LookupError):
    """No container has this id, or an id prefix matches several (named)."""


at_face(ContainerError, _rebuild_container_error, container_error, HookError, _rebuild_hook_error,
        hook_error, ContainerStateError, ContainerLookupError)
