"""Entering a running container: the fds a process of ours is given, and its plan.

A process exec'd into a container is pidsafe-init again, entering init's
namespaces (:func:`enter`) and, where the container has a pid or a time
namespace, forking the process that runs the program into it
(:func:`forks`); :func:`plan_exec` is its op stream.
"""

from __future__ import annotations


from ..._value import Record
from ..config import ProcessSpec, Spec
from ._builder import CLONE_FLAGS, InitPlan, _Builder, _take_process_identity, _terminal
from ._protocol import (OP_CGROUP_JOIN, OP_CHROOT, OP_EXEC, OP_FORK, OP_ROOT, OP_SECCOMP,
                        OP_SETID_ROOT, OP_SETNS, OP_TERMINAL_STDIO, Op, nul_list)

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import List, Optional, Sequence, Tuple

#: The namespaces a process of ours joins "for its children": their processes
#: are born in them, so the process that runs the container's program is.
FOR_CHILDREN = ("pid", "time")


class Entry(Record):
    """The fds a process entering a running container is given (see :func:`enter`).

    Attributes:
        pidfd: init's pidfd (a copy the op closes), for every namespace but
            the pid and time ones.
        children_pidfd: init's pidfd again (another copy), for its pid and
            time namespaces, joined for pidsafe-init's children; -1 if the
            container has neither (then nothing is forked).
        fork_fd: the socket pidsafe-init sends its child's pidfd over.
    """

    pidfd: int
    children_pidfd: int = -1
    fork_fd: int = -1


def forks(spec: Spec) -> bool:
    """Whether a process entering ``spec``'s container is forked into it
    (it has a pid or a time namespace, which only children enter)."""
    return any(spec.linux.namespace(kind) is not None for kind in FOR_CHILDREN)


def enter(spec: Spec, entry: Entry) -> Tuple[List[Op], Optional[Op]]:
    """The ops that take pidsafe-init into init's namespaces, and its fork op.

    pidsafe-init starts in the runtime's pid namespace, where the container
    cannot see it.  It first chooses init's pid and time namespaces for its
    children, while still host root (they belong to the host's user
    namespace), then joins every other namespace of init with one
    ``setns(pidfd, flags)`` (Linux 5.8): the user namespace first, so the
    rest is joined as the container's root.  The process that runs the
    program is forked after that (``OP_FORK``, placed by the caller): it
    is born in the container's pid namespace already holding nothing of the
    host's (its mount namespace, credentials, a sealed binary, not
    dumpable).  Without a pid and a time namespace nothing is forked.

    Raises:
        ValueError: the container forks and ``entry`` has no fd for it.
    """
    ops: List[Op] = []
    kids = sum(CLONE_FLAGS[k] for k in FOR_CHILDREN if spec.linux.namespace(k) is not None)
    rest = sum(CLONE_FLAGS[ns.type] for ns in spec.linux.namespaces
               if ns.type not in FOR_CHILDREN)
    fork = None
    if kids:
        if entry.children_pidfd < 0 or entry.fork_fd < 0:
            raise ValueError("entering a container with a pid or time namespace needs "
                             "children_pidfd and fork_fd")
        ops.append(Op(OP_SETNS, (entry.children_pidfd, kids), "linux.namespaces",
                      "init's pid namespace"))
        fork = Op(OP_FORK, (entry.fork_fd,), "linux.namespaces", "init's pid namespace")
    if rest:
        ops.append(Op(OP_SETNS, (entry.pidfd, rest), "linux.namespaces", "init's namespaces"))
    return ops, fork


def plan_exec(spec: Spec, process: ProcessSpec, entry: Entry, *,
              root_fd: Optional[int] = None, console_fd: int = -1,
              cgroup_fds: Sequence[Tuple[int, str]] = ()) -> InitPlan:
    """The plan for a process exec'd into the running container of ``spec``.

    The process joins the container's cgroups: for each ``(fd, path)`` of
    ``cgroup_fds`` (a v1 ``tasks`` or v2 ``cgroup.procs`` file the caller
    opened, see :meth:`pidsafe.container.cgroup.Cgroup.open_join_fds`) it
    writes ``0`` there (the kernel checks the opener's credentials).
    Where pidsafe-init forks into the container's pid namespace, the
    child does, once it is ours (its pidfd sent): pidsafe-init itself is
    never in the container's cgroups, where the container (with a
    writable cgroup) could freeze or kill it between its fork and its
    send, taking the child's only pidfd with it.  Like runc's exec, the
    child joins by migration, which pids.max does not refuse.  Without a
    fork, pidsafe-init joins first thing, still in the host's namespaces.
    pidsafe-init enters init's namespaces (:func:`enter`), then takes
    ``process``'s user, capabilities, no_new_privs and cwd, and execs.
    Without a mount namespace of its own, it chroots into ``root_fd``
    (init's root, ``/proc/INIT/root`` opened by the caller), as init did.
    With ``process.terminal``, it allocates the terminal in the container's
    devpts and sends the master over ``console_fd`` (see :func:`plan_init`).

    Where it forks into the pid namespace: as late as it can, so that the
    process the container can see has already become the exec's user with
    the exec's capabilities.  A seccomp filter loaded while privileged (no
    no_new_privileges) is loaded before that identity, and so before the
    fork: the parent runs the filter on every syscall from its load to
    execve, and only a filter that would refuse one of them (clone and
    clone3 both, say) has the fork come first, the child loading it and
    taking the identity.
    """
    # Every field by position: a Record's quickest construction (an exec's hot path).
    b = _Builder(spec, _no_tree, [])
    joins = _Builder(spec, _no_tree, [])
    for fd, path in cgroup_fds:
        joins.add(OP_CGROUP_JOIN, fd, field_="linux.cgroupsPath", what=path)
    entering, fork = enter(spec, entry)
    if fork is None:
        b.ops.extend(joins.ops)
    b.ops.extend(entering)
    if spec.linux.namespace("mount") is None:
        if root_fd is None:
            raise ValueError("a container without a mount namespace needs root_fd")
        b.add(OP_ROOT, f"/proc/self/fd/{root_fd}", 0, field_="root.path", what="init's root")
        b.add(OP_CHROOT, field_="root.path", what="init's root")
    if process.terminal and spec.linux.namespace("user") is not None:
        # The pty's peer is owned by whoever opens ptmx: it must be the
        # container's root (mapped), not host root (unmapped in there).
        b.add(OP_SETID_ROOT, field_="linux.uidMappings")
    _terminal(b, process, console_fd, console=False, stdio=False)
    identity = _Builder(spec, _no_tree, [])
    _take_process_identity(identity, process)
    fork_first = fork is not None and not _forks_under_filter(identity.ops, fork,
                                                              process.terminal, cgroup_fds)
    if fork is not None and fork_first:
        b.ops += [fork, *joins.ops]
    b.ops.extend(identity.ops)
    if fork is not None and not fork_first:
        # (A late filter is loaded right before execve, by the child.)
        b.ops += [fork, *joins.ops]
    if process.terminal:
        b.add(OP_TERMINAL_STDIO, field_="process.terminal")
    b.add(OP_EXEC, nul_list(process.args), nul_list(process.env), field_="process.args",
          what=process.args[0])
    return InitPlan(0, tuple(b.ops), root_in_userns=spec.linux.namespace("user") is not None)


def _forks_under_filter(identity: Sequence[Op], fork: Op, terminal: bool,
                        cgroup_fds: Sequence[Tuple[int, str]]) -> bool:
    """Whether the fork can follow ``identity`` with an early filter among
    it: none, or one that lets everything from its load to execve through
    (:func:`._seccomp_eval.lets_fork_through`)."""
    for i, op in enumerate(identity):
        if op.code == OP_SECCOMP and op.args[2] == 0:
            from ._seccomp_eval import lets_fork_through

            bpf, sock = op.args[1], fork.args[0]
            assert isinstance(bpf, bytes) and isinstance(sock, int)
            return lets_fork_through(bpf, identity[i + 1:], sock, terminal,
                                     [fd for fd, _ in cgroup_fds])
    return True


def _no_tree(source: str, recursive: bool, attr_set: int, attr_clr: int, userns_fd: int,
             field: str) -> int:  # pragma: no cover - exec makes no mounts
    raise AssertionError("exec makes no mounts")


__all__ = ["Entry", "enter", "forks", "plan_exec"]
