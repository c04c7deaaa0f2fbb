"""The calling process's own flags and capabilities: prctl(2), capget(2), capset(2).

For the parent only: a subreaper-mode Reaper sets ``PR_SET_CHILD_SUBREAPER``,
``pidsafe doctor`` reports the effective capabilities.  (Child code sets
its own flags in C.)
"""

from __future__ import annotations

from .._value import Record
from ._core import _retry, ffi, lib

PR_GET_PDEATHSIG: int = lib.PIDSAFE_PR_GET_PDEATHSIG
PR_GET_DUMPABLE: int = lib.PIDSAFE_PR_GET_DUMPABLE
PR_SET_DUMPABLE: int = lib.PIDSAFE_PR_SET_DUMPABLE
PR_SET_CHILD_SUBREAPER: int = lib.PIDSAFE_PR_SET_CHILD_SUBREAPER
PR_GET_CHILD_SUBREAPER: int = lib.PIDSAFE_PR_GET_CHILD_SUBREAPER

#: Linux capability numbers (linux/capability.h), by name without ``CAP_``.
CAPABILITIES = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE")


def child_subreaper() -> bool:
    """prctl(PR_GET_CHILD_SUBREAPER) (Linux 3.4): whether orphans come to us."""
    out = ffi.new("int *")
    _retry("prctl(PR_GET_CHILD_SUBREAPER)", lib.pidsafe_prctl_get_int,
           PR_GET_CHILD_SUBREAPER, out)
    return bool(out[0])


def set_child_subreaper(on: bool) -> None:
    """prctl(PR_SET_CHILD_SUBREAPER) (Linux 3.4)."""
    _retry("prctl(PR_SET_CHILD_SUBREAPER)", lib.pidsafe_prctl, PR_SET_CHILD_SUBREAPER,
           int(bool(on)))


def dumpable() -> bool:
    """prctl(PR_GET_DUMPABLE): whether a credential change has not made us undumpable."""
    return bool(_retry("prctl(PR_GET_DUMPABLE)", lib.pidsafe_prctl, PR_GET_DUMPABLE, 0))


def set_dumpable(on: bool) -> None:
    """prctl(PR_SET_DUMPABLE)."""
    _retry("prctl(PR_SET_DUMPABLE)", lib.pidsafe_prctl, PR_SET_DUMPABLE, int(bool(on)))


def pdeathsig() -> int:
    """prctl(PR_GET_PDEATHSIG): the signal we get when our parent dies (0: none)."""
    out = ffi.new("int *")
    _retry("prctl(PR_GET_PDEATHSIG)", lib.pidsafe_prctl_get_int, PR_GET_PDEATHSIG, out)
    return int(out[0])


class CapSets(Record):
    """A thread's capability sets: bit ``n`` is capability ``n`` (:data:`CAPABILITIES`)."""

    effective: int
    permitted: int
    inheritable: int

    def has(self, name: str) -> bool:
        """Whether capability ``name`` (``"SYS_ADMIN"``) is in the effective set."""
        return bool(self.effective >> CAPABILITIES.index(name) & 1)


def capget() -> CapSets:
    """capget(2) (Linux 2.6.26's version 3) of the calling thread."""
    c = ffi.new("struct pidsafe_capsets *")
    _retry("capget", lib.pidsafe_capget, c)
    return CapSets(int(c.effective), int(c.permitted), int(c.inheritable))


def capset(sets: CapSets) -> None:
    """capset(2) of the calling thread.

    Raises:
        PermissionError: a set would grow beyond what the rules allow.
    """
    c = ffi.new("struct pidsafe_capsets *")
    c.effective, c.permitted, c.inheritable = sets.effective, sets.permitted, sets.inheritable
    _retry("capset", lib.pidsafe_capset, c)
