"""Runtime probes: what the running kernel supports.

Each probe calls the real syscall once (containerd's ``SupportsPidFD`` does
the same) and reads the answer from errno: ``ENOSYS`` means the syscall does
not exist, ``EINVAL`` usually that a flag is unknown.  Kernel version strings
are never compared: backports and seccomp filters make them lie.
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass, field, fields
from typing import Dict, List, Optional, Tuple

from . import _sys
from ._feature_names import FEATURES as FEATURES  # re-exported: the CLI lists them
from ._feature_names import describe as describe
from .errors import UnsupportedError

#: What spawn() and Process cannot work without.
REQUIRED = ("clone3", "clone_pidfd", "waitid_pidfd", "pidfd_open", "pidfd_send_signal")


@dataclass(frozen=True)
class Features:
    """What the running kernel supports; see :func:`features`."""

    clone3: bool
    clone_pidfd: bool
    waitid_pidfd: bool
    pidfd_open: bool
    pidfd_send_signal: bool
    pidfd_getfd: bool
    close_range: bool
    mount_api: bool
    mount_setattr_idmap: bool
    openat2: bool
    pidfd_info_exit: bool
    #: feature -> why it is missing (the errno name, or a sentence)
    reasons: Dict[str, str] = field(default_factory=dict, compare=False)

    def names(self) -> List[str]:
        """Every feature name, in a stable order."""
        return [f.name for f in fields(self) if f.name != "reasons"]

    def missing(self) -> List[str]:
        """The names of the features this kernel lacks."""
        return [n for n in self.names() if not getattr(self, n)]

    def require(self, *names: str) -> None:
        """Raise :class:`UnsupportedError` for the first missing feature."""
        for n in names:
            if not getattr(self, n):
                raise UnsupportedError(n, self.reasons.get(n, ""))


def _errname(err: int) -> str:
    return errno.errorcode.get(err, str(err))


def _probe() -> Features:
    ok: Dict[str, bool] = {}
    why: Dict[str, str] = {}

    def mark(name: str, err: int, supported_errnos: Tuple[int, ...] = (0,)) -> None:
        ok[name] = err in supported_errnos
        if not ok[name]:
            why[name] = _errname(err)

    # clone3 + CLONE_PIDFD + waitid(P_PIDFD) + PIDFD_INFO_EXIT: one real child.
    pid, pidfd, err = -1, -1, 0
    if not _sys.has_clone3_trampoline():
        err = errno.ENOSYS
        why_clone = "pidsafe has no clone3 trampoline for this CPU architecture"
    else:
        why_clone = ""
        try:
            pid, pidfd = _sys.probe_child()
        except OSError as exc:
            err = exc.errno or errno.EINVAL
    ok["clone3"] = err != errno.ENOSYS
    ok["clone_pidfd"] = err == 0 and pidfd >= 0
    if not ok["clone3"]:
        why["clone3"] = why_clone or _errname(err)
    if not ok["clone_pidfd"]:
        why["clone_pidfd"] = why_clone or _errname(err)
    ok["waitid_pidfd"] = False
    ok["pidfd_info_exit"] = False
    if pid > 0:
        try:
            try:
                _sys.waitid_pidfd(pidfd, _sys.WEXITED)
                ok["waitid_pidfd"] = True
            except OSError as exc:
                why["waitid_pidfd"] = _errname(exc.errno or 0)
                # Only on kernels without P_PIDFD: reap our own probe child by
                # pid.  Its exit_signal is 0, so no other reaper can have
                # taken it and the pid cannot have been reused yet.
                os.waitid(os.P_PID, pid, os.WEXITED | _sys.WALL)
            try:
                ok["pidfd_info_exit"] = _sys.pidfd_exit_info(pidfd) is not None
                if not ok["pidfd_info_exit"]:
                    why["pidfd_info_exit"] = "no exit information after reaping"
            except OSError as exc:
                why["pidfd_info_exit"] = _errname(exc.errno or 0)
        finally:
            os.close(pidfd)
    else:
        why.setdefault("waitid_pidfd", "no probe child")
        why.setdefault("pidfd_info_exit", "no probe child")

    # pidfd_open + pidfd_send_signal(0) on ourselves.
    try:
        self_fd = _sys.pidfd_open(os.getpid())
    except OSError as exc:
        mark("pidfd_open", exc.errno or 0)
        mark("pidfd_send_signal", errno.ENOSYS)
        why["pidfd_send_signal"] = "needs pidfd_open"
    else:
        ok["pidfd_open"] = True
        try:
            mark("pidfd_send_signal", _sys.errno_of(lambda: _sys.pidfd_send_signal(self_fd, 0)))
        finally:
            os.close(self_fd)

    # Calls that fail with EBADF exist; ENOSYS means they do not.
    mark("pidfd_getfd", _sys.errno_of(lambda: _sys.pidfd_getfd(-1, 0)), (errno.EBADF,))
    # first == last == UINT_MAX closes nothing that can exist.
    mark("close_range", _sys.errno_of(lambda: _sys.close_range(0xFFFFFFFF, 0xFFFFFFFF)))

    def open_tree_root() -> None:
        os.close(_sys.open_tree(-100, "/", _sys.OPEN_TREE_CLOEXEC))  # AT_FDCWD

    err_tree = _sys.errno_of(open_tree_root)
    err_move = _sys.errno_of(lambda: _sys.move_mount(
        -1, "", -1, "", _sys.MOVE_MOUNT_F_EMPTY_PATH | _sys.MOVE_MOUNT_T_EMPTY_PATH))
    mark("mount_api", err_tree if err_tree else (0 if err_move != errno.ENOSYS else err_move))
    # An unknown attr flag fails with EINVAL before the userns fd is looked
    # up; a known MOUNT_ATTR_IDMAP gets as far as the (unopened) fd: EBADF.
    # Without CAP_SYS_ADMIN the syscall stops first, at its privilege check
    # (EPERM); MOUNT_ATTR_IDMAP came with mount_setattr itself (5.12), so a
    # mount_setattr that exists knows it.  Privilege is doctor's other table.
    mark("mount_setattr_idmap", _sys.errno_of(lambda: _sys.mount_setattr(
        -1, "", _sys.AT_EMPTY_PATH, attr_set=_sys.MOUNT_ATTR_IDMAP, userns_fd=0x7FFFFFF0)),
        (errno.EBADF, errno.EPERM))

    def openat2_root() -> None:
        os.close(_sys.openat2(-100, "/", os.O_PATH | os.O_CLOEXEC,
                              resolve=_sys.RESOLVE_IN_ROOT | _sys.RESOLVE_NO_MAGICLINKS))

    mark("openat2", _sys.errno_of(openat2_root))

    return Features(reasons=why, **ok)


_lock = threading.Lock()
_cached: Optional[Features] = None


def features() -> Features:
    """Probe the kernel once (per process) and report what it supports.

    Returns:
        A frozen :class:`Features`; ``features().missing()`` lists what is
        absent and ``features().reasons`` says why.
    """
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = _probe()
    return _cached


def _reset_after_fork() -> None:
    # The kernel is the same in a forked child, but the lock may be held.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
