"""Writing the maps of a child's new user namespace.

:func:`_map_process` is the heart of ``get_userns_fd`` (``_helper.py``) and
of ``spawn(uidmap=, gidmap=)``: for a child of ours that sits in a user
namespace of its own, it

1. opens ``/proc/PID/ns/user``, ``uid_map``, ``gid_map`` (and
   ``setgroups``) close-on-exec **first**, **then** proves the child alive
   with ``pidfd_send_signal(pidfd, 0)`` (see the block comment there for
   why this order makes the fds trustworthy);
2. only then writes the maps, each in a single ``write()``;
3. re-examines every failure to open or write against the pidfd: if the
   child has been reaped meanwhile the failure is the child's death
   (:class:`~pidsafe.HelperDiedError`), whatever errno the kernel chose
   to report it with.

:func:`write_child_maps` writes the maps of a child made by
``spawn(uidmap=, gidmap=)`` (pidsafe/process/_plan.py).
"""

from __future__ import annotations

import errno
import os
from typing import Callable, Dict, List, NamedTuple, Optional, Union

from .. import _sys
from .._fd import OwnedFd
from .._sigsafe import critical, undoing
from ..errors import HelperDiedError, IDMapError, privilege_error
from ._idmap import IDMap

__all__ = ["HelperView", "IDMapLike", "spawn_map", "write_child_maps"]

#: What the map arguments accept: an :class:`IDMap` or its ``c:h:s,...`` text.
IDMapLike = Union[IDMap, str]

_SETGROUPS = ("deny", "allow")
_PAGE_SIZE = os.sysconf("SC_PAGESIZE")
_O_READ = os.O_RDONLY | os.O_CLOEXEC
_O_WRITE = os.O_WRONLY | os.O_CLOEXEC


class HelperView(NamedTuple):
    """What :data:`_test_hook` is shown of the helper (tests only)."""

    pid: int
    pidfd: int


#: TEST-ONLY.  When set, called as ``_test_hook(stage, HelperView)`` at the
#: stages ``"cloned"`` (helper exists, nothing opened), ``"open NAME"``
#: (right before ``/proc/PID/NAME`` is opened; NAME is ``ns/user``,
#: ``setgroups``, ``uid_map`` or ``gid_map``), ``"opened"`` (the /proc files
#: are open, not yet proven), ``"proven"`` (proof done, maps not yet
#: written) and ``"write NAME"`` (right before NAME is written), so tests can
#: kill or reap the helper (or the child of ``spawn(uidmap=)``) at each
#: point.  Never set it in production code.
_test_hook: Optional[Callable[[str, HelperView], None]] = None


def _as_idmap(value: IDMapLike, name: str) -> IDMap:
    if isinstance(value, IDMap):
        return value
    if isinstance(value, str):
        try:
            return IDMap.parse(value)
        except IDMapError as exc:
            raise IDMapError(f"{name}: {exc}") from None
    raise TypeError(f"{name} must be an IDMap or a 'c:h:s[,...]' str, "
                    f"not {type(value).__name__}: {value!r}")


def _check_size(m: IDMap, name: str) -> None:
    # map_write() takes the whole map in one write() of less than a page.
    if len(m._kernel) >= _PAGE_SIZE:
        raise IDMapError(f"{name}: the map is {len(m._kernel)} bytes as the kernel spells it; "
                         f"the kernel takes at most {_PAGE_SIZE - 1} in one write: {m}")


def _check_setgroups(setgroups: str) -> None:
    if setgroups not in _SETGROUPS:
        raise ValueError(f"setgroups must be 'deny' or 'allow', not {setgroups!r}")


def _map_process(pid: int, pidfd: int, um: IDMap, gm: IDMap, setgroups: str, what: str,
                 *, open_ns: bool) -> Optional[OwnedFd]:
    """Write the maps of the new user namespace of our child ``pid``.

    The child (held by ``pidfd``) must be in a user namespace of its own
    whose maps are not written yet.  Returns an owned fd for the namespace
    if ``open_ns`` (else None); every other fd is closed on return, on every
    error, and when a signal handler raises at any point.

    Raises:
        HelperDiedError: the child was reaped before it could be proven, or
            an open or write failed because the child had been reaped.
        PermissionError: the kernel refused a map (EPERM; the message
            says which capability is missing) or an open (EACCES), with the
            child alive.
        OSError: another open or write failure with the child alive
            (EINVAL for a map the kernel refuses, EMFILE ...).
    """
    hook = _test_hook
    # Every fd opened here, by name, from the moment it exists: each open
    # and its entry happen in one critical section, so a raising signal
    # handler can never leave an fd that nothing owns.
    fds: Dict[str, int] = {}
    base = b"/proc/%d/" % pid
    names = ((["ns/user"] if open_ns else []) + (["setgroups"] if setgroups != "allow" else [])
             + ["uid_map", "gid_map"])
    try:
        if hook is not None:
            hook("cloned", HelperView(pid, pidfd))
        # Open first, prove after.  A pid names a process only until that
        # process is reaped.  If the child was killed (by anyone) and reaped
        # (by a global reaper that waits with __WALL), its pid may already
        # belong to another process, and /proc/PID/... would open *that*
        # process's namespace and maps.  An open fd pins whatever the path
        # resolved to at open time.  pidfd_send_signal(pidfd, 0) afterwards
        # succeeds only while our child itself has not been reaped (a zombie
        # still passes: its credentials, hence its user namespace, stay with
        # it until it is reaped), and a pid is never reused before its
        # process is reaped.  So if the proof succeeds, every fd opened
        # before it refers to our child, whatever happens to the pid later.
        for name in names:
            if hook is not None:
                hook("open " + name, HelperView(pid, pidfd))
            path = base + name.encode()
            # The except is inside the section: an OSError a handler raises
            # (TimeoutError from a SIGALRM timeout) comes out at its end and
            # is never taken for the open's own failure.
            with critical:
                try:
                    fds[name] = os.open(path, _O_READ if name == "ns/user" else _O_WRITE)
                except OSError as exc:
                    _raise_if_died(exc, pidfd, f"{what} {pid} died before its namespace could "
                                   f"be opened (open {name}: {os.strerror(exc.errno or 0)})")
                    raise _sys.make_oserror(exc.errno or errno.EIO,
                                            f"open {name} of {what} {pid}", path.decode()) from None
        if hook is not None:
            hook("opened", HelperView(pid, pidfd))
        if not _alive(pidfd):
            raise HelperDiedError(errno.ESRCH, f"{what} {pid} was reaped before its namespace "
                                  "could be proven; its /proc fds are not trusted")
        if hook is not None:
            hook("proven", HelperView(pid, pidfd))
        writes = ([("setgroups", b"deny", setgroups)] if "setgroups" in fds else []) + [
            ("uid_map", um._kernel, um), ("gid_map", gm._kernel, gm)]
        for name, data, shown in writes:
            if hook is not None:
                hook("write " + name, HelperView(pid, pidfd))
            with critical:
                try:
                    _write_once(fds[name], data, pid, name, shown)
                except OSError as exc:
                    _raise_if_died(exc, pidfd, f"{what} {pid} was reaped while its {name} was "
                                   f"written ({os.strerror(exc.errno or 0)})")
                    raise
    except BaseException:
        with critical:
            _close_all(fds)
        raise
    # Hand over the namespace fd and close the rest in one section.  A
    # handler's exception may still come out of the section's end: then its
    # undo closes what would have been returned, signals still diverted.
    result: List[OwnedFd] = []

    def undo(exc: BaseException) -> None:
        while result:
            result.pop().close()
        _close_all(fds)

    try:
        with undoing(undo):
            if open_ns:
                result.append(OwnedFd(fds.pop("ns/user"), "user namespace"))
            _close_all(fds)
            return result[0] if result else None
    except BaseException as exc:   # as __exit__ returned (see _sigsafe.undoing)
        with critical:
            undo(exc)
        raise


def _close_all(fds: Dict[str, int]) -> None:
    """Close and forget every fd of ``fds`` (each exactly once)."""
    while fds:
        os.close(fds.popitem()[1])


def _raise_if_died(exc: OSError, pidfd: int, message: str) -> None:
    """Turn a failed open/write under /proc/PID into HelperDiedError if the
    child has been reaped.

    Once a child is reaped, the kernel reports the /proc files of a pid it
    no longer has in several ways, depending on how far the open or write
    had got: ENOENT or ESRCH (the pid is gone), EACCES (``ns/user``: the
    task vanished between the lookup and the open), EINVAL (``uid_map``:
    no task to take the namespace from) ...  None of them is a genuine
    refusal, so ask the pidfd, which cannot be fooled by a reused pid; a
    live child (a zombie included) keeps the original error.
    """
    if not _alive(pidfd):
        raise HelperDiedError(errno.ESRCH, message) from exc


def _alive(pidfd: int) -> bool:
    """pidfd_send_signal(pidfd, 0): False once the process has been reaped."""
    try:
        _sys.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True


# Why a write to a map file is refused with EPERM (user_namespaces(7)).
_EPERM_HINTS = {
    "uid_map": "mapping host uids other than your own needs CAP_SETUID in the parent "
               "user namespace (and the map can be written only once)",
    "gid_map": "mapping host gids other than your own needs CAP_SETGID in the parent "
               "user namespace, and without it setgroups must be 'deny' (and the map can "
               "be written only once)",
    "setgroups": "setgroups can no longer change once the gid map is written",
}


#: The capability a map of ids other than one's own needs (user_namespaces(7)).
_MAP_CAPS = {"uid_map": "SETUID", "gid_map": "SETGID"}


def _lacks(cap: str) -> bool:
    """Whether the calling thread lacks ``cap`` (``"SETUID"``) in its effective set."""
    try:
        return not _sys.capget().has(cap)
    except OSError:
        return False


def _write_once(fd: int, data: bytes, pid: int, name: str, what: object) -> None:
    """One write() of a whole /proc/PID/<name> file; errors name the map."""
    try:
        n = os.write(fd, data)
    except OSError as exc:
        err = exc.errno or errno.EIO
        step = f"write {name} ({what})"
        if err == errno.EPERM:
            step += f" [{_EPERM_HINTS[name]}]"
        made = _sys.make_oserror(err, step, f"/proc/{pid}/{name}")
        cap = _MAP_CAPS.get(name)
        if cap is not None and err == errno.EPERM and _lacks(cap):
            raise privilege_error(f"write {name} ({what})", f"CAP_{cap} in the parent user "
                                  "namespace", path=made.filename, message=made.strerror
                                  ) from None
        raise made from None
    if n != len(data):  # pragma: no cover - the kernel takes it whole or fails
        raise _sys.make_oserror(errno.EIO, f"write {name}: short write ({n} of {len(data)})",
                                f"/proc/{pid}/{name}")


# --- for spawn(uidmap=, gidmap=) (pidsafe/process/_plan.py) ---------------------


def spawn_map(value: IDMapLike, name: str) -> IDMap:
    """``value`` as an :class:`IDMap` the kernel takes in one write.

    Raises:
        IDMapError: a bad map, or one too long for a single write.
        TypeError: neither an IDMap nor its text.
    """
    m = _as_idmap(value, name)
    _check_size(m, name)
    return m


def write_child_maps(pid: int, pidfd: int, uidmap: IDMap, gidmap: IDMap) -> None:
    """Write the maps of our child's new user namespace; setgroups "deny".

    Open first, prove after (see :func:`_map_process`), then write.

    Raises:
        HelperDiedError: the child was killed and reaped before its /proc
            files could be proven to be its own.
        PermissionError, OSError: the kernel refused a map.
    """
    _map_process(pid, pidfd, uidmap, gidmap, "deny", "child", open_ns=False)
