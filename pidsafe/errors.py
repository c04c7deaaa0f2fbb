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

from ._feature_names import describe

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Protocol, Tuple, Type, TypeVar, Union

    class _Mount(Protocol):
        """What :class:`InvalidMountError` reads of a :class:`pidsafe.Mount`
        (this module is a leaf: it imports no layer)."""

        @property
        def type(self) -> str: ...

        @property
        def source(self) -> str: ...

        @property
        def target(self) -> str: ...


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


if TYPE_CHECKING:
    import subprocess

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


def _privileged(family: Type[_E]) -> Type[_E]:
    """``family`` crossed with :class:`PrivilegeError` (so also a ``PermissionError``)."""
    cls = _ERRNO_SUBCLASSES.get((family, PrivilegeError))
    if cls is None:
        name = family.__name__.replace("Error", "") + "PrivilegeError"
        cls = _ERRNO_SUBCLASSES[(family, PrivilegeError)] = type(
            name, (family, PrivilegeError), {"__module__": __name__})
    made: Type[_E] = cls
    return made


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


if TYPE_CHECKING:
    _E = TypeVar("_E", bound=OSError)
_ERRNO_SUBCLASSES: Dict[Tuple[type, Type[OSError]], Any] = {}


def _errno_subclass(family: Type[_E], err: int) -> Type[_E]:
    """``family`` crossed with the errno's own OSError subclass, made once.

    ``MountError`` x ``PermissionError`` -> ``MountPermissionError``, so that
    ``except PermissionError`` and ``except MountError`` both catch it.
    """
    base = type(OSError(err, ""))
    if base is OSError:
        return family
    cls = _ERRNO_SUBCLASSES.get((family, base))
    if cls is None:
        name = family.__name__.replace("Error", "") + base.__name__
        cls = _ERRNO_SUBCLASSES[(family, base)] = type(name, (family, base),
                                                       {"__module__": __name__})
    made: Type[_E] = cls
    return made


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
    cls = _privileged(MountError) if privilege else _errno_subclass(MountError, err)
    if privilege and not hint:
        hint = f"needs {privilege}"
    if message is None:
        message = f"{step}: {os.strerror(err)}" + (f" ({hint})" if hint else "")
    exc = cls(err, message, os.fspath(path) if path is not None else None, step)
    if privilege:
        _set_privilege(exc, step, privilege)
    return exc


def _set_privilege(exc: OSError, operation: str, capability: str) -> None:
    assert isinstance(exc, PrivilegeError)
    exc.operation = operation
    exc.capability = capability


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


# --- containers -----------------------------------------------------------------

class ConfigError(Error, ValueError):
    """A bundle's ``config.json`` is malformed or breaks the runtime spec.

    Attributes:
        json_path: where, e.g. ``"linux.namespaces[2].type"``.
        reason: what is wrong with it.
    """

    def __init__(self, json_path: str, reason: str) -> None:
        super().__init__(f"{json_path}: {reason}")
        self.json_path = json_path
        self.reason = reason


class UnsupportedConfigError(ConfigError):
    """A ``config.json`` field runtime-spec defines and pidsafe does not implement
    (refused, never ignored; a property the spec does not define is ignored)."""

    def __init__(self, json_path: str, what: str) -> None:
        super().__init__(json_path, f"not supported by pidsafe ({what})")


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
    cls = _errno_subclass(ContainerError, err)
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
    cls = _errno_subclass(HookError, err)
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


class StaleProcessError(Error, ProcessLookupError):
    """A recorded process (pid + start time + boot) no longer exists.

    Raised instead of trusting a pid that may have been recycled.
    ``errno`` is ``ESRCH``; ``pid`` is the recorded pid.
    """

    def __init__(self, pid: int, reason: str) -> None:
        super().__init__(errno.ESRCH, f"process {pid} is gone: {reason}")
        self.pid = pid


# --- cgroups --------------------------------------------------------------------

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
    cls = _privileged(CgroupError) if privilege else _errno_subclass(CgroupError, err)
    if privilege and not hint:
        hint = f"needs {privilege}"
    if message is None:
        message = f"{step}: {os.strerror(err)}" + (f" ({hint})" if hint else "")
    exc = cls(err, message, path, step, value)
    if privilege:
        _set_privilege(exc, step, privilege)
    return exc


def note(exc: BaseException, text: str) -> None:
    """``exc.add_note(text)``, also on Python 3.10 (which only stores it)."""
    add_note = getattr(exc, "add_note", None)
    if add_note is not None:
        add_note(text)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), text]  # type: ignore[attr-defined]


# --- command lines ---------------------------------------------------------------

class UsageError(Error, ValueError):
    """A command line pidsafe's CLIs refuse (``pidsafe-runc`` exits 1 with it)."""


# --- the containerd shim (pidsafe.shim) ------------------------------------------

class DecodeError(Error, ValueError):
    """Bytes that are not a valid protobuf encoding of the expected message."""


#: gRPC status code names by number (google.golang.org/grpc/codes).
_RPC_CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded",
                   "NotFound", "AlreadyExists", "PermissionDenied", "ResourceExhausted",
                   "FailedPrecondition", "Aborted", "OutOfRange", "Unimplemented",
                   "Internal", "Unavailable", "DataLoss", "Unauthenticated")


class RpcError(Error, RuntimeError):
    """A ttrpc call's error status: a gRPC code and a message.

    A ttrpc handler raises it to answer with that status (containerd maps
    NotFound 5, AlreadyExists 6, FailedPrecondition 9, InvalidArgument 3,
    Unimplemented 12, Unavailable 14 to its own errors; anything else is
    Unknown to it); a ttrpc client raises it when the server answers one.
    ``pidsafe.shim.Code`` names the codes.

    Attributes:
        code: the gRPC status code (never 0).
        message: the status message, as sent.
    """

    def __init__(self, code: int, message: str) -> None:
        name = _RPC_CODE_NAMES[code] if 0 <= code < len(_RPC_CODE_NAMES) else f"Code({code})"
        super().__init__(f"{name}: {message}")
        self.code = code
        self.message = message

    def __reduce__(self) -> Tuple[Any, ...]:
        return type(self), (self.code, self.message)


class ConnectionClosedError(Error, ConnectionError):
    """A ttrpc connection is closed (ttrpc's ``ErrClosed``).

    The peer hung up or reset it, or this side closed it; a call in flight
    on it, and every later call, fails with this.
    """

    def __init__(self, message: str = "ttrpc: closed") -> None:
        super().__init__(message)
