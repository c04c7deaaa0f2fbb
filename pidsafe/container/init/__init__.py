"""pidsafe.container.init: what a container's init must do, and starting it.

:func:`plan_init` (and :func:`plan_exec` for a process exec'd into a
running container) turns a checked :class:`~pidsafe.container.config.Spec`
into pidsafe-init's op stream (:class:`InitPlan`, a list of :class:`Op`),
deciding in Python all that can be decided before the container exists;
:func:`start_init` starts pidsafe-init held by a pidfd from birth, sends it
the ops and waits until it is ready (:class:`StartedInit`) or has failed
(the config field is named).

_builder.py         InitPlan and its builder; the process's identity and terminal ops
_plan.py            plan_init: the op stream that creates a container, in runc's order
_plan_mounts.py     the ops of the config's mounts and devices (cgroup mounts included)
_enter.py           Entry, enter, forks, plan_exec: a process entering a running container
_protocol.py        the op codes, stages and records of csrc/shared/init_protocol.h; Op
_start.py           start_init: clone, send the ops, wait for READY
_forked.py          entering a running container: the forked child's pidfd, deadlines
_preserve_fds.py    preserve_fds: the caller's fds 3.. reach the program
_seccomp_filter.py  linux.seccomp compiled to BPF in the parent
_seccomp_enosys.py  the ENOSYS stub for syscalls newer than a profile

Names load on first use (pidsafe/_lazy.py), as in :mod:`pidsafe.container`.
"""

from ... import _lazy

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command

if TYPE_CHECKING:
    from ._forked import (ENTER_TIMEOUT, Deadline, enter_deadline, entry_fds, open_entry,
                          read_record)
    from ._builder import CLONE_FLAGS, InitPlan
    from ._enter import Entry, enter, forks, plan_exec
    from ._plan import DEFAULT_DEVICES, plan_init
    from ._preserve_fds import preserved_fds, with_preserved
    from ._protocol import (OP_EXEC, OP_EXEC_PATH, OP_NAMES, OP_SECCOMP, OP_SETID_ROOT,
                            OP_SETNS, STAGE_EXEC, Op, nul_list)
    from ._seccomp_filter import seccomp_features
    from ._start import StartedInit, exec_error, start_init

_EXPORTS = {
    "CLONE_FLAGS": "._builder",
    "Deadline": "._forked",
    "ENTER_TIMEOUT": "._forked",
    "Entry": "._enter",
    "enter": "._enter",
    "enter_deadline": "._forked",
    "exec_error": "._start",
    "entry_fds": "._forked",
    "forks": "._enter",
    "open_entry": "._forked",
    "DEFAULT_DEVICES": "._plan",
    "InitPlan": "._builder",
    "OP_EXEC": "._protocol",
    "OP_EXEC_PATH": "._protocol",
    "OP_NAMES": "._protocol",
    "OP_SECCOMP": "._protocol",
    "OP_SETID_ROOT": "._protocol",
    "OP_SETNS": "._protocol",
    "Op": "._protocol",
    "STAGE_EXEC": "._protocol",
    "StartedInit": "._start",
    "nul_list": "._protocol",
    "plan_exec": "._enter",
    "plan_init": "._plan",
    "preserved_fds": "._preserve_fds",
    "read_record": "._forked",
    "seccomp_features": "._seccomp_filter",
    "start_init": "._start",
    "with_preserved": "._preserve_fds",
}

__getattr__, __dir__ = _lazy.exports(__name__, _EXPORTS)

__all__ = ["CLONE_FLAGS", "DEFAULT_DEVICES", "Deadline", "ENTER_TIMEOUT", "Entry", "InitPlan",
           "OP_EXEC", "OP_EXEC_PATH", "OP_NAMES", "OP_SECCOMP", "OP_SETID_ROOT", "OP_SETNS",
           "Op", "STAGE_EXEC", "StartedInit", "enter", "enter_deadline", "entry_fds", "exec_error",
           "forks",
           "nul_list", "open_entry", "plan_exec", "plan_init", "preserved_fds", "read_record",
           "seccomp_features", "start_init", "with_preserved"]
