"""Reading and writing cgroupfs files, each failure a :class:`CgroupError`.

Plain ``os.open`` with ``O_CLOEXEC``: control files are small, and a write
is one ``write(2)`` (the kernel parses each write as a whole value).
"""

from __future__ import annotations

import errno
import os
import posixpath
import time

from ..._fd import OwnedFd
from ..._sigsafe import critical
from ..._value import Frozen, init_fields
from ...errors import CgroupError, cgroup_error, note

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Iterator, List, Optional, Sequence, Tuple


class CgroupDir(Frozen):
    """The container's cgroup in one hierarchy (an immutable value, pidsafe/_value.py).

    Attributes:
        key: the hierarchy, as ``/proc/PID/cgroup`` names it (``""``: v2).
        path: the directory.
        cgroup: the cgroup as ``/proc/PID/cgroup`` shows it, e.g. ``/a/c1``.
    """

    __slots__ = ("key", "path", "cgroup")
    key: str
    path: str
    cgroup: str

    def __init__(self, key: str, path: str, cgroup: str) -> None:
        init_fields(self, key, path, cgroup)

    def file(self, name: str) -> str:
        path = self.path   # posixpath.join's result, without its checks (a hot path)
        return path + name if path.endswith("/") else path + "/" + name


#: What writing cgroupfs takes (its files and directories are root's).
PRIVILEGE = "root (CAP_DAC_OVERRIDE and CAP_SYS_ADMIN), or a cgroup delegated to this user"


def privilege_needed(err: int) -> str:
    """:data:`PRIVILEGE` when ``err`` (EACCES, EPERM) means the caller lacks it, else ``""``.

    Only a caller without ``CAP_DAC_OVERRIDE`` or ``CAP_SYS_ADMIN`` is told
    so: root's EPERM from cgroupfs has other causes (a process that cannot
    move, a controller that cannot be enabled).
    """
    if err not in (errno.EACCES, errno.EPERM):
        return ""
    from ... import _sys

    try:
        caps = _sys.capget()
    except OSError:
        return ""
    return "" if caps.has("DAC_OVERRIDE") and caps.has("SYS_ADMIN") else PRIVILEGE


def _err(exc: OSError, step: str, path: str, value: Optional[str] = None) -> CgroupError:
    err = exc.errno or errno.EIO
    hint = "the kernel offers no such cgroup file here" if err == errno.ENOENT else ""
    return cgroup_error(err, step, path, hint, value=value, privilege=privilege_needed(err))


def write_file(path: str, value: str, field: str = "") -> None:
    """Write ``value`` to the control file ``path`` in one ``write(2)``.

    ``field`` (a config path like ``linux.resources.cpu.cpus``) goes into
    the message.

    Raises:
        CgroupError: the open or the write failed (names file and value).
    """
    step = f"unable to write {value!r} to {path}" + (f" ({field})" if field else "")
    with critical:      # open -> close as one step: a raising handler leaks no fd
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _err(exc, step, path, value) from None
        try:
            os.write(fd, value.encode())
        except OSError as exc:
            raise _err(exc, step, path, value) from None
        finally:
            os.close(fd)


def write_values(path: str, values: Sequence[Tuple[str, str]]) -> None:
    """Write each ``(value, field)`` of ``values`` to the control file
    ``path``, in order, each in one ``write(2)``, through one open.

    As :func:`write_file` for each (the kernel takes each write(2) of a
    control file on its own, ``devices.allow``'s rules among them), without
    an open and a close per value.

    Raises:
        CgroupError: the open or a write failed (names file and value);
            the values before it were written.
    """
    if not values:
        return
    first = values[0]
    with critical:      # open -> close as one step: a raising handler leaks no fd
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _err(exc, _write_step(path, *first), path, first[0]) from None
        try:
            for value, field in values:
                try:
                    os.write(fd, value.encode())
                except OSError as exc:
                    raise _err(exc, _write_step(path, value, field), path, value) from None
        finally:
            os.close(fd)


def _write_step(path: str, value: str, field: str) -> str:
    return f"unable to write {value!r} to {path}" + (f" ({field})" if field else "")


def read_file(path: str) -> str:
    """The text of the control file ``path``.

    Bytes that are not UTF-8 come back as surrogates (``surrogateescape``,
    as ``os.fsdecode`` gives them): ``/proc/self/mountinfo`` and
    ``/proc/self/cgroup`` hold paths, and one mount point with such a name
    anywhere in our mount namespace (a container can make one, through
    shared propagation) must not stop every cgroup operation.  Paths so
    decoded reach the same files when passed back to ``os``.

    Raises:
        CgroupError: it cannot be opened or read.
    """
    with critical:      # control files are small: reading them is not blocking
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise _err(exc, f"unable to read {path}", path) from None
        try:
            chunks: List[bytes] = []
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks).decode("utf-8", "surrogateescape")
                chunks.append(chunk)
        except OSError as exc:
            raise _err(exc, f"unable to read {path}", path) from None
        finally:
            os.close(fd)


def read_optional(path: str) -> Optional[str]:
    """Like :func:`read_file`, but ``None`` if the file does not exist.

    Raises:
        CgroupError: it exists and cannot be read.
    """
    try:
        return read_file(path)
    except FileNotFoundError:
        return None


#: A write that puts a control file back as it was: (path, value, config field).
if TYPE_CHECKING:
    Previous = Tuple[str, str, str]


def current_setting(path: str) -> Optional[str]:
    """What to write to the control file ``path`` to put back its setting as
    it is now; ``None`` if there is no such file.

    Most files read back as they are written (``max 100000``,
    ``9223372036854771712``, ``0-1``); ``memory.oom_control`` reads as keyed
    lines and is written as the value of ``oom_kill_disable``.

    Raises:
        CgroupError: it exists and cannot be read.
    """
    text = read_optional(path)
    if text is None:
        return None
    if posixpath.basename(path) == "memory.oom_control":
        return str(keyed(text, "oom_kill_disable") or 0)
    return text.strip()


def put_back(previous: List[Previous], exc: BaseException) -> None:
    """Undo writes, newest first, after ``exc`` stopped the change they were part of.

    Newest first, each intermediate state is one that existed before (the
    kernel's rules, such as v1's memsw >= limit, held there).  A write that
    fails is noted on ``exc`` and the others are still tried.  One critical
    section: a signal handler's exception waits until every file is back.
    """
    with critical:
        for path, value, field in reversed(previous):
            try:
                write_file(path, value, field)
            except CgroupError as failed:
                note(exc, f"also: could not put {path} back: {failed}")


def keyed(text: Optional[str], key: str) -> Optional[int]:
    """The number after ``key`` in a flat-keyed file (``memory.events`` ...)."""
    for line in (text or "").splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


def subtree(path: str) -> Iterator[str]:
    """``path`` and every cgroup below it, children before their parents.

    A cgroup removed meanwhile is skipped (it has nothing left to list).

    Raises:
        CgroupError: a directory cannot be listed.
    """
    try:
        with critical, os.scandir(path) as it:
            children = [e.path for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return      # gone: a concurrent delete or an exiting nested cgroup
    except OSError as exc:
        raise _err(exc, f"unable to list {path}", path) from None
    for child in children:
        yield from subtree(child)
    yield path


def procs(path: str) -> List[int]:
    """The pids in ``path``'s ``cgroup.procs`` and in every cgroup below it.

    Raises:
        CgroupError: a file cannot be read.
    """
    out: List[int] = []
    for d in subtree(path):
        text = read_optional(os.path.join(d, "cgroup.procs"))
        out += [int(p) for p in (text or "").split()]
    return sorted(set(out))


def rmdir_busy(d: str, deadline: float) -> None:
    """rmdir a cgroup, retrying ``EBUSY`` (tasks still exiting) until ``deadline``.

    Raises:
        CgroupError: still busy at the deadline (names the pids inside), or
            another rmdir failure.
    """
    delay = 0.001
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return              # removed already: delete() is idempotent
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                hint = f"processes inside: {procs(d)[:10]}" if exc.errno == errno.EBUSY else ""
                err = exc.errno or errno.EIO
                raise cgroup_error(err, f"unable to remove cgroup {d}", d, hint,
                                   privilege=privilege_needed(err)) from None
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.05)


def rmdir_all(made: List[str]) -> None:
    """Undo creation: remove ``made`` in reverse (a rollback: errors would hide the cause)."""
    for d in reversed(made):
        try:
            os.rmdir(d)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                # The original error is what the caller needs; note this one.
                import warnings   # here: delete's path never warns, and pays nothing

                warnings.warn(f"pidsafe: could not remove cgroup {d} while undoing its "
                              f"creation: {exc}", RuntimeWarning, stacklevel=3)


def open_for_writing(paths: List[str], what: str) -> List[Tuple[OwnedFd, str]]:
    """Each of ``paths`` open for writing (close-on-exec), with its path: all or none.

    Raises:
        CgroupError: a file cannot be opened (what was opened is closed).
    """
    fds: List[Tuple[OwnedFd, str]] = []
    try:
        with critical:   # one section for all: each fd is owned as its open returns
            for path in paths:
                try:
                    opened = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                except OSError as exc:
                    raise cgroup_error(exc.errno or errno.EIO, f"unable to open {path}",
                                       path) from None
                fds.append((OwnedFd(opened, what), path))
    except BaseException:
        with critical:
            for fd, _ in fds:
                fd.close()
        raise
    return fds
