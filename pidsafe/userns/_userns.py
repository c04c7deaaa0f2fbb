"""User namespaces with chosen uid/gid maps, as owned fds.

:func:`get_userns_fd` is containerd's ``GetUsernsFD`` (see
``shared/seeds/003_*``) done without its races and without forking:

1. A helper child comes from ``clone3(CLONE_NEWUSER|CLONE_VM|CLONE_PIDFD)``
   on its own small stack (csrc/userns.c): pid and pidfd are born together,
   no page table is copied, no Python runs in it.  It blocks until killed.
2. Its cleanup is armed at once (``try``/``finally``): kill through the
   pidfd, ``waitid(P_PIDFD)``, close the pidfd, unmap its stack.
3. ``/proc/PID/ns/user``, ``uid_map``, ``gid_map`` (and ``setgroups``) are
   opened close-on-exec **first**, **then** the helper is proven alive with
   ``pidfd_send_signal(pidfd, 0)``.  See the block comment in
   :func:`_map_process` for why this order is what makes the fds
   trustworthy.
4. Only then are the maps written, each in a single ``write()``.

:class:`UsernsCache` keeps one namespace per (uidmap, gidmap, setgroups) and
hands out duplicates of its fd.  :func:`write_child_maps` writes the maps
of a child made by ``spawn(uidmap=, gidmap=)`` (pidsafe/process/_plan.py).
"""

from __future__ import annotations

import collections
import errno
import fcntl
import os
import threading
from types import TracebackType
from typing import Callable, NamedTuple, Optional, Tuple, Type, Union

from .. import _sys
from ..errors import UnsupportedError
from .._fd import OwnedFd
from ._idmap import IDMap
from ..errors import IDMapError
from ..errors import HelperDiedError

#: What the map arguments accept: an :class:`IDMap` or its ``c:h:s,...`` text.
IDMapLike = Union[IDMap, str]

_SETGROUPS = ("deny", "allow")
_PAGE_SIZE = os.sysconf("SC_PAGESIZE")
_O_READ = os.O_RDONLY | os.O_CLOEXEC
_O_WRITE = os.O_WRONLY | os.O_CLOEXEC
_NS_GET_NSTYPE = 0xB703  # ioctl_ns(2), Linux 4.11


class HelperView(NamedTuple):
    """What :data:`_test_hook` is shown of the helper (tests only)."""

    pid: int
    pidfd: int


#: TEST-ONLY.  When set, called as ``_test_hook(stage, HelperView)`` at the
#: stages ``"cloned"`` (helper exists, nothing opened), ``"opened"`` (the
#: /proc files are open, not yet proven) and ``"proven"`` (proof done, maps
#: not yet written), so tests can kill or reap the helper (or the child of
#: ``spawn(uidmap=)``) at each point.  Never set it in production code.
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


def get_userns_fd(uidmap: IDMapLike, gidmap: IDMapLike, *,
                  setgroups: str = "deny") -> OwnedFd:
    """A new user namespace with the given maps, as an owned fd.

    Use it for ``mount_setattr(MOUNT_ATTR_IDMAP)`` (:func:`pidsafe.idmapped_bind`),
    ``setns(2)``, or ``spawn(..., userns=)``.  No process lives in the
    namespace when this returns: the fd alone keeps it alive.

    Args:
        uidmap: the uid map (:class:`IDMap` or ``"0:100000:65536[,...]"``).
        gidmap: the gid map.
        setgroups: ``"deny"`` (default; as containerd does) or ``"allow"``:
            whether ``setgroups(2)`` is allowed in the namespace
            (written to ``/proc/PID/setgroups`` before the gid map).

    Returns:
        An :class:`OwnedFd` for ``/proc/PID/ns/user`` of the helper,
        close-on-exec.

    Raises:
        IDMapError: a map is invalid (before anything is created).
        ValueError: ``setgroups`` is neither ``"deny"`` nor ``"allow"``.
        HelperDiedError: the helper was killed (or reaped) before its
            namespace could be proven; nothing is returned or leaked.
        PermissionError: the caller may not create the namespace, or may
            not write those maps (``write uid_map ...``: mapping ids other
            than your own needs CAP_SETUID/CAP_SETGID in our namespace).
        OSError: ENOSPC/EUSERS (too many user namespaces), EINVAL from the
            kernel for a map it refuses.
        UnsupportedError: no clone3 (or no trampoline for this CPU).
    """
    um = _as_idmap(uidmap, "uidmap")
    gm = _as_idmap(gidmap, "gidmap")
    _check_setgroups(setgroups)
    _check_size(um, "uidmap")
    _check_size(gm, "gidmap")

    try:
        helper = _sys.userns_helper_start(os.getpid())
    except OSError as exc:
        if exc.errno == errno.ENOSYS:
            raise UnsupportedError("clone3", "a user-namespace helper needs clone3 "
                                   "with a child stack") from None
        hint = _CLONE_HINTS.get(exc.errno or 0)
        if hint is None:
            raise
        raise _sys.make_oserror(exc.errno or 0, f"clone3(CLONE_NEWUSER) [{hint}]") from None
    pidfd = int(helper.pidfd)
    try:
        ns_fd = _map_process(int(helper.pid), pidfd, um, gm, setgroups, "user-namespace helper",
                             open_ns=True)
        return OwnedFd(ns_fd, "user namespace")
    finally:
        _sys.end_child(pidfd, lambda: _sys.userns_helper_free(helper))


def _map_process(pid: int, pidfd: int, um: IDMap, gm: IDMap, setgroups: str, what: str,
                 *, open_ns: bool) -> int:
    """Write the maps of the new user namespace of our child ``pid``.

    The child (held by ``pidfd``) must be in a user namespace of its own
    whose maps are not written yet.  Returns an fd for the namespace if
    ``open_ns`` (else -1); every other fd is closed on return.

    Raises:
        HelperDiedError: the child was reaped before it could be proven.
    """
    ns_fd = uid_fd = gid_fd = sg_fd = -1
    hook = _test_hook
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
        base = b"/proc/%d/" % pid
        try:
            if open_ns:
                ns_fd = os.open(base + b"ns/user", _O_READ)
            if setgroups != "allow":
                sg_fd = os.open(base + b"setgroups", _O_WRITE)
            uid_fd = os.open(base + b"uid_map", _O_WRITE)
            gid_fd = os.open(base + b"gid_map", _O_WRITE)
        except OSError as exc:
            # ENOENT/ESRCH here usually means the child is gone; say so only
            # if the pidfd confirms it, else report the open's own error.
            if exc.errno in (errno.ENOENT, errno.ESRCH) and not _alive(pidfd):
                raise HelperDiedError(errno.ESRCH, f"{what} {pid} died before its namespace "
                                      "could be opened") from None
            raise
        if hook is not None:
            hook("opened", HelperView(pid, pidfd))
        if not _alive(pidfd):
            raise HelperDiedError(errno.ESRCH, f"{what} {pid} was reaped before its namespace "
                                  "could be proven; its /proc fds are not trusted")
        if hook is not None:
            hook("proven", HelperView(pid, pidfd))
        if sg_fd >= 0:
            _write_once(sg_fd, b"deny", pid, "setgroups", setgroups)
        _write_once(uid_fd, um._kernel, pid, "uid_map", um)
        _write_once(gid_fd, gm._kernel, pid, "gid_map", gm)
        result, ns_fd = ns_fd, -1
        return result
    finally:
        for fd in (uid_fd, gid_fd, sg_fd, ns_fd):
            if fd >= 0:
                os.close(fd)


def _alive(pidfd: int) -> bool:
    """pidfd_send_signal(pidfd, 0): False once the process has been reaped."""
    try:
        _sys.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        return False
    return True


# Why clone(CLONE_NEWUSER) fails (clone(2), user_namespaces(7)).
_CLONE_HINTS = {
    errno.EPERM: "refused: creating a user namespace needs CAP_SYS_ADMIN unless "
                 "unprivileged user namespaces are enabled (sysctls such as "
                 "kernel.unprivileged_userns_clone, an LSM policy); chroot'ed callers and "
                 "seccomp filters can also forbid it",
    errno.ENOSPC: "too many user namespaces: see /proc/sys/user/max_user_namespaces "
                  "(and the nesting limit of 32)",
    errno.EUSERS: "too many nested user namespaces (the limit is 32)",
}

# Why a write to a map file is refused with EPERM (user_namespaces(7)).
_EPERM_HINTS = {
    "uid_map": "mapping host uids other than your own needs CAP_SETUID in the parent "
               "user namespace (and the map can be written only once)",
    "gid_map": "mapping host gids other than your own needs CAP_SETGID in the parent "
               "user namespace, and without it setgroups must be 'deny' (and the map can "
               "be written only once)",
    "setgroups": "setgroups can no longer change once the gid map is written",
}


def _write_once(fd: int, data: bytes, pid: int, name: str, what: object) -> None:
    """One write() of a whole /proc/PID/<name> file; errors name the map."""
    try:
        n = os.write(fd, data)
    except OSError as exc:
        err = exc.errno or errno.EIO
        step = f"write {name} ({what})"
        if err == errno.EPERM:
            step += f" [{_EPERM_HINTS[name]}]"
        raise _sys.make_oserror(err, step, f"/proc/{pid}/{name}") from None
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


# --- the cache ----------------------------------------------------------------

_Key = Tuple[IDMap, IDMap, str]


class UsernsCache:
    """A bounded, thread-safe cache of user namespaces by their maps.

    ``get()`` returns a *duplicate* of the cached fd (close-on-exec), which
    the caller owns and closes; the namespace lives as long as any fd to it.
    The key ignores the order ranges were written in
    (``"0:0:1,1:100:5"`` and ``"1:100:5,0:0:1"`` are one namespace).  The
    least recently used entry is evicted (its cached fd closed) beyond
    ``maxsize``.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, maxsize: int = 64) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, not {maxsize!r}")
        self.maxsize = maxsize
        self._lock = threading.Lock()
        self._fds: "collections.OrderedDict[_Key, OwnedFd]" = collections.OrderedDict()
        self._closed = False

    def get(self, uidmap: IDMapLike, gidmap: IDMapLike, *,
            setgroups: str = "deny") -> OwnedFd:
        """An fd for a user namespace with these maps, made on first use.

        Raises:
            ValueError: the cache is closed, or a bad ``setgroups``.
            IDMapError, OSError: as :func:`get_userns_fd`.
        """
        _check_setgroups(setgroups)
        key = (_as_idmap(uidmap, "uidmap"), _as_idmap(gidmap, "gidmap"), setgroups)
        with self._lock:
            if self._closed:
                raise ValueError("UsernsCache is closed")
            cached = self._fds.get(key)
            if cached is not None:
                self._fds.move_to_end(key)
                return OwnedFd(fcntl.fcntl(cached.fileno(), fcntl.F_DUPFD_CLOEXEC, 0),
                               "user namespace")
        # Make it without the lock: other keys (and hits) need not wait.
        fresh: Optional[OwnedFd] = get_userns_fd(key[0], key[1], setgroups=setgroups)
        evicted = []
        try:
            with self._lock:
                if self._closed:
                    raise ValueError("UsernsCache is closed")
                cached = self._fds.get(key)
                if cached is None:  # else another thread won the race: use theirs
                    assert fresh is not None
                    cached, fresh = fresh, None
                    self._fds[key] = cached
                    while len(self._fds) > self.maxsize:
                        evicted.append(self._fds.popitem(last=False)[1])
                else:
                    self._fds.move_to_end(key)
                return OwnedFd(fcntl.fcntl(cached.fileno(), fcntl.F_DUPFD_CLOEXEC, 0),
                               "user namespace")
        finally:
            if fresh is not None:
                fresh.close()
            for fd in evicted:
                fd.close()

    def __len__(self) -> int:
        with self._lock:
            return len(self._fds)

    def clear(self) -> None:
        """Close every cached fd (fds handed out stay open)."""
        with self._lock:
            items = list(self._fds.values())
            self._fds.clear()
        for fd in items:
            fd.close()

    def close(self) -> None:
        """Empty the cache and refuse further ``get()`` calls.  Idempotent."""
        with self._lock:
            self._closed = True
        self.clear()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def __enter__(self) -> "UsernsCache":
        return self

    def __exit__(self, exc_type: Optional[Type[BaseException]],
                 exc: Optional[BaseException], tb: Optional[TracebackType]) -> None:
        self.close()
