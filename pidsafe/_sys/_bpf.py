"""bpf(2): load a program and attach it to a cgroup (csrc/native/bpf.h).

Only what a cgroup v2 device filter needs; the program itself is
generated above (``pidsafe.container``).
"""

from __future__ import annotations

from ._core import _retry, ffi, lib

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional

BPF_PROG_TYPE_CGROUP_DEVICE: int = lib.PIDSAFE_BPF_PROG_TYPE_CGROUP_DEVICE
BPF_CGROUP_DEVICE: int = lib.PIDSAFE_BPF_CGROUP_DEVICE
BPF_F_ALLOW_MULTI: int = lib.PIDSAFE_BPF_F_ALLOW_MULTI
#: The size of one instruction (struct bpf_insn).
BPF_INSN_SIZE = 8


def bpf_prog_load(prog_type: int, insns: bytes, license: str, name: str,
                  log: Optional[bytearray] = None) -> int:
    """bpf(BPF_PROG_LOAD) (Linux 3.18): the loaded program's fd (close-on-exec).

    Args:
        prog_type: ``BPF_PROG_TYPE_*``.
        insns: the program, ``struct bpf_insn`` after ``struct bpf_insn``.
        license: what the kernel checks helper use against.
        name: the program's name (at most 15 characters).
        log: filled with the verifier's log (NUL-terminated), if given:
            on failure it says why the program was refused.

    Raises:
        OSError: ``EACCES``/``EINVAL`` (the verifier refused it), ``EPERM``
            (no ``CAP_BPF``/``CAP_SYS_ADMIN``), ``ENOSYS`` (no bpf(2), or
            this build's headers had no number for it).
        ValueError: ``insns`` is not whole instructions.
    """
    if not insns or len(insns) % BPF_INSN_SIZE:
        raise ValueError(f"bpf_prog_load: {len(insns)} bytes are not whole instructions")
    log_c = ffi.from_buffer(log, require_writable=True) if log else ffi.NULL
    return _retry("bpf(BPF_PROG_LOAD)", lib.pidsafe_bpf_prog_load, prog_type,
                  ffi.from_buffer(insns), len(insns) // BPF_INSN_SIZE, license.encode(),
                  name.encode(), log_c, len(log) if log else 0)


def bpf_prog_attach(target_fd: int, prog_fd: int, attach_type: int, flags: int = 0) -> None:
    """bpf(BPF_PROG_ATTACH) (Linux 4.10): attach ``prog_fd`` to ``target_fd`` (a cgroup).

    Raises:
        OSError: ``EPERM``, ``EINVAL`` (a wrong attach type), ``EBADF``.
    """
    _retry("bpf(BPF_PROG_ATTACH)", lib.pidsafe_bpf_prog_attach, target_fd, prog_fd,
           attach_type, flags)
