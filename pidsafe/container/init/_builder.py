"""The op list both plans build, and the ops that create and exec share.

A plan (:class:`InitPlan`) is pidsafe-init's op stream and the clone flags
it needs.  :func:`plan_init` (``_plan``) and :func:`plan_exec` (``_enter``)
both build one with a :class:`_Builder`, and both make the process who the
config says (:func:`_take_process_identity`) and give it its terminal
(:func:`_terminal`) the same way.
"""

from __future__ import annotations


from ... import _sys
from ..._value import Record, field
from ..config import ProcessSpec, Spec
from ._protocol import (OP_CAPS, OP_CAP_BOUNDING, OP_CHDIR, OP_CONSOLE, OP_NO_NEW_PRIVS,
                        OP_SECCOMP, OP_TERMINAL, OP_TERMINAL_SEND, OP_TERMINAL_STDIO, OP_USER, Op)

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Callable, Dict, FrozenSet, List, Tuple

    #: open_tree(source, recursive, attr_set, attr_clr, idmap_userns_fd or -1, field) -> a
    #: detached bind's fd, which init gets at the same number and attaches.
    OpenTree = Callable[[str, bool, int, int, int, str], int]

#: OCI namespace type -> clone flag.
CLONE_FLAGS: Dict[str, int] = {
    "pid": _sys.CLONE_NEWPID, "network": _sys.CLONE_NEWNET, "mount": _sys.CLONE_NEWNS,
    "ipc": _sys.CLONE_NEWIPC, "uts": _sys.CLONE_NEWUTS, "user": _sys.CLONE_NEWUSER,
    "cgroup": _sys.CLONE_NEWCGROUP, "time": _sys.CLONE_NEWTIME}


class InitPlan(Record):
    """What creating the container takes: clone flags, fds to open, ops."""

    clone_flags: int
    ops: Tuple[Op, ...]
    root_in_userns: bool = False


class _Builder(Record, frozen=False):
    spec: Spec
    open_tree: OpenTree
    ops: List[Op] = field(default_factory=list)

    def add(self, code: int, *args: object, field_: str = "", what: str = "") -> None:
        self.ops.append(Op(code, tuple(args), field_, what))  # type: ignore[arg-type]


def _terminal(b: _Builder, proc: ProcessSpec, console_fd: int, *, console: bool,
              stdio: bool = True) -> None:
    """The ops of ``process.terminal``: allocate, [bind on /dev/console], send, [take]."""
    if not proc.terminal:
        if console_fd >= 0:
            raise ValueError("a console socket without process.terminal")
        return
    if console_fd < 0:
        raise ValueError("process.terminal needs a console socket fd")
    rows, cols = proc.console_size or (0, 0)
    b.add(OP_TERMINAL, rows, cols, proc.user.uid, field_="process.terminal",
          what="/dev/pts/ptmx")
    if console:
        b.add(OP_CONSOLE, field_="process.terminal", what="/dev/console")
    b.add(OP_TERMINAL_SEND, console_fd, field_="process.terminal")
    if stdio:
        b.add(OP_TERMINAL_STDIO, field_="process.terminal")


def _take_process_identity(b: _Builder, proc: ProcessSpec) -> None:
    """The ops that make the process who ``proc`` says, for create and exec
    alike: the bounding set while still privileged, then the user, the
    capabilities, no_new_privs and the working directory.

    The container's seccomp filter (compiled here, in the parent) is loaded
    where runc loads it: without no_new_privs loading needs CAP_SYS_ADMIN,
    so before the bounding set and the user; with it, as late as possible,
    after the gate, right before execve."""
    seccomp = b.spec.linux.seccomp
    prog = None
    if seccomp is not None:
        from ._seccomp_filter import compile_filter

        prog = compile_filter(seccomp)
        if not proc.no_new_privileges:
            b.add(OP_SECCOMP, prog.flags, prog.bpf, 0, field_="linux.seccomp")
    caps = proc.capabilities
    if caps is not None:
        b.add(OP_CAP_BOUNDING, _mask(caps.bounding), field_="process.capabilities.bounding")
    u = proc.user
    b.add(OP_USER, u.uid, u.gid, -1 if u.umask is None else u.umask, list(u.additional_gids),
          field_="process.user", what=f"{u.uid}:{u.gid}")
    if caps is not None:
        b.add(OP_CAPS, _mask(caps.effective), _mask(caps.permitted), _mask(caps.inheritable),
              _mask(caps.ambient), field_="process.capabilities")
    if proc.no_new_privileges:
        b.add(OP_NO_NEW_PRIVS, field_="process.noNewPrivileges")
    b.add(OP_CHDIR, proc.cwd, field_="process.cwd", what=proc.cwd)
    if prog is not None and proc.no_new_privileges:
        b.add(OP_SECCOMP, prog.flags, prog.bpf, 1, field_="linux.seccomp")


def _rlim(value: int) -> int:
    """OCI's uint64 limits as the int64 the op stream carries (RLIM_INFINITY = -1)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _mask(caps: FrozenSet[int]) -> int:
    m = sum(map((1).__lshift__, caps))   # distinct bits: the sum is the OR, made in C
    return _rlim(m) if m >= 1 << 63 else m


__all__ = ["CLONE_FLAGS", "InitPlan", "OpenTree"]
