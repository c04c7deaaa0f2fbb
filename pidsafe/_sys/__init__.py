"""The only importer of ``pidsafe._native``.

Every call into C goes through here.  This module turns a ``-1``/``errno``
return into the right ``OSError`` subclass (Python picks
``ProcessLookupError``, ``ChildProcessError``, ``PermissionError`` ... from the
errno), naming the failing step and the path, and retries ``EINTR`` in
exactly one place: :func:`_retry`.

Nothing outside this module touches ``ffi`` or ``lib``.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Callable, Optional, Sequence, Tuple, Union

from .._version import __version__

try:
    from .. import _native  # type: ignore[attr-defined]
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "pidsafe's compiled extension pidsafe._native is missing; "
        "install the package with pip (it builds the extension) "
        f"rather than importing it from a source tree: {exc}"
    ) from exc

ffi = _native.ffi
lib = _native.lib

_native_version = ffi.string(lib.pidsafe_version()).decode()
if _native_version != __version__:  # pragma: no cover - stale builds only
    raise ImportError(
        f"pidsafe._native was built for pidsafe {_native_version} but the "
        f"Python package is {__version__}; rebuild the extension "
        "(pip install --force-reinstall .)"
    )

# Kernel ABI constants (csrc/pidsafe.h checks them against system headers).
CLONE_VM: int = lib.PIDSAFE_CLONE_VM
CLONE_VFORK: int = lib.PIDSAFE_CLONE_VFORK
CLONE_PIDFD: int = lib.PIDSAFE_CLONE_PIDFD
CLONE_NEWNS: int = lib.PIDSAFE_CLONE_NEWNS
CLONE_NEWCGROUP: int = lib.PIDSAFE_CLONE_NEWCGROUP
CLONE_NEWUTS: int = lib.PIDSAFE_CLONE_NEWUTS
CLONE_NEWIPC: int = lib.PIDSAFE_CLONE_NEWIPC
CLONE_NEWUSER: int = lib.PIDSAFE_CLONE_NEWUSER
CLONE_NEWPID: int = lib.PIDSAFE_CLONE_NEWPID
CLONE_NEWNET: int = lib.PIDSAFE_CLONE_NEWNET
WEXITED: int = lib.PIDSAFE_WEXITED
WNOHANG: int = lib.PIDSAFE_WNOHANG
#: waitid(2): report the exit but leave the child waitable (reaps nothing).
WNOWAIT: int = os.WNOWAIT
WALL: int = lib.PIDSAFE_WALL
CLD_EXITED: int = lib.PIDSAFE_CLD_EXITED
CLD_KILLED: int = lib.PIDSAFE_CLD_KILLED
CLD_DUMPED: int = lib.PIDSAFE_CLD_DUMPED

OPEN_TREE_CLONE: int = lib.PIDSAFE_OPEN_TREE_CLONE
OPEN_TREE_CLOEXEC: int = lib.PIDSAFE_OPEN_TREE_CLOEXEC
AT_EMPTY_PATH: int = lib.PIDSAFE_AT_EMPTY_PATH
AT_RECURSIVE: int = lib.PIDSAFE_AT_RECURSIVE
MOVE_MOUNT_F_EMPTY_PATH: int = lib.PIDSAFE_MOVE_MOUNT_F_EMPTY_PATH
MOVE_MOUNT_T_EMPTY_PATH: int = lib.PIDSAFE_MOVE_MOUNT_T_EMPTY_PATH
MOUNT_ATTR_RDONLY: int = lib.PIDSAFE_MOUNT_ATTR_RDONLY
MOUNT_ATTR_IDMAP: int = lib.PIDSAFE_MOUNT_ATTR_IDMAP
MS_PRIVATE: int = lib.PIDSAFE_MS_PRIVATE
RESOLVE_NO_XDEV: int = lib.PIDSAFE_RESOLVE_NO_XDEV
RESOLVE_NO_MAGICLINKS: int = lib.PIDSAFE_RESOLVE_NO_MAGICLINKS
RESOLVE_NO_SYMLINKS: int = lib.PIDSAFE_RESOLVE_NO_SYMLINKS
RESOLVE_BENEATH: int = lib.PIDSAFE_RESOLVE_BENEATH
RESOLVE_IN_ROOT: int = lib.PIDSAFE_RESOLVE_IN_ROOT

# Child stages, as the spawn child reports them (csrc/spawn.c).
STAGE_NAMES = {
    lib.PIDSAFE_STAGE_SIGNALS: "reset signals",
    lib.PIDSAFE_STAGE_STDIO: "set up stdio",
    lib.PIDSAFE_STAGE_PASS_FDS: "pass fds",
    lib.PIDSAFE_STAGE_CLOSE_FDS: "close fds",
    lib.PIDSAFE_STAGE_SETSID: "setsid",
    lib.PIDSAFE_STAGE_PDEATHSIG: "set parent-death signal",
    lib.PIDSAFE_STAGE_PARENT_GONE: "check parent",
    lib.PIDSAFE_STAGE_CHDIR: "chdir",
    lib.PIDSAFE_STAGE_EXEC: "exec",
}
STAGE_CHDIR: int = lib.PIDSAFE_STAGE_CHDIR
STAGE_EXEC: int = lib.PIDSAFE_STAGE_EXEC
CHILD_ERROR_SIZE: int = ffi.sizeof("struct pidsafe_child_error")

StrPath = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]


def make_oserror(err: int, step: str, filename: Optional[Any] = None,
                 filename2: Optional[Any] = None) -> OSError:
    """An ``OSError`` of the errno's own subclass, saying which step failed.

    ``str()`` reads like ``[Errno 3] pidfd_send_signal: No such process``.
    """
    msg = f"{step}: {os.strerror(err)}"
    if filename2 is not None:
        return OSError(err, msg, filename, None, filename2)
    if filename is not None:
        return OSError(err, msg, filename)
    return OSError(err, msg)


def _retry(step: str, fn: Callable[..., int], *args: Any,
           filename: Optional[Any] = None) -> int:
    """Call ``fn(*args)``; retry on EINTR; raise on ``-1``.

    The one EINTR loop of pidsafe (PEP 475 semantics: a Python signal handler
    that raises stops the retry, since handlers run between iterations).
    Untimed calls only: timed waits recompute their deadline themselves.
    """
    while True:
        ret = fn(*args)
        if ret != -1:
            return ret
        err = ffi.errno
        if err != errno.EINTR:
            raise make_oserror(err, step, filename)


def pidfd_open(pid: int, flags: int = 0) -> int:
    """pidfd_open(2) (Linux 5.3): a close-on-exec pidfd for ``pid``.

    Raises:
        ProcessLookupError: no process has that pid.
    """
    return _retry("pidfd_open", lib.pidsafe_pidfd_open, pid, flags)


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    """pidfd_send_signal(2) (Linux 5.1).

    A zombie still accepts any signal (and ignores it); once the process
    has been reaped the pidfd refers to no process and the call fails, even
    if the pid number has been reused.

    Raises:
        ProcessLookupError: the process has been reaped.
    """
    _retry("pidfd_send_signal", lib.pidsafe_pidfd_send_signal, pidfd, sig, 0)


def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """pidfd_getfd(2) (Linux 5.6): duplicate another process's fd, cloexec."""
    return _retry("pidfd_getfd", lib.pidsafe_pidfd_getfd, pidfd, targetfd, 0)


def waitid_pidfd(pidfd: int, options: int) -> Optional[Tuple[int, int, int]]:
    """waitid(P_PIDFD) (Linux 5.4), always with ``__WALL``.

    Returns ``(pid, si_code, si_status)``, or ``None`` if ``WNOHANG`` found
    no change.

    Raises:
        ChildProcessError: not our child, or already reaped by someone else.
    """
    info = ffi.new("struct pidsafe_waitinfo *")
    _retry("waitid(P_PIDFD)", lib.pidsafe_waitid_pidfd, pidfd, options | WALL, info)
    if info.pid == 0:
        return None
    return int(info.pid), int(info.code), int(info.status)


def pidfd_exit_info(pidfd: int) -> Optional[int]:
    """ioctl(PIDFD_GET_INFO, PIDFD_INFO_EXIT) (Linux 6.15).

    Returns the raw wait status the kernel kept when the process was reaped
    (by anyone), or ``None`` if it has no exit information yet.
    """
    out = ffi.new("int32_t *")
    ret = _retry("ioctl(PIDFD_GET_INFO)", lib.pidsafe_pidfd_exit_info, pidfd, out)
    return int(out[0]) if ret == 1 else None


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2) (Linux 5.9)."""
    _retry("close_range", lib.pidsafe_close_range, first, last, flags)


def probe_child() -> Tuple[int, int]:
    """Create a child that exits at once; returns ``(pid, pidfd)``."""
    pidfd = ffi.new("int *", -1)
    pid = _retry("clone3(CLONE_PIDFD)", lib.pidsafe_probe_child, pidfd)
    return pid, int(pidfd[0])


def has_clone3_trampoline() -> bool:
    """Whether this build knows how to clone3() onto a new stack here."""
    return bool(lib.pidsafe_has_clone3_trampoline())


def _cstrings(items: Sequence[bytes], keep: list[Any]) -> Any:
    # cffi frees an ffi.new() object when its Python owner dies, and a raw
    # pointer stored in a struct does not own it: keep every owner alive.
    arr = [ffi.new("char[]", b) for b in items]
    ptrs = ffi.new("char *[]", arr + [ffi.NULL])
    keep.append(arr)
    keep.append(ptrs)
    return ptrs


def spawn(exec_paths: Sequence[bytes], argv: Sequence[bytes],
          envp: Optional[Sequence[bytes]], cwd: Optional[bytes],
          stdio: Tuple[int, int, int], keep_fds: Sequence[int], close_fds: bool,
          new_session: bool, pdeathsig: int, restore_signals: bool,
          errpipe_write: int, clone_flags: int = 0,
          cgroup_fd: int = -1, *, userns_fd: int = -1, become_root: bool = False,
          unshare_flags: int = 0, parent_pid: Optional[int] = None,
          before_exec: Optional[Callable[[int, int], None]] = None) -> Tuple[int, int]:
    """Run csrc/spawn.c's pidsafe_spawn; returns ``(pid, pidfd)``.

    Only fails when no child was created (clone3 itself failed); failures in
    the child arrive on ``errpipe_write``'s read end.  With ``before_exec``
    the child is made without CLONE_VFORK and waits until
    ``before_exec(pid, pidfd)`` has returned (see :func:`_spawn_two_phase`).
    """
    keep: list[Any] = []
    spec = ffi.new("struct pidsafe_spawn_spec *")
    spec.exec_paths = _cstrings(exec_paths, keep)
    spec.argv = _cstrings(argv, keep)
    spec.envp = _cstrings(envp, keep) if envp is not None else ffi.NULL
    cwd_c = ffi.new("char[]", cwd) if cwd is not None else ffi.NULL
    spec.cwd = cwd_c
    spec.stdio = stdio
    keep_c = ffi.new("int[]", list(keep_fds) or [0])
    spec.keep_fds = keep_c
    spec.n_keep_fds = len(keep_fds)
    spec.close_fds = close_fds
    spec.new_session = new_session
    spec.pdeathsig = pdeathsig
    spec.parent_pid = os.getpid() if parent_pid is None else parent_pid
    spec.restore_signals = restore_signals
    spec.errpipe_write = errpipe_write
    spec.clone_flags = clone_flags
    spec.cgroup_fd = cgroup_fd
    spec.join_userns = userns_fd >= 0
    spec.userns_fd = userns_fd
    spec.become_root = become_root
    spec.unshare_flags = unshare_flags
    if before_exec is not None:
        return _spawn_two_phase(spec, before_exec)  # keep, cwd_c, keep_c live here
    pidfd = ffi.new("int *", -1)
    pid = _retry("clone3", lib.pidsafe_spawn, spec, pidfd)
    return pid, int(pidfd[0])


# --- the new mount API, openat2 -------------------------------------------

def open_tree(dfd: int, path: StrPath, flags: int) -> int:
    """open_tree(2) (Linux 5.2)."""
    return _retry("open_tree", lib.pidsafe_open_tree, dfd, os.fsencode(path), flags,
                  filename=path)


def move_mount(from_dfd: int, from_path: StrPath, to_dfd: int, to_path: StrPath,
               flags: int, *, filename: Optional[Any] = None) -> None:
    """move_mount(2) (Linux 5.2)."""
    _retry("move_mount", lib.pidsafe_move_mount, from_dfd, os.fsencode(from_path),
           to_dfd, os.fsencode(to_path), flags, filename=filename)


def mount_setattr(dfd: int, path: StrPath, flags: int, *, attr_set: int = 0,
                  attr_clr: int = 0, propagation: int = 0, userns_fd: int = 0,
                  filename: Optional[Any] = None) -> None:
    """mount_setattr(2) (Linux 5.12)."""
    attr = ffi.new("struct pidsafe_mount_attr *")
    attr.attr_set = attr_set
    attr.attr_clr = attr_clr
    attr.propagation = propagation
    attr.userns_fd = userns_fd
    _retry("mount_setattr", lib.pidsafe_mount_setattr, dfd, os.fsencode(path), flags,
           attr, ffi.sizeof(attr[0]), filename=filename)


def openat2(dfd: int, path: StrPath, flags: int, *, mode: int = 0, resolve: int = 0,
            filename: Optional[Any] = None) -> int:
    """openat2(2) (Linux 5.6); ``flags`` should include ``O_CLOEXEC``."""
    how = ffi.new("struct pidsafe_open_how *")
    how.flags = flags
    how.mode = mode
    how.resolve = resolve
    return _retry("openat2", lib.pidsafe_openat2, dfd, os.fsencode(path), how,
                  ffi.sizeof(how[0]), filename=path if filename is None else filename)


def errno_of(call: Callable[[], Any]) -> int:
    """Run ``call``; return 0, or the errno of the OSError it raised.

    For feature probes, which want the errno itself rather than an exception.
    """
    try:
        call()
    except OSError as exc:
        return exc.errno or 0
    return 0


# --- mounts: fsopen/fsconfig/fsmount, umount2 (csrc/mount.c; issue 3) -------

MOUNT_ATTR_NOSUID: int = lib.PIDSAFE_MOUNT_ATTR_NOSUID
MOUNT_ATTR_NODEV: int = lib.PIDSAFE_MOUNT_ATTR_NODEV
MOUNT_ATTR_NOEXEC: int = lib.PIDSAFE_MOUNT_ATTR_NOEXEC
MOUNT_ATTR__ATIME: int = lib.PIDSAFE_MOUNT_ATTR__ATIME
MOUNT_ATTR_RELATIME: int = lib.PIDSAFE_MOUNT_ATTR_RELATIME
MOUNT_ATTR_NOATIME: int = lib.PIDSAFE_MOUNT_ATTR_NOATIME
MOUNT_ATTR_STRICTATIME: int = lib.PIDSAFE_MOUNT_ATTR_STRICTATIME
MOUNT_ATTR_NODIRATIME: int = lib.PIDSAFE_MOUNT_ATTR_NODIRATIME
MOUNT_ATTR_NOSYMFOLLOW: int = lib.PIDSAFE_MOUNT_ATTR_NOSYMFOLLOW
MS_UNBINDABLE: int = lib.PIDSAFE_MS_UNBINDABLE
MS_SLAVE: int = lib.PIDSAFE_MS_SLAVE
MS_SHARED: int = lib.PIDSAFE_MS_SHARED
FSOPEN_CLOEXEC: int = lib.PIDSAFE_FSOPEN_CLOEXEC
FSMOUNT_CLOEXEC: int = lib.PIDSAFE_FSMOUNT_CLOEXEC
FSCONFIG_SET_FLAG: int = lib.PIDSAFE_FSCONFIG_SET_FLAG
FSCONFIG_SET_STRING: int = lib.PIDSAFE_FSCONFIG_SET_STRING
FSCONFIG_CMD_CREATE: int = lib.PIDSAFE_FSCONFIG_CMD_CREATE
UMOUNT_NOFOLLOW: int = lib.PIDSAFE_UMOUNT_NOFOLLOW
BIND_STAGE_OPEN_TREE: int = lib.PIDSAFE_BIND_STAGE_OPEN_TREE
BIND_STAGE_MOUNT_SETATTR: int = lib.PIDSAFE_BIND_STAGE_MOUNT_SETATTR
BIND_STAGE_MOVE_MOUNT: int = lib.PIDSAFE_BIND_STAGE_MOVE_MOUNT
AT_FDCWD = -100


def fsopen(fsname: str, flags: int) -> int:
    """fsopen(2) (Linux 5.2): a filesystem context fd for ``fsname``."""
    return _retry("fsopen", lib.pidsafe_fsopen, fsname.encode(), flags, filename=fsname)


def fsconfig(fd: int, cmd: int, key: Optional[str] = None,
             value: Optional[StrPath] = None, aux: int = 0, *,
             step: str = "fsconfig", filename: Optional[Any] = None) -> None:
    """fsconfig(2) (Linux 5.2): set a parameter or run a command."""
    key_c = ffi.new("char[]", key.encode()) if key is not None else ffi.NULL
    value_c = ffi.new("char[]", os.fsencode(value)) if value is not None else ffi.NULL
    _retry(step, lib.pidsafe_fsconfig, fd, cmd, key_c, value_c, aux, filename=filename)


def fsmount(fd: int, flags: int, attr_flags: int) -> int:
    """fsmount(2) (Linux 5.2): a detached mount of a created context."""
    return _retry("fsmount", lib.pidsafe_fsmount, fd, flags, attr_flags)


def umount2(target: StrPath, flags: int, *, step: str = "umount2",
            filename: Optional[Any] = None) -> None:
    """umount2(2).

    Raises:
        OSError: ``EBUSY`` while the mount is in use, ``EINVAL`` when
            ``target`` is not a mount point.
    """
    _retry(step, lib.pidsafe_umount2, os.fsencode(target), flags,
           filename=target if filename is None else filename)


def idmapped_bind(source: StrPath, target: StrPath, clone_flags: int, setattr_flags: int,
                  attr_set: int, propagation: int, userns_fd: int,
                  move_flags: int) -> Tuple[int, int]:
    """open_tree -> mount_setattr -> move_mount in one C call (csrc/mount.c).

    Returns ``(0, 0)``, or ``(stage, errno)`` for the step that failed
    (``BIND_STAGE_*``); the tree fd is closed either way.
    """
    stage = 0

    def call(*args: Any) -> int:
        nonlocal stage
        stage = lib.pidsafe_idmapped_bind(*args)
        return -1 if stage else 0

    try:
        _retry("idmapped bind", call, AT_FDCWD, os.fsencode(source), clone_flags,
               setattr_flags, attr_set, propagation, userns_fd, AT_FDCWD,
               os.fsencode(target), move_flags)
    except OSError as exc:
        return stage, exc.errno or errno.EIO
    return 0, 0


# --- user namespaces (csrc/userns.c; issue 3) -------------------------------

def userns_helper_start(parent_pid: int, extra_flags: int = 0) -> Any:
    """Start csrc/userns.c's helper: a child in a new user namespace.

    clone3(CLONE_NEWUSER|CLONE_VM|CLONE_PIDFD) (Linux 5.3).  Returns the
    ``struct pidsafe_userns_helper`` (``.pid``, ``.pidfd``); hand it to
    :func:`userns_helper_free` once the helper is dead and reaped.

    Raises:
        PermissionError, OSError(ENOSPC, EUSERS): no new user namespace.
    """
    h = ffi.new("struct pidsafe_userns_helper *")
    _retry("clone3(CLONE_NEWUSER)", lib.pidsafe_userns_helper_start, h, parent_pid,
           extra_flags)
    return h


def userns_helper_free(h: Any) -> None:
    """Unmap a dead, reaped helper's stack (idempotent)."""
    _retry("munmap(helper stack)", lib.pidsafe_userns_helper_free, h)


STAGE_NAMES.update({
    lib.PIDSAFE_STAGE_USERNS: "join user namespace",
    lib.PIDSAFE_STAGE_UNSHARE: "unshare namespaces",
    lib.PIDSAFE_STAGE_SETID: "become root of the user namespace",
})


def end_child(pidfd: int, free: Optional[Callable[[], None]] = None) -> None:
    """Kill a child through its pidfd, reap it, close the pidfd, then ``free()``.

    For children that share our memory: ``free`` (unmapping the child's
    stack) runs only once the child is proven dead: reaped by us, or
    ``ECHILD`` (a foreign reaper using ``__WALL`` already reaped it).  An
    exception a signal handler raises during the wait (KeyboardInterrupt) is
    held until the child is reaped, then re-raised.

    Raises:
        OSError: waitid failed otherwise; ``free`` is then not called (a
            leak, never a use-after-unmap).
    """
    pending: Optional[BaseException] = None
    dead = False
    try:
        try:
            pidfd_send_signal(pidfd, 9)  # SIGKILL
        except ProcessLookupError:
            pass  # already reaped: waitid below says ECHILD
        while True:
            try:
                waitid_pidfd(pidfd, WEXITED)
            except ChildProcessError:
                pass  # reaped by someone using __WALL: dead all the same
            except OSError:
                raise
            except BaseException as exc:  # a signal handler raised mid-wait
                if pending is None:
                    pending = exc
                continue
            dead = True
            break
    finally:
        os.close(pidfd)
        if dead and free is not None:
            free()
    if pending is not None:
        raise pending


def _spawn_two_phase(spec: Any, before_exec: Callable[[int, int], None]) -> Tuple[int, int]:
    """csrc/spawn.c's two-phase spawn: start, ``before_exec(pid, pidfd)``, resume.

    The child (CLONE_VM, no CLONE_VFORK) waits while ``before_exec`` runs
    (e.g. writes its uid/gid maps); resuming returns once it has exec'd or
    exited, like a CLONE_VFORK clone3.  If ``before_exec`` raises, the child
    is killed and reaped and its stack unmapped, then the error propagates.
    The caller keeps ``spec`` and what it points to alive until we return.
    """
    h = ffi.new("struct pidsafe_spawn_handle *")
    _retry("clone3", lib.pidsafe_spawn_start, spec, h)
    pid, pidfd = int(h.pid), int(h.pidfd)
    try:
        before_exec(pid, pidfd)
    except BaseException:
        end_child(pidfd, lambda: lib.pidsafe_spawn_free(h))
        raise
    if lib.pidsafe_spawn_resume(h) < 0:  # pragma: no cover - munmap cannot fail here
        raise make_oserror(ffi.errno, "munmap(child stack)")
    return pid, pidfd

