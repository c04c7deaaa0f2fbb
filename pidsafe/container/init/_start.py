"""Create a container's init: held by a pidfd from birth, set up by pidsafe-init.

1. ``clone3(CLONE_PIDFD|CLONE_VM|CLONE_VFORK|namespaces[|CLONE_INTO_CGROUP])``:
   the child shares our memory only until it execs pidsafe-init (a sealed
   copy), and changes no credential before that (invariant 8); the cost
   does not grow with our heap (invariant 3).  pid and pidfd are born
   together (invariant 1).  It is never born in a pid namespace another
   process can see: into an existing one (an exec, a hook, a pid namespace
   given by path) pidsafe-init forks once it holds nothing of the host's
   (``fork_socket``, :mod:`._forked`).  With ``tasks_fds`` the child joins
   its cgroup v1 hierarchies before it execs (without the kernel's global
   lock that a pid written to ``cgroup.procs`` takes).
2. pidsafe-init blocks reading its op stream.  Meanwhile ``prepare(proc)``
   runs; then the whole stream is written, and ``meanwhile(proc)`` (a
   container's create: state, oom_score_adj) runs while pidsafe-init
   works through it.  A user namespace is made beforehand, maps and all,
   by :func:`pidsafe.get_userns_fd` (open-then-prove, invariant 2), and
   joined by pidsafe-init.
3. We read one record: READY (init waits at the gate) or ERROR {op,
   errno}, which becomes a :class:`~pidsafe.ContainerError` naming the
   config field and the path.

On any failure init is killed and reaped through its pidfd and every fd is
closed before the error propagates.
"""

from __future__ import annotations

import errno
import os

from ... import _sys
from ..._fd import OwnedFd
from ..._sigsafe import critical
from ..._value import Record
from ...errors import ContainerError, UnsupportedError, container_error
from ...process import Process, discard, start_process
from ._builder import InitPlan
from ._forked import Deadline, end_forked, read_record, take_forked, wait_exited
from ._protocol import (OP_FORK, OP_HOOKS, OP_MASK, OP_MKNOD, OP_NAMES, OP_SECCOMP, OP_SYSCTL,
                        RECORD_ERROR, RECORD_HOOKS, RECORD_READY, STAGE_EXEC, Op, StatusRecord,
                        encode)

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Sequence, Tuple


class StartedInit(Record, frozen=False):
    """An init waiting at the gate, and the read end of its status pipe.

    After ``start``, the status pipe says whether the exec succeeded: EOF
    with no record means it did (the pipe is close-on-exec in init).
    """

    process: Process
    status: OwnedFd


def init_program() -> _sys.Program:
    """pidsafe-init, as :func:`pidsafe._sys.program` says to exec it.

    Raises:
        UnsupportedError: this install has no pidsafe-init (it is built by
            ``pip install``; a source tree without a build has none).
    """
    try:
        return _sys.program("pidsafe-init")
    except FileNotFoundError as exc:
        raise UnsupportedError("pidsafe_init", f"{exc.filename} is missing: reinstall pidsafe",
                               errno.ENOENT) from None


#: (op, errno) -> what it means, where pidsafe-init refused something it found
#: in the container's files (csrc/init/mounts.c, byfd.c) and the errno alone
#: would puzzle.
_REFUSALS = {
    (OP_MASK, errno.ENODEV): "the container's /dev/null is not the null device (char 1:3)",
    (OP_MASK, errno.ELOOP): "the container's /dev/null is a symlink",
    (OP_MKNOD, errno.ELOOP): "replaced by a symlink while it was made",
    (OP_MKNOD, errno.EEXIST): "replaced by something else while it was made",
    (OP_SYSCTL, errno.EXDEV): "another mount hides it: it is not the container's procfs",
    (OP_SYSCTL, errno.ELOOP): "a symlink on the way: it is not the container's procfs",
    (OP_SYSCTL, errno.ENODEV): "it is not on the container's procfs (/proc)",
}


def error_from_record(record: Optional[object], plan: InitPlan,
                      exit_status: Optional[int]) -> BaseException:
    """The exception for a failed init: its ERROR record, or its death."""
    if isinstance(record, StatusRecord) and record.kind == RECORD_ERROR:
        op = plan.ops[record.index] if 0 <= record.index < len(plan.ops) else None
        name = OP_NAMES.get(record.op, f"stage {record.op}")
        what = op.what if op is not None else ""
        step = f"container init: {name}" + (f" {what}" if what else "")
        err = record.err or errno.EIO
        field = op.field if op is not None else ""
        why = _REFUSALS.get((record.op, err))
        message = None if why is None else (f"{step}{f' ({field})' if field else ''}: "
                                            f"{os.strerror(err)} ({why})")
        return container_error(err, step, what or None, field, message=message)
    how = (f"exited with status {exit_status}" if exit_status is not None and exit_status >= 0
           else f"was killed by signal {-exit_status}" if exit_status is not None
           else "died")
    return container_error(errno.ECHILD, f"container init {how} before it was ready")


def exec_error(record: StatusRecord, who: str, program: Optional[str],
               ops: Sequence[Op] = ()) -> ContainerError:
    """The error for a record pidsafe-init sent after the start gate: the
    exec of the program, or what it does right before (the seccomp filter,
    an exec's own ops), failed.

    The one decoder of these records (a container's start, an exec).
    ``who`` begins the step (``"container init"``, ``"exec"``); the field
    is ``process.args`` for the exec itself, else that of the op in ``ops``
    (the plan's) the record names, else ``linux.seccomp`` for the filter.
    """
    if record.op == STAGE_EXEC:
        field = "process.args"
    elif 0 <= record.index < len(ops):
        field = ops[record.index].field
    elif record.op == OP_SECCOMP:
        field = "linux.seccomp"
    else:
        field = ""
    return container_error(record.err, f"{who}: {OP_NAMES.get(record.op, 'exec')}", program,
                           field)


def start_init(plan: InitPlan, *, stdio: Tuple[int, int, int], pass_fds: Sequence[int],
               cgroup_fd: int = -1,
               tasks_fds: Sequence[int] = (),
               join_error: Optional[Callable[[int], BaseException]] = None,
               prepare: Optional[Callable[[Process], None]] = None,
               meanwhile: Optional[Callable[[Process], None]] = None,
               args: Optional[List[str]] = None,
               on_hooks: Optional[Callable[[Process], None]] = None,
               fork_socket: int = -1,
               on_forked: Optional[Callable[[Process], None]] = None,
               deadline: Optional[Deadline] = None) -> StartedInit:
    """Clone init, send its ops, and wait until it is READY.

    With ``on_hooks``, init stops at the plan's OP_HOOKS and reports it;
    ``on_hooks(proc)`` runs then (the create hooks) and lets init go on
    through the pipe the op names.

    With ``fork_socket`` (our end of the socket the plan's OP_FORK names),
    the process pidsafe-init forks into a running container's pid
    namespace is what is returned (see :mod:`._forked`); the pidsafe-init
    we cloned, which never enters it, is reaped.  ``prepare`` runs for
    the one we cloned, before it forks; ``on_forked(proc)`` for the one it
    forked, as soon as it is ours.

    ``prepare(proc)`` runs before init has its ops, ``meanwhile(proc)``
    once it has them all, while it carries them out (its namespaces,
    mounts and pivot_root: most of a create's time, spent in parallel).
    ``meanwhile`` is for an init that stops at a start gate: nothing of
    the container runs before it has returned; or for what may race the
    process (an exec closes its copies of fds init has its own of: it
    takes each out of ``pass_fds``, a list then, before it closes it, for
    the undo reads the pids of the pidfds left there).  (With
    ``fork_socket``, it runs for the one we cloned, which may have forked
    already.)

    ``cgroup_fd`` (a cgroup2 directory) and ``tasks_fds`` (cgroup v1
    ``tasks`` files): the cgroups init is born into, and joins before it
    execs (:class:`pidsafe._sys.ChildSpec`); ``join_error(errno)`` is the
    error raised if it could not join.  Only for a cgroup nobody else is
    in (a new container's): a spawn child born frozen would hold our thread.

    With ``deadline``, each wait for init (or the pidsafe-init that forks
    it) fails, and kills it, once it has passed: a container's processes
    can stop one of ours they can see, or freeze their cgroups.  The
    bound starts again after ``on_hooks``.

    Raises:
        ContainerError: a step inside the container failed (``field``
            names the config entry, ``path`` what it acted on); the
            deadline passed (ETIMEDOUT).
        OSError: clone3 or a step in the parent failed.
    """
    if fork_socket >= 0:
        _fork_ops_in_child(plan.ops)
    init = init_program()
    fds: List[int] = []
    proc: Optional[Process] = None
    cloned: Optional[Process] = None   # with fork_socket: the one that forks
    status: Optional[OwnedFd] = None
    try:
        with critical:
            ops_r, ops_w = os.pipe2(os.O_CLOEXEC)
            fds += [ops_r, ops_w]
            st_r, st_w = os.pipe2(os.O_CLOEXEC)
            fds += [st_r, st_w]
        stream = encode(plan.ops)   # before the clone: init has it as soon as it reads
        exe = init.exec_fd()   # a sealed copy: never the installed file (_sys._libexec)
        keep = sorted({ops_r, st_w, exe, *pass_fds})
        argv = [init.exec_path, str(ops_r).encode(), str(st_w).encode()]
        spec = _sys.ChildSpec(exec_paths=(init.exec_path,), exec_fd=exe, argv=tuple(argv),
                              errpipe_write=-1, envp=(), stdio=stdio, keep_fds=tuple(keep),
                              clone_flags=plan.clone_flags, cgroup_fd=cgroup_fd,
                              tasks_fds=tuple(tasks_fds))
        with critical:
            first = start_process(
                spec, args=args, who="container init", unsupported="containers need clone3",
                filenames={_sys.STAGE_EXEC: init.path},
                stage_errors=None if join_error is None else {_sys.STAGE_CGROUP: join_error})
            # With fork_socket, the one we cloned forks the process: it is
            # ``cloned``, whose undo collects that child too (end_forked).
            if fork_socket >= 0:
                cloned = first
            else:
                proc = first
        _close(fds, ops_r, st_w)
        if prepare is not None:
            prepare(first)
        view = memoryview(stream)
        while view:
            n = os.write(ops_w, view)
            view = view[n:]
        _close(fds, ops_w)
        if meanwhile is not None:
            meanwhile(first)
        rec = read_record(st_r, deadline)
        if cloned is not None:
            # Every op from OP_FORK on runs in the child (_fork_ops_in_child),
            # so a HOOKS or READY record is the child's, and pidsafe-init lets
            # the child go only once it has sent the child's pidfd: that is in
            # the socket by now, taken without a wait (a wake-up) of its own.
            # Anything else is an error, pidsafe-init's or the child's: the
            # undo (end_forked) collects whichever child there is.
            if rec is None or rec.kind not in (RECORD_READY, RECORD_HOOKS):
                raise error_from_record(rec, plan, cloned.wait() if rec is None else None)
            proc = take_forked(fork_socket, args)
            if proc is None:
                raise container_error(errno.EPROTO, "pidsafe-init reported its child "
                                                    "before it sent it")
            # It leaves as soon as it has let its child go (so it usually has
            # by now), but one held all the same may never exit: stopped, or
            # frozen in the cgroups of a create that forks into a pod's pid
            # namespace (an exec's is never in the container's cgroups).
            wait_exited(cloned, deadline)
            with critical:
                cloned.close()
                cloned = None
            if on_forked is not None:
                on_forked(proc)
        assert proc is not None
        while rec is not None and rec.kind == RECORD_HOOKS and on_hooks is not None:
            on_hooks(proc)
            if deadline is not None:   # the hooks' time is not init's
                deadline = deadline.again()
            rec = read_record(st_r, deadline)
        if rec is None or rec.kind != RECORD_READY:
            status_code = None
            if rec is None:
                status_code = proc.wait()
            raise error_from_record(rec, plan, status_code)
        with critical:
            status = OwnedFd(st_r, "container init status")
            fds.remove(st_r)
        return StartedInit(proc, status)
    except BaseException:
        with critical:
            # Our fds first: a pidsafe-init still reading its ops meets EOF
            # and leaves (end_forked lets it finish).
            for fd in fds:
                os.close(fd)
            if status is not None:
                status.close()
            if proc is not None:
                discard(proc)
            if cloned is not None:
                end_forked(cloned, fork_socket, deadline, pass_fds)
        raise


#: The last ops :func:`_fork_ops_in_child` passed (an exec's plan is kept: _exec._plan).
_checked: Sequence[Op] = ()


def _fork_ops_in_child(ops: Sequence[Op]) -> None:
    """Check that every op that reports to the parent (OP_HOOKS, and READY
    after the last op) comes after ``ops``' OP_FORK, in the child: the
    parent takes the child's pidfd when the first such record comes.
    Checked once for the same ops object (a plan's ops are a tuple).

    Raises:
        ValueError: the plan has no OP_FORK, or an OP_HOOKS before it.
    """
    global _checked
    if ops is _checked:
        return
    codes = [op.code for op in ops]
    if OP_FORK not in codes:
        raise ValueError("a plan with a fork socket needs OP_FORK")
    if OP_HOOKS in codes[:codes.index(OP_FORK)]:
        raise ValueError("OP_HOOKS must come after OP_FORK")
    if isinstance(ops, tuple):   # never changed once made (a list may be)
        _checked = ops


def _close(fds: List[int], *which: int) -> None:
    """Close ``which`` and take them out of ``fds`` (the undo's list) in one
    critical section: an fd is never left open unlisted, nor closed twice."""
    with critical:
        for fd in which:
            fds.remove(fd)
            os.close(fd)
