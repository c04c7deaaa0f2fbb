"""spawn's kernel side: the typed child spec and csrc/native/spawn.c's clone3.

:class:`ChildSpec` mirrors ``struct pidsafe_spawn_spec`` (csrc/native/pidsafe.h)
field by field; :func:`spawn` turns one into the C struct and clones.  A
spec with a :class:`HelperSpec` makes the child exec the static helper
``pidsafe-helper`` (csrc/helper/, found by :mod:`._libexec`), which changes
credentials in memory of its own; :func:`helper_go` builds the helper's
instructions (``struct pidsafe_helper_go``, csrc/shared/helper_protocol.h) that the caller
sends it over the ctl socket.
"""

from __future__ import annotations

import errno
import os
import sys

from .._lite import partial
from .._value import Record
from ._core import CLONE_NEWPID, _retry, ffi, lib, make_oserror
from ._libexec import installed_path, program

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, List, Optional, Sequence, Tuple

# Child stages, as the spawn child and the helper report them.
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
    lib.PIDSAFE_STAGE_USERNS: "join user namespace",
    lib.PIDSAFE_STAGE_UNSHARE: "unshare namespaces",
    lib.PIDSAFE_STAGE_SETID: "become root of the user namespace",
    lib.PIDSAFE_STAGE_HELPER: f"exec the credentials helper {installed_path('pidsafe-helper')}",
    lib.PIDSAFE_STAGE_HELPER_GO: "read the helper's instructions",
    lib.PIDSAFE_STAGE_CGROUP: "join its cgroup",
}
STAGE_CHDIR: int = lib.PIDSAFE_STAGE_CHDIR
STAGE_EXEC: int = lib.PIDSAFE_STAGE_EXEC
STAGE_CGROUP: int = lib.PIDSAFE_STAGE_CGROUP
STAGE_LAST: int = lib.PIDSAFE_STAGE_LAST
FAULT_SIGMASK: int = lib.PIDSAFE_FAULT_SIGMASK
FAULT_NO_CLEAR_SIGHAND: int = lib.PIDSAFE_FAULT_NO_CLEAR_SIGHAND
CHILD_ERROR_SIZE: int = ffi.sizeof("struct pidsafe_child_error")
HELPER_READY: bytes = bytes([lib.PIDSAFE_HELPER_READY])


def decode_child_error(record: bytes) -> Tuple[int, int]:
    """``(stage, errno)`` from the record a failed spawn child wrote to its
    error pipe (``struct pidsafe_child_error``)."""
    if len(record) != CHILD_ERROR_SIZE:
        return 0, errno.EIO  # pragma: no cover - a torn record cannot happen
    stage = int.from_bytes(record[:4], sys.byteorder, signed=True)
    err = int.from_bytes(record[4:8], sys.byteorder, signed=True)
    return stage, err


def read_child_error(fd: int) -> Optional[Tuple[int, int]]:
    """``(stage, errno)`` of a child that failed before exec, or ``None``.

    ``fd``: the read end (non-blocking) of the child's error pipe, read once
    :func:`spawn` has returned.  CLONE_VFORK: clone3() returned because the
    child either exited (after writing its record, if it failed) or reached
    exec's point of no return, so the record, if there is one, is already in
    the pipe: never wait for EOF.  The child's copy of the write end may
    still be open for a moment (exec releases our memory before it closes
    close-on-exec fds), and a blocking read would sleep until it is.  No
    data (EAGAIN) or EOF both mean exec ran.
    """
    try:
        record = os.read(fd, CHILD_ERROR_SIZE)
    except BlockingIOError:
        return None
    return decode_child_error(record) if record else None


def child_error(stage: int, err: int, filename: Optional[Any] = None,
                who: str = "") -> OSError:
    """The ``OSError`` for a child's failure record: the errno's subclass,
    naming the stage (``who``, e.g. ``"container init"``, before it)."""
    step = STAGE_NAMES.get(stage, f"stage {stage}")
    return make_oserror(err, f"{who}: {step}" if who else step, filename)

#: TEST-ONLY.  ``(stage, errno)``: every child spawned while it is set fails
#: at that stage (``STAGE_*``, in the spawn child or the helper) with that
#: errno, or, for ``FAULT_SIGMASK``, the parent's pthread_sigmask fails;
#: ``FAULT_NO_CLEAR_SIGHAND`` spawns as a kernel without CLONE_CLEAR_SIGHAND
#: makes us (the child resets its signal handlers itself).
#: Never set it in production code.
_test_fail: Optional[Tuple[int, int]] = None


class HelperSpec(Record):
    """What the exec'd helper does before it execs the program.

    Attributes:
        ctl_fd: the helper's end of the ctl socket (csrc/shared/helper_protocol.h), kept
            open in the child; set by whoever runs the protocol.
        userns_fd: a user namespace to join first (-1: none).
        unshare_flags: ``CLONE_NEW*`` to unshare() after joining.
        become_root: become uid/gid 0 of the user namespace, if mapped.
        new_userns: the child is made with ``CLONE_NEWUSER``: carry its
            capabilities across the exec into the helper (which needs them
            to become root there) and drop the carried sets after.
    """

    ctl_fd: int = -1
    userns_fd: int = -1
    unshare_flags: int = 0
    become_root: bool = True
    new_userns: bool = False


class ChildSpec(Record):
    """Everything a spawned child needs; mirrors ``struct pidsafe_spawn_spec``.

    Attributes:
        exec_paths: candidates for the program, tried in order.
        exec_fd: exec this fd instead of ``exec_paths``
            (``execveat(fd, "", AT_EMPTY_PATH)``): a sealed copy of one of
            pidsafe's programs (:meth:`Program.exec_fd`); it must be in
            ``keep_fds`` and stays close-on-exec there.  -1: none.  (With a
            ``helper``, the helper's own sealed copy is exec'd.)
        argv: the program's argument vector.
        envp: its environment (``None``: inherit the C environment).
        cwd: directory to change to (``None``: inherit).
        stdio: fds to become 0, 1, 2 (-1 keeps ours).
        keep_fds: fds >= 3 that survive exec (sorted); include the error
            pipe and, with a helper, its ctl fd and userns fd.
        close_fds: close every other fd >= 3.
        new_session: setsid().
        pdeathsig: signal on the parent thread's death (0: none).
        restore_signals: SIGPIPE and SIGXFSZ back to SIG_DFL.
        errpipe_write: the close-on-exec error pipe's write end, >= 3.
        clone_flags: extra ``CLONE_NEW*`` for clone3.
        cgroup_fd: a cgroup2 directory for CLONE_INTO_CGROUP (-1: none).
        tasks_fds: cgroup v1 ``tasks`` files, open for writing, that the
            child joins first thing (it writes ``0``: itself).  A single
            thread moving itself spares the kernel's global threadgroup
            lock, whose write side (any pid written to ``cgroup.procs``)
            waits for an RCU grace period.
        helper: exec the helper, which changes credentials (see
            :class:`HelperSpec`), instead of the program.
    """

    exec_paths: Tuple[bytes, ...]
    argv: Tuple[bytes, ...]
    errpipe_write: int
    exec_fd: int = -1
    envp: Optional[Tuple[bytes, ...]] = None
    cwd: Optional[bytes] = None
    stdio: Tuple[int, int, int] = (-1, -1, -1)
    keep_fds: Tuple[int, ...] = ()
    close_fds: bool = True
    new_session: bool = False
    pdeathsig: int = 0
    restore_signals: bool = True
    clone_flags: int = 0
    cgroup_fd: int = -1
    tasks_fds: Tuple[int, ...] = ()
    helper: Optional[HelperSpec] = None


# cffi types resolved once: a type given as a string is parsed (then
# looked up in a cache) on every ffi.new(), on spawn's hot path.
_SPEC_P = ffi.typeof("struct pidsafe_spawn_spec *")
_CHAR_A = ffi.typeof("char[]")
_CHAR_PA = ffi.typeof("char *[]")
_INT_A = ffi.typeof("int[]")
_INT_P = ffi.typeof("int *")
_ERROR_P = ffi.typeof("struct pidsafe_child_error *")


#: A spec with ChildSpec's defaults, copied into each new one (a struct
#: copy is a quarter of the cost of cffi initialising it from a dict).
_DEFAULT_SPEC = ffi.new(_SPEC_P, {"exec_fd": -1, "stdio": (-1, -1, -1), "close_fds": 1,
                                  "restore_signals": 1, "errpipe_write": -1, "cgroup_fd": -1})[0]
_NULL = ffi.NULL


#: ``ffi.new("char[]", b)``, mapped over a list in C (no comprehension frame).
_new_chars = partial(ffi.new, _CHAR_A)


def _cstrings(items: Sequence[bytes], keep: List[Any]) -> Any:
    # cffi frees an ffi.new() object when its Python owner dies, and a raw
    # pointer stored in a struct does not own it: keep every owner alive.
    arr = [*map(_new_chars, items), _NULL]
    ptrs = ffi.new(_CHAR_PA, arr)
    keep += (arr, ptrs)
    return ptrs


def _helper_argv(spec: ChildSpec, helper: HelperSpec) -> List[bytes]:
    # csrc/shared/helper_protocol.h: [name, ctl fd, cwd, exec_paths..., program argv...]
    return [b"pidsafe-helper", b"%d" % helper.ctl_fd, spec.cwd or b"",
            *spec.exec_paths, *spec.argv]


def spawn(spec: ChildSpec, failed: Optional[List[Tuple[int, int]]] = None) -> Tuple[int, int]:
    """Run csrc/native/spawn.c's pidsafe_spawn for ``spec``; returns ``(pid, pidfd)``.

    clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK|spec.clone_flags) (Linux 5.3).
    When it returns, the child has exec'd (the program, or the helper) or
    exited after reporting its ``{stage, errno}`` record: stored in our
    memory, which it shares, and appended here to ``failed``; and written
    to the error pipe, if ``spec`` has one.

    Args:
        spec: what the child does.
        failed: where the record of a child that failed before exec goes
            (as ``(stage, errno)``).  Required without an error pipe
            (``errpipe_write`` -1), which is the cheaper way when there is
            no helper: no pipe to make, read and close.

    Raises:
        OSError: clone3 itself failed (no child was created): EAGAIN,
            ENOMEM, ENOSPC, EPERM, ENOSYS (no clone3 or no trampoline here),
            or EINVAL.  Failures in the child arrive on the error pipe.
        FileNotFoundError: the spec needs pidsafe-helper and this install
            has none.
        ValueError: no error pipe and no ``failed``, or no error pipe where
            one is needed (a helper; ``pdeathsig`` in a new pid namespace).
    """
    helper = spec.helper
    if spec.errpipe_write < 0 and (failed is None or helper is not None or (
            spec.pdeathsig and spec.clone_flags & CLONE_NEWPID)):
        raise ValueError("spawn: this child spec needs an error pipe (errpipe_write)")
    keep: List[Any] = []
    exec_fd, keep_fds = spec.exec_fd, spec.keep_fds
    if helper is not None:
        if exec_fd >= 0:
            raise ValueError("a spec with a helper execs the helper: no exec_fd")
        # The helper too runs from its sealed copy (_libexec), never the file.
        exec_fd = program("pidsafe-helper").exec_fd()
        keep_fds = tuple(sorted({*keep_fds, exec_fd}))
    # Only the fields that differ from _DEFAULT_SPEC (ChildSpec's defaults,
    # zero elsewhere).  Empty fd lists stay NULL (the child reads none of a
    # list of 0).
    c = ffi.new(_SPEC_P, _DEFAULT_SPEC)
    argv = spec.argv
    c.argv = argv_c = _cstrings(argv, keep)
    if spec.exec_paths == argv[:1]:
        # The program is argv[0] (it has a slash): its string serves twice.
        exec_c = ffi.new(_CHAR_PA, (argv_c[0], _NULL))
        keep.append(exec_c)
        c.exec_paths = exec_c
    else:
        c.exec_paths = _cstrings(spec.exec_paths, keep)
    if exec_fd != -1:
        c.exec_fd = exec_fd
    if spec.stdio != (-1, -1, -1):
        c.stdio = spec.stdio
    if not spec.close_fds:
        c.close_fds = 0
    if not spec.restore_signals:
        c.restore_signals = 0
    if spec.errpipe_write != -1:
        c.errpipe_write = spec.errpipe_write
    if spec.cgroup_fd != -1:
        c.cgroup_fd = spec.cgroup_fd
    if spec.envp is not None:
        c.envp = _cstrings(spec.envp, keep)
    if keep_fds:
        keep_c = ffi.new(_INT_A, keep_fds)
        keep.append(keep_c)
        c.keep_fds = keep_c
        c.n_keep_fds = len(keep_fds)
    if spec.tasks_fds:
        tasks_c = ffi.new(_INT_A, spec.tasks_fds)
        keep.append(tasks_c)
        c.tasks_fds = tasks_c
        c.n_tasks_fds = len(spec.tasks_fds)
    if spec.new_session:
        c.new_session = 1
    if spec.pdeathsig:
        c.pdeathsig = spec.pdeathsig
        # Only for pdeathsig (see parent_gone() in csrc/native/child.c); pid 1
        # of a new pid namespace sees no parent: getppid() is 0.
        if not spec.clone_flags & CLONE_NEWPID:
            c.parent_pid = os.getpid()
    if spec.clone_flags:
        c.clone_flags = spec.clone_flags
    if helper is None:
        if spec.cwd is not None:
            cwd_c = ffi.new(_CHAR_A, spec.cwd)
            keep.append(cwd_c)
            c.cwd = cwd_c
    else:
        # The helper changes directory, as the new user; pdeathsig too.
        helper_c = ffi.new(_CHAR_A, program("pidsafe-helper").exec_path)
        keep.append(helper_c)
        c.helper_path = helper_c
        c.helper_argv = _cstrings(_helper_argv(spec, helper), keep)
        c.keep_caps = helper.new_userns
    fail = _test_fail
    if fail is not None:
        c.fail_stage, c.fail_errno = fail
    pidfd = ffi.new(_INT_P, -1)
    failure = ffi.new(_ERROR_P)
    pid = _retry("clone3", lib.pidsafe_spawn, c, pidfd, failure)
    if failure.stage and failed is not None:
        failed.append((int(failure.stage), int(failure.err)))
    return pid, int(pidfd[0])


def helper_go(spec: ChildSpec) -> bytes:
    """The helper's instructions for ``spec`` (``struct pidsafe_helper_go``).

    Raises:
        ValueError: ``spec`` has no helper.
    """
    helper = spec.helper
    if helper is None:
        raise ValueError("helper_go: the spec has no helper")
    go = ffi.new("struct pidsafe_helper_go *")
    go.magic = lib.PIDSAFE_HELPER_MAGIC
    go.size = ffi.sizeof(go[0])
    flags = 0
    if helper.userns_fd >= 0:
        flags |= lib.PIDSAFE_HELPER_JOIN_USERNS
    if helper.become_root:
        flags |= lib.PIDSAFE_HELPER_BECOME_ROOT
    if spec.cwd is not None:
        flags |= lib.PIDSAFE_HELPER_CHDIR
    if helper.new_userns:
        flags |= lib.PIDSAFE_HELPER_DROP_CAPS
    go.flags = flags
    go.errpipe = spec.errpipe_write
    go.userns_fd = helper.userns_fd
    go.pdeathsig = spec.pdeathsig
    go.unshare_flags = helper.unshare_flags
    go.n_exec_paths = len(spec.exec_paths)
    fail = _test_fail
    if fail is not None:
        go.fail_stage, go.fail_errno = fail
    return bytes(ffi.buffer(go))
