"""Whether a compiled seccomp filter lets pidsafe-init fork after loading it.

An exec without no_new_privs loads its filter while still privileged
(:func:`._builder._take_process_identity`).  pidsafe-init should take the
exec's whole identity before it forks into the container's pid namespace,
so that the container never sees a process of ours holding the runtime's
capabilities; but then the fork and everything after it run under the
filter.  :func:`lets_fork_through` runs the classic BPF program, here in the
parent, on each syscall pidsafe-init makes from the filter's load to its
execve in that order, with the arguments it will pass: the plan uses that
order only if every one of them still happens as without the filter.

The interpreter knows the instructions libseccomp and the ENOSYS stub
(:mod:`._seccomp_enosys`) emit; anything else, or a test of a value the
parent cannot know (a pointer, an fd chosen at run time, the instruction
pointer), makes the answer "no", and the plan keeps the fork first.
"""

from __future__ import annotations

import errno
import signal
import struct
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from ..._sys import seccomp as sc
from ._protocol import OP_CAP_BOUNDING, OP_CAPS, OP_CHDIR, OP_NO_NEW_PRIVS, OP_USER, Op

#: struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
_INSN = struct.Struct("=HBBI")
LD_W_ABS = 0x20
ALU_AND_K = 0x54
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JGE_K = 0x35
JMP_JSET_K = 0x45
RET_K = 0x06

RET_ACTION_FULL = 0xFFFF0000
RET_ERRNO = 0x00050000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000

#: An argument the parent cannot know (a pointer, an fd chosen at run time).
UNKNOWN = None
Args = Tuple[Optional[int], ...]
Call = Tuple[str, Args]

_U64 = (1 << 64) - 1
CLONE_PARENT = 0x00008000
CLONE_PIDFD = 0x00001000
#: sizeof(struct clone_args) as csrc/init/namespaces.c passes it (8 u64s).
CLONE_ARGS_SIZE = 64
O_CLOEXEC = 0o2000000
MSG_NOSIGNAL = 0x4000
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
F_DUPFD_CLOEXEC = 1030
TIOCSCTTY = 0x540E


def run(bpf: bytes, nr: int, arch: int, args: Args, ip: Optional[int] = UNKNOWN) -> int:
    """The filter's return value for one syscall (seccomp_data: nr, arch, ip, args).

    Raises:
        ValueError: an instruction this interpreter does not know, a jump out of
            the program, or a load of an unknown argument or of ``ip``.
    """
    if not bpf or len(bpf) % _INSN.size:
        raise ValueError("not whole instructions")
    insns = [_INSN.unpack_from(bpf, i) for i in range(0, len(bpf), _INSN.size)]
    words: Dict[int, Optional[int]] = {0: nr & 0xFFFFFFFF, 4: arch & 0xFFFFFFFF}
    for i, value in enumerate([ip] + list(args[:6]) + [UNKNOWN] * (6 - len(args[:6]))):
        base = 8 + 8 * i
        lo = hi = UNKNOWN if value is None else 0
        if value is not None:
            value &= _U64
            lo, hi = value & 0xFFFFFFFF, value >> 32
        if sys.byteorder == "big":
            lo, hi = hi, lo
        words[base], words[base + 4] = lo, hi
    acc = 0
    pc = 0
    while 0 <= pc < len(insns):
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == LD_W_ABS:
            if k not in words:
                raise ValueError(f"load at offset {k}")
            word = words[k]
            if word is None:
                raise ValueError(f"load of an unknown value at offset {k}")
            acc = word
        elif code == ALU_AND_K:
            acc &= k
        elif code == JMP_JA:
            pc += k
        elif code in (JMP_JEQ_K, JMP_JGT_K, JMP_JGE_K, JMP_JSET_K):
            taken = (acc == k if code == JMP_JEQ_K else acc > k if code == JMP_JGT_K
                     else acc >= k if code == JMP_JGE_K else bool(acc & k))
            pc += jt if taken else jf
        elif code == RET_K:
            return int(k)
        else:
            raise ValueError(f"instruction {code:#x}")
    raise ValueError("ran off the program")


def _happens(ret: int) -> bool:
    """Whether the syscall runs as without a filter (allowed, or allowed and logged)."""
    return ret & RET_ACTION_FULL in (RET_ALLOW, RET_LOG)


def fork_calls(identity: Sequence[Op], sock: int, terminal: bool,
               joins: Sequence[int] = ()) -> List[Call]:
    """The syscalls pidsafe-init makes between loading the filter and execve,
    when it takes ``identity`` (the ops after ``OP_SECCOMP``) before
    ``OP_FORK`` over ``sock``, the child then joining the cgroups of the
    files ``joins``; clone3 and its fallback excepted (see
    :func:`lets_fork_through`).  A few more than it makes, never fewer:
    every capability the bounding set drops, the error paths' calls too."""
    calls: List[Call] = []
    for op in identity:
        if op.code == OP_CAP_BOUNDING:
            mask = _int(op.args[0]) & _U64
            calls += [("prctl", (PR_CAPBSET_DROP, cap, 0, 0, 0))
                      for cap in range(64) if not mask >> cap & 1]
        elif op.code == OP_USER:
            uid, gid, umask = (_int(a) for a in op.args[:3])
            gids = op.args[3]
            if not isinstance(gids, (list, tuple)):
                raise ValueError("OP_USER's groups")
            if umask >= 0:
                calls.append(("umask", (umask,)))
            if gids:   # calloc'd: the heap may grow
                calls += [("brk", (UNKNOWN,)), ("mmap", (UNKNOWN,) * 6)]
            calls += [("setgroups", (len(gids), UNKNOWN if gids else 0)),
                      ("prctl", (PR_SET_KEEPCAPS, 1, 0, 0, 0)),
                      ("setresgid", (gid & 0xFFFFFFFF,) * 3),
                      ("setresuid", (uid & 0xFFFFFFFF,) * 3),
                      ("prctl", (PR_SET_KEEPCAPS, 0, 0, 0, 0))]
        elif op.code == OP_CAPS:
            perm, inh, amb = (_int(a) & _U64 for a in op.args[1:4])
            calls += [("capset", (UNKNOWN, UNKNOWN)),
                      ("prctl", (PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0))]
            calls += [("prctl", (PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0))
                      for cap in range(64) if (amb & perm & inh) >> cap & 1]
        elif op.code == OP_CHDIR:
            calls.append(("chdir", (UNKNOWN,)))
        elif op.code == OP_NO_NEW_PRIVS:
            calls.append(("prctl", (38, 1, 0, 0, 0)))   # PR_SET_NO_NEW_PRIVS
        else:
            raise ValueError(f"op {op.code} after the filter")
    # OP_FORK, the parent: a pipe, the clone, the pidfd sent, the child let go.
    calls += [("pipe2", (UNKNOWN, O_CLOEXEC)),
              ("sendmsg", (sock, UNKNOWN, MSG_NOSIGNAL)),
              ("pidfd_send_signal", (UNKNOWN, signal.SIGKILL, 0, 0)),
              ("write", (UNKNOWN, UNKNOWN, 1)),
              ("close", (UNKNOWN,)),
              ("exit_group", (0,)),
              # the child: waits for the go, a session of its own
              ("close", (sock,)),
              ("read", (UNKNOWN, UNKNOWN, 1)),
              ("setsid", ()),
              ("exit_group", (127,))]
    for fd in joins:   # OP_CGROUP_JOIN, the child
        calls += [("write", (fd, UNKNOWN, 1)), ("close", (fd,))]
    if terminal:   # OP_TERMINAL_STDIO
        calls += [("fcntl", (UNKNOWN, F_DUPFD_CLOEXEC, 3))]
        calls += [("dup3", (UNKNOWN, fd, 0)) for fd in range(3)]
        calls += [("ioctl", (0, TIOCSCTTY, 0))]
    # main(): its fds closed, READY (or a failure) reported, SIGPIPE reset, execve.
    calls += [("write", (UNKNOWN, UNKNOWN, 16)),
              ("rt_sigaction", (signal.SIGPIPE, UNKNOWN, 0, 8)),
              ("execve", (UNKNOWN, UNKNOWN, UNKNOWN))]
    return calls


def lets_fork_through(bpf: bytes, identity: Sequence[Op], sock: int, terminal: bool,
                      joins: Sequence[int] = ()) -> bool:
    """Whether pidsafe-init, having loaded ``bpf``, can take ``identity``,
    fork (the child joining the cgroups of ``joins``) and exec exactly as
    it would without the filter.

    clone3 may be refused with ENOSYS or EPERM (a profile that names no
    syscall that new makes it ENOSYS): pidsafe-init then forks with clone,
    which must be let through.  Every other call must be allowed (or
    logged).  False for whatever cannot be evaluated.
    """
    arch = sc.native_arch()
    try:
        calls = fork_calls(identity, sock, terminal, joins)
        ret = _run_named(bpf, arch, "clone3", (UNKNOWN, CLONE_ARGS_SIZE))
        if not _happens(ret):
            if ret & RET_ACTION_FULL != RET_ERRNO or ret & 0xFFFF not in (errno.ENOSYS,
                                                                           errno.EPERM):
                return False
            calls.append(("clone", (CLONE_PARENT | CLONE_PIDFD, 0, UNKNOWN, 0, 0)))
        return all(_happens(_run_named(bpf, arch, name, args)) for name, args in calls)
    except ValueError:   # cannot be evaluated here: the old order
        return False


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise ValueError(f"{value!r}: not an integer argument")
    return value


def _run_named(bpf: bytes, arch: int, name: str, args: Args) -> int:
    nr = sc.syscall_number(name)
    if nr is None or nr < 0:
        raise ValueError(f"{name}: no number here")
    return run(bpf, nr, arch, args)
