"""The ENOSYS stub: syscalls newer than a profile fail with ENOSYS.

A profile lists the syscalls its author knew.  A syscall added to the kernel
later is in no rule, so it gets the default action -- typically
``SCMP_ACT_ERRNO`` with EPERM.  But libc tries a new syscall and falls back
to an old one only on ENOSYS (glibc's faccessat2 -> faccessat, clone3 ->
clone ...): EPERM makes the program fail instead.  runc therefore puts a
stub in front of the filter (libcontainer/seccomp/patchbpf), and pidsafe
does the same, as its own classic BPF:

    load seccomp_data.arch
    for each architecture of the filter:
        not this arch -> next
        load seccomp_data.nr
        (x86_64: nr has the x32 bit -> the x32 check)
        nr > the largest syscall number the profile names there -> ENOSYS
        -> the filter
    -> the filter                     (an architecture the filter lacks)
    ENOSYS: return SECCOMP_RET_ERRNO | ENOSYS

"The profile names" counts every name in ``syscalls`` that libseccomp
knows on that architecture, whatever its action.  The stub only ever
returns ENOSYS or passes on to the filter: it cannot allow anything.  No
stub when the default action already lets syscalls through (ALLOW, LOG)
or is ERRNO(ENOSYS) itself, or when the program would exceed
BPF_MAXINSNS.
"""

from __future__ import annotations

import errno
import struct
from typing import Dict, List, Optional, Tuple, Union

#: struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}
INSN = struct.Struct("=HBBI")
BPF_MAXINSNS = 4096
LD_W_ABS = 0x20
JMP_JA = 0x05
JMP_JEQ_K = 0x15
JMP_JGT_K = 0x25
JMP_JSET_K = 0x45
RET_K = 0x06
#: offsetof(struct seccomp_data, nr / arch)
DATA_NR = 0
DATA_ARCH = 4
RET_ERRNO = 0x00050000
RET_ALLOW = 0x7FFF0000
RET_LOG = 0x7FFC0000
AUDIT_ARCH_X86_64 = 0xC000003E
#: libseccomp's token for x32: the kernel reports AUDIT_ARCH_X86_64 with this nr bit.
SCMP_ARCH_X32 = 0x4000003E
X32_SYSCALL_BIT = 0x40000000

Label = Union[int, str]


def needs_stub(default_action: int) -> bool:
    """Whether a filter with this default action gets the stub (see module doc)."""
    return default_action not in (RET_ALLOW, RET_LOG, RET_ERRNO | errno.ENOSYS)


def stub(maxima: Dict[int, int]) -> bytes:
    """The instructions to put before a filter.

    Args:
        maxima: architecture token (libseccomp's, which for all but x32 is
            the kernel's AUDIT_ARCH_*) -> the largest syscall number named
            there.  Architectures naming none are left out.
    """
    # Architectures as the kernel reports them: x32 is x86_64 plus a bit.
    sections: Dict[int, Tuple[Optional[int], Optional[int]]] = {}
    for token, highest in maxima.items():
        if token == SCMP_ARCH_X32:
            lo, _ = sections.get(AUDIT_ARCH_X86_64, (None, None))
            sections[AUDIT_ARCH_X86_64] = (lo, highest)
        else:
            _, x32 = sections.get(token, (None, None))
            sections[token] = (highest, x32)
    code: List[Tuple[int, Label, Label, Union[int, str]]] = []   # (op, jt, jf, k)
    labels: Dict[str, int] = {}

    def at(name: str) -> None:
        labels[name] = len(code)

    code.append((LD_W_ABS, 0, 0, DATA_ARCH))
    for i, (arch, (top, x32_top)) in enumerate(sorted(sections.items())):
        at(f"arch{i}")
        code.append((JMP_JEQ_K, 0, f"arch{i + 1}", arch))
        code.append((LD_W_ABS, 0, 0, DATA_NR))
        if arch == AUDIT_ARCH_X86_64:
            code.append((JMP_JSET_K, f"x32_{i}", 0, X32_SYSCALL_BIT))
        if top is not None:
            code.append((JMP_JGT_K, "enosys", 0, top))
        code.append((JMP_JA, 0, 0, "filter"))
        if arch == AUDIT_ARCH_X86_64:
            at(f"x32_{i}")
            if x32_top is not None:
                code.append((JMP_JGT_K, "enosys", 0, x32_top))
            code.append((JMP_JA, 0, 0, "filter"))
    at(f"arch{len(sections)}")
    code.append((JMP_JA, 0, 0, "filter"))
    at("enosys")
    code.append((RET_K, 0, 0, RET_ERRNO | errno.ENOSYS))
    at("filter")

    def rel(pc: int, target: Label) -> int:
        if isinstance(target, int):
            return target
        off = labels[target] - (pc + 1)
        assert off >= 0
        return off

    out = []
    for pc, (op, jt, jf, k) in enumerate(code):
        jt_off, jf_off = rel(pc, jt), rel(pc, jf)
        if jt_off > 255 or jf_off > 255:   # conditional jumps are 8 bits
            raise ValueError("seccomp ENOSYS stub: a conditional jump is too long")
        out.append(INSN.pack(op, jt_off, jf_off, rel(pc, k) if isinstance(k, str) else k))
    return b"".join(out)


def with_stub(program: bytes, maxima: Dict[int, int]) -> bytes:
    """``program`` behind the stub, or as it is if the result would be too long."""
    if not maxima:
        return program
    head = stub(maxima)
    if (len(head) + len(program)) // INSN.size > BPF_MAXINSNS:
        return program
    return head + program
