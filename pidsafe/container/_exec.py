"""exec into a running container: a new process in all of init's namespaces.

pidsafe-init is cloned (held by a pidfd) in *our* pid namespace and our
cgroups, where the container can neither see nor freeze it; it joins
every namespace of init with ``setns(pidfd, flags)`` (Linux 5.8),
choosing init's pid namespace for its children; it takes the exec's user
and capabilities and, holding nothing of the host's, forks the process
that execs the program into the container's pid namespace, whose pidfd it
sends us (:mod:`.init._forked`).  That process then joins init's cgroups
through files we open (``0`` written to each).  No credential changes in
memory shared with the caller, and no process of ours is ever visible in
the container while it is in the host's mount namespace or has the host's
credentials.
"""

from __future__ import annotations

import os
from typing import Callable, List, Optional, Tuple

from .. import _sys
from .._sigsafe import critical
from ..process import Process, discard
from .cgroup import Cgroup
from .config import ProcessSpec, Spec
from .init import (Entry, InitPlan, StartedInit, enter_deadline, entry_fds, exec_error,
                   open_entry, plan_exec, preserved_fds, read_record, start_init, with_preserved)
from ._stdio import Stdio


#: The last plan :func:`_plan` made, and what it was made from.
_last: Optional[Tuple[Tuple[object, ...], InitPlan]] = None


def _plan(spec: Spec, process: ProcessSpec, entry: Entry, root_fd: Optional[int],
          console_fd: int, joins: List[Tuple[int, str]], preserve_fds: int) -> InitPlan:
    """``plan_exec`` (with the preserved fds): the last one again if it was
    made from the same spec object and equal arguments.

    A plan is a value made from these alone (no call reaches the system),
    and execs of one container usually pass the same fd numbers: the
    lowest free ones.  Made again, it was ~2000 bytecodes, and its op
    stream (encoded once per plan: :func:`.init.encode`) ~1300, before
    pidsafe-init could start.  Not kept with a seccomp filter, which is
    compiled through libseccomp on each plan (its calls stay the same on
    every exec).
    """
    global _last
    key = (spec, process, entry, root_fd, console_fd, tuple(joins), preserve_fds)
    last = _last
    if last is not None and last[0][0] is spec and last[0][1:] == key[1:]:
        return last[1]
    plan = with_preserved(plan_exec(spec, process, entry, root_fd=root_fd,
                                    console_fd=console_fd, cgroup_fds=joins), preserve_fds)
    if spec.linux.seccomp is None:
        _last = (key, plan)   # one store: a thread sees all of it or the one before
    return plan


def exec_into(init: Process, spec: Spec, process: ProcessSpec, stdio: Stdio,
              cgroup: Optional[Cgroup] = None, preserve_fds: int = 0,
              console_fd: int = -1,
              adopt: Callable[[Process], None] = lambda proc: None,
              before_ops: Optional[Callable[[], None]] = None) -> Process:
    """Start ``process`` in init's namespaces and cgroups; return once it has exec'd.

    ``adopt(proc)`` is called with the process the moment it is ours (before
    its exec is known to have worked): the caller's owner records it, so
    that whatever raises from then on, it is found and ended.
    ``before_ops()`` (a check that may raise: the container is paused) runs
    once pidsafe-init is cloned and before it has its ops, while it starts
    up: nothing has entered the container yet, and a raise ends it.

    Raises:
        ContainerError: joining, the user, the cwd or the exec failed
            (``field`` names the process field).
    """
    # Every fd we open is recorded inside the same critical section that
    # opens it, so an exception raised by a signal handler anywhere after
    # that still reaches the ``finally`` that closes it.
    owned: List[int] = []
    root_fd = None
    started: Optional[StartedInit] = None
    deadline = enter_deadline("exec")
    try:
        entry, fork_socket = open_entry(init, spec, owned)
        if spec.linux.namespace("mount") is None:
            # init's root (its chroot): opened first, then init proven alive.
            with critical:
                root_fd = os.open(f"/proc/{init.pid}/root",
                                  os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                owned.append(root_fd)
            _sys.pidfd_send_signal(init.fileno(), 0)
        if cgroup is None:   # a container recorded without one: init's own cgroups
            cgroup = Cgroup.of_process(init)
        # The process joins the cgroups itself by writing "0" to files we
        # open here (OP_CGROUP_JOIN): to v1 ``tasks`` that takes no global
        # lock, where our writing its pid to ``cgroup.procs`` waits for an
        # RCU grace period per hierarchy.  Forked into a pid namespace, it
        # joins once it is ours, never pidsafe-init (plan_exec).  Not
        # CLONE_INTO_CGROUP: the container may have frozen its own cgroup,
        # and a spawn child born frozen would hold our thread in clone3 for
        # good; a process of ours frozen there is bounded by the deadline
        # like any the container stops.
        joins: List[Tuple[int, str]] = []
        with critical:
            for fd, path in cgroup.open_join_fds():
                owned.append(fd.detach())
                joins.append((owned[-1], path))
        kept = preserved_fds(preserve_fds)
        plan = _plan(spec, process, entry, root_fd, console_fd, joins, preserve_fds)

        def prepare(p: Process) -> None:
            if fork_socket < 0:   # the one we cloned is the process
                adopt(p)
            if before_ops is not None:
                before_ops()

        join_fds = [fd for fd, _ in joins]
        passed = entry_fds(entry) + [fd for fd in (root_fd, console_fd)
                                     if fd is not None and fd >= 0] + join_fds
        passed += kept

        def meanwhile(p: Process) -> None:
            # pidsafe-init has its own copies since its clone: ours of the
            # files it only writes (the joins) and of its end of the fork
            # socket are closed while it works through its ops, not after
            # READY.  Each leaves ``passed`` first: an undo reads the pids
            # of the pidfds there (end_forked tells the container's init
            # from a held child by them), and a number closed here may be
            # a pidfd of someone else's by then.  Not the pidfds.
            with critical:
                for fd in join_fds if entry.fork_fd < 0 else [*join_fds, entry.fork_fd]:
                    passed.remove(fd)
                    owned.remove(fd)
                    os.close(fd)

        started = start_init(plan, stdio=stdio.child, pass_fds=passed,
                             prepare=prepare, meanwhile=meanwhile, args=list(process.args),
                             fork_socket=fork_socket, deadline=deadline,
                             on_forked=adopt if fork_socket >= 0 else None)
        # Not a ``finally``: a handler raising as its section began would
        # skip it.  Here, a handler raising as this section begins or ends
        # lands in the except below.
        with critical:
            while owned:
                os.close(owned.pop())
    except BaseException:
        # The status fd goes too (the process is adopt()'s caller's to end).
        with critical:
            while owned:
                os.close(owned.pop())
            if started is not None:
                started.status.close()
        raise
    proc = started.process
    try:
        with started.status:
            rec = read_record(started.status.fileno(), deadline)
        if rec is not None:
            # Not waited for: the container may stop it before it exits.
            # discard() kills and reaps it.
            raise exec_error(rec, "exec", process.args[0], plan.ops)
    except BaseException:
        discard(proc)
        raise
    return proc

