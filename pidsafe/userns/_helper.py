"""get_userns_fd: a user namespace with chosen maps, as an owned fd.

containerd's ``GetUsernsFD`` (its mount package) done without its
races and without forking:

1. A helper child comes from ``clone3(CLONE_NEWUSER|CLONE_VM|CLONE_PIDFD)``
   on its own small stack (csrc/native/userns.c): pid and pidfd are born together,
   no page table is copied, no Python runs in it.  It blocks until killed.
2. Its cleanup is armed at once, in the critical section that made it:
   kill through the pidfd, ``waitid(P_PIDFD)``, close the pidfd, and only
   once the helper is proven dead, give its stack back.
3. :func:`~pidsafe.userns._userns._map_process` opens its ``/proc`` files,
   proves it alive through the pidfd, then writes the maps.

A signal handler that raises (Ctrl-C, a ``SIGALRM`` timeout) at any point
leaves nothing behind: the helper's whole life (about a millisecond, no
unbounded wait) is one ``critical`` section (pidsafe/_sigsafe.py), so the
handler runs when it is over, with only the returned fd left to close.

make_userns: the same, but the reap is left to the caller
(:meth:`NewUserns.close`).  A killed helper dies only once it is given a
CPU; waiting for that at once is a wake-up on the caller's path (two
milliseconds at a load of four here), where reaping it later, after other
waits, finds it dead.
"""

from __future__ import annotations

import errno
import os
import signal
from typing import Any, Callable, Optional, Tuple

from .. import _sys
from .._fd import OwnedFd
from .._sigsafe import hand_out
from ..errors import UnsupportedError
from ._idmap import IDMap
from ._userns import IDMapLike, _as_idmap, _check_setgroups, _check_size, _map_process

__all__ = ["NewUserns", "get_userns_fd", "make_userns"]

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

#: How often a cleanup step is tried before it is given up.  The steps
#: (kill, waitid, munmap) cannot fail for a child of ours short of a kernel
#: bug; a failure is retried rather than turned at once into a leak.
_CLEANUP_TRIES = 3


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
        HelperDiedError: the helper was killed and reaped (by a foreign
            reaper) before its namespace could be proven, or while its
            /proc files were opened or written; nothing is returned or
            leaked.  Retrying is safe.
        PermissionError: the caller may not create the namespace, or may
            not write those maps (``write uid_map ...``: mapping ids other
            than your own needs CAP_SETUID/CAP_SETGID in our namespace).
        OSError: ENOSPC/EUSERS (too many user namespaces), EINVAL from the
            kernel for a map it refuses, EMFILE/ENFILE (no fd left).
        UnsupportedError: no clone3 (or no trampoline for this CPU).
    """
    um, gm = _checked(uidmap, gidmap, setgroups)

    # One critical section for the whole life of the helper: clone3, the
    # /proc opens, the proof, the map writes, kill and reap.  All of it is
    # short and none of it waits for anything but the kernel (the reap
    # waits only for a SIGKILLed helper to finish dying), and inside it a
    # signal handler cannot run, so the try/finally below is exact.  A
    # handler's exception comes out of the section's end, where only the
    # namespace fd is left: hand_out closes it, signals still diverted.
    return hand_out(lambda: _make(um, gm, setgroups), OwnedFd.close)


def _checked(uidmap: IDMapLike, gidmap: IDMapLike, setgroups: str) -> Tuple[IDMap, IDMap]:
    """The maps as :class:`IDMap`, each argument checked before anything is made.

    Raises:
        IDMapError, ValueError: as :func:`get_userns_fd`.
    """
    um = _as_idmap(uidmap, "uidmap")
    gm = _as_idmap(gidmap, "gidmap")
    _check_setgroups(setgroups)
    _check_size(um, "uidmap")
    _check_size(gm, "gidmap")
    return um, gm


def _make(um: IDMap, gm: IDMap, setgroups: str) -> OwnedFd:
    """get_userns_fd()'s work, inside its critical section."""
    helper = _Helper.start()
    try:
        ns = _map_process(helper.pid, helper.pidfd, um, gm, setgroups,
                          "user-namespace helper", open_ns=True)
    finally:
        helper.end()
    assert ns is not None
    return ns


def make_userns(uidmap: IDMapLike, gidmap: IDMapLike, *,
                setgroups: str = "deny") -> "NewUserns":
    """:func:`get_userns_fd`, with the helper killed but not yet reaped.

    The caller owns the result (call this inside ``critical`` when it must
    be recorded at once) and closes it, which reaps the helper, gives its
    stack back and closes the namespace fd: later, after other work, when
    the helper has died (a container's create: once its init is ready).

    Raises:
        As :func:`get_userns_fd`.
    """
    um, gm = _checked(uidmap, gidmap, setgroups)
    return hand_out(lambda: NewUserns._make(um, gm, setgroups), NewUserns.close)


class NewUserns:
    """A user namespace (:attr:`userns`) from :func:`make_userns`, and its
    killed helper, which :meth:`close` reaps.  Use it from the thread that
    made it (the helper's stack is that thread's)."""

    __slots__ = ("userns", "_helper")

    def __init__(self, helper: "_Helper") -> None:
        self.userns: Optional[OwnedFd] = None
        self._helper: Optional[_Helper] = helper

    @classmethod
    def _make(cls, um: IDMap, gm: IDMap, setgroups: str) -> "NewUserns":
        """make_userns()'s work, inside its critical section."""
        made = cls(_Helper.start())
        try:
            helper = made._helper
            assert helper is not None
            made.userns = _map_process(helper.pid, helper.pidfd, um, gm, setgroups,
                                       "user-namespace helper", open_ns=True)
            helper.kill()   # close() reaps it
        except BaseException:
            made.close()
            raise
        return made

    def close(self) -> None:
        """Close :attr:`userns`; kill (again) and reap the helper, give its
        stack back (idempotent; inside ``critical``)."""
        if self.userns is not None:
            self.userns.close()
        helper = self._helper
        if helper is not None:
            helper.end()
            self._helper = None


class _Helper:
    """csrc/native/userns.c's helper child: its pid, its pidfd and its stack.

    :meth:`end` kills it through the pidfd, reaps it through the pidfd,
    closes the pidfd and then gives the stack back; it is idempotent, and a
    step that failed is tried again by the next call.  Call both methods
    inside ``critical``.
    """

    __slots__ = ("pid", "pidfd", "_handle", "_dead")

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.pid = int(handle.pid)
        self.pidfd = int(handle.pidfd)
        self._dead = False

    @classmethod
    def start(cls) -> "_Helper":
        """clone3 the helper.

        Raises:
            PermissionError, OSError(ENOSPC, EUSERS): no new user namespace
                (the message says why).
            UnsupportedError: no clone3 with a child stack.
        """
        try:
            handle = _sys.userns_helper_start(os.getpid())
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise UnsupportedError("clone3", "a user-namespace helper needs clone3 "
                                       "with a child stack") from None
            hint = _CLONE_HINTS.get(exc.errno or 0)
            if hint is None:
                raise
            raise _sys.make_oserror(exc.errno or 0,
                                    f"clone3(CLONE_NEWUSER) [{hint}]") from None
        return cls(handle)

    def kill(self) -> None:
        """SIGKILL it now (end() reaps it)."""
        if self.pidfd >= 0 and not self._dead:
            _tries(self._kill)

    def end(self) -> None:
        """Kill, reap, close the pidfd, free the stack: each step once.

        The stack is given back only once the helper is proven dead (reaped
        by us, or ``ECHILD``: a foreign ``__WALL`` reaper got it first):
        the helper runs on it in our memory until then.

        Raises:
            OSError: a step failed :data:`_CLEANUP_TRIES` times; what is
                left (the helper, its pidfd, its stack) stays for the next
                call: a leak, never a use-after-unmap or a double close.
        """
        if self.pidfd >= 0:
            if not self._dead:
                _tries(self._kill)
                _tries(self._reap)
                self._dead = True
            fd, self.pidfd = self.pidfd, -1
            os.close(fd)
        if self._dead:
            _tries(lambda: _sys.userns_helper_free(self._handle))

    def _kill(self) -> None:
        try:
            _sys.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already reaped by someone else: _reap() sees ECHILD

    def _reap(self) -> None:
        try:
            _sys.waitid_pidfd(self.pidfd, _sys.WEXITED)
        except ChildProcessError:
            pass  # reaped by a foreign __WALL reaper: dead all the same


def _tries(step: Callable[[], None]) -> None:
    """Run a cleanup step, trying again after an unexpected OSError."""
    for attempt in range(_CLEANUP_TRIES):
        try:
            step()
            return
        except OSError:
            if attempt == _CLEANUP_TRIES - 1:
                raise
