"""The base of every pidsafe exception, the privilege error, and the
errno-crossed classes that the other families are made of.

System errors are plain ``OSError`` subclasses chosen by errno (see
``_sys.make_oserror``); :func:`errno_subclass` crosses a pidsafe family
(``MountError``, ``CgroupError`` ...) with the errno's own subclass, so that
both ``except PermissionError`` and ``except MountError`` catch it, and
:func:`privileged` crosses one with :class:`PrivilegeError`.
"""

from __future__ import annotations

import errno
import os

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple, Type, TypeVar

    _E = TypeVar("_E", bound=OSError)

#: Where every exception of pidsafe is found, whichever module defines it:
#: the face, ``pidsafe.errors`` (each class names it as its ``__module__``,
#: so pickle, ``repr`` and ``help()`` see one module).
FACE = __name__.rpartition(".")[0]


def at_face(*objs: Any) -> None:
    """Name the face as the ``__module__`` of ``objs`` (classes, and the
    functions pickle calls to rebuild an exception)."""
    for obj in objs:
        obj.__module__ = FACE


class Error(Exception):
    """The common base of every exception type pidsafe defines."""


class UnsupportedError(Error, OSError):
    """The running kernel (or this build) lacks a feature pidsafe needs.

    ``feature`` names it as :func:`pidsafe.features` does; ``errno`` is what
    the probe or the failing call got (usually ``ENOSYS``).
    """

    feature: str

    def __init__(self, feature: str, detail: str = "", err: int = errno.ENOSYS) -> None:
        # The table of features is imported only to say what one is: every
        # pidsafe-runc command imports this module, few raise this error.
        from .._feature_names import describe

        what = describe(feature)
        msg = f"unsupported: {what}"
        if detail:
            msg += f" ({detail})"
        super().__init__(err, msg)
        self.feature = feature
        self.detail = detail

    def __reduce__(self) -> Tuple[object, ...]:
        return type(self), (self.feature, self.detail, self.errno), self.__dict__


class PrivilegeError(Error, PermissionError):
    """An operation needs a privilege the caller does not have.

    Raised where the kernel's ``EPERM``/``EACCES`` means exactly that (not
    any ``PermissionError`` of a file), and up front where pidsafe knows an
    operation needs root before it starts, e.g. creating a container.  A
    ``PermissionError``; where the failing step has its own error type
    (:class:`CgroupError`, :class:`MountError`), the exception is of both.

    Attributes:
        operation: what was refused, e.g. ``"create a container"``.
        capability: what it needs, e.g. ``"CAP_SYS_ADMIN"`` (a sentence
            when more than one capability would do).
    """

    operation: str = ""
    capability: str = ""

    def __reduce__(self) -> Tuple[object, ...]:
        return (_rebuild_privilege_error, (self.errno, self.strerror, self.filename,
                                           self.operation, self.capability))


def _rebuild_privilege_error(err: int, message: str, path: Optional[str], operation: str,
                             capability: str) -> PrivilegeError:
    return privilege_error(operation, capability, path=path, err=err, message=message)


def privilege_error(operation: str, capability: str, detail: str = "", *,
                    path: Optional[str] = None, err: int = errno.EPERM,
                    message: Optional[str] = None) -> PrivilegeError:
    """A :class:`PrivilegeError`: ``"<operation> needs <capability>[: <detail>]"``."""
    if message is None:
        message = f"{operation} needs {capability}" + (f": {detail}" if detail else "")
    exc = PrivilegeError(err, message, path) if path is not None else PrivilegeError(err, message)
    exc.operation = operation
    exc.capability = capability
    return exc


_ERRNO_SUBCLASSES: Dict[Tuple[type, Type[OSError]], Any] = {}


def errno_subclass(family: Type[_E], err: int) -> Type[_E]:
    """``family`` crossed with the errno's own OSError subclass, made once.

    ``MountError`` x ``PermissionError`` -> ``MountPermissionError``, so that
    ``except PermissionError`` and ``except MountError`` both catch it.
    """
    base = type(OSError(err, ""))
    if base is OSError:
        return family
    return _crossed(family, base)


def privileged(family: Type[_E]) -> Type[_E]:
    """``family`` crossed with :class:`PrivilegeError` (so also a ``PermissionError``)."""
    return _crossed(family, PrivilegeError)


def _crossed(family: Type[_E], base: Type[OSError]) -> Type[_E]:
    cls = _ERRNO_SUBCLASSES.get((family, base))
    if cls is None:
        name = family.__name__.replace("Error", "") + base.__name__
        cls = _ERRNO_SUBCLASSES[(family, base)] = type(name, (family, base),
                                                       {"__module__": FACE})
    made: Type[_E] = cls
    return made


def step_class_and_message(family: Type[_E], err: int, step: str, hint: str,
                           message: Optional[str], privilege: str) -> Tuple[Type[_E], str]:
    """The class and message of a step's error of ``family`` (``MountError``,
    ``CgroupError``): ``"<step>: <strerror>"``, then `` (<hint>)`` if given.

    ``privilege``: the capability the caller lacks, when that is why the
    step failed; the class is then also a :class:`PrivilegeError` and the
    hint, unless given, ``"needs <privilege>"``.
    """
    cls = privileged(family) if privilege else errno_subclass(family, err)
    if privilege and not hint:
        hint = f"needs {privilege}"
    if message is None:
        message = f"{step}: {os.strerror(err)}" + (f" ({hint})" if hint else "")
    return cls, message


def set_privilege(exc: OSError, operation: str, capability: str) -> None:
    """Fill in a :class:`PrivilegeError`'s fields (``exc`` is one)."""
    assert isinstance(exc, PrivilegeError)
    exc.operation = operation
    exc.capability = capability


def note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)``, also on Python 3.10 (which only stores it)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(text)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]


at_face(Error, UnsupportedError, PrivilegeError, _rebuild_privilege_error, privilege_error,
        note)
