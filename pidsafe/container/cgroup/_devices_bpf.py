"""Device rules on cgroup v2: an eBPF program (BPF_PROG_TYPE_CGROUP_DEVICE).

cgroup v2 has no devices.allow/devices.deny: the kernel asks the
BPF_CGROUP_DEVICE programs attached to the task's v2 cgroup and to its
ancestors, and every one must allow (Linux 4.15).  The hook runs for the
task's v2 cgroup whatever the v1 hierarchies are, so on a hybrid machine it
works too.

The program is generated here, as runc's ``devicefilter`` does.  Its
context is ``struct bpf_cgroup_dev_ctx {u32 access_type; u32 major; u32
minor;}``, with the device type (``BPF_DEVCG_DEV_BLOCK`` 1, ``_CHAR`` 2) in
the low 16 bits of ``access_type`` and the access (``MKNOD`` 1, ``READ`` 2,
``WRITE`` 4) in the high 16.  It returns 1 to allow, 0 to deny.

The rules keep exactly their v1 meaning: they are first played through
v1's own algorithm (:func:`effective`, as runc's devices emulator does),
and the program then checks the resulting exceptions against the default.
Loading and attaching it are bpf(2) calls through ``pidsafe._sys``.
"""

from __future__ import annotations

import errno
import os
import struct
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from ... import _sys
from ..._sigsafe import critical
from ...errors import CgroupError, cgroup_error
from ..config import DeviceRule

_DEV_TYPE = {"b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}

# Opcodes (linux/bpf_common.h, linux/bpf.h).
_LDX_MEM_W = 0x61      # dst = *(u32 *)(src + off)
_AND_K = 0x57          # dst &= imm (64-bit)
_RSH_K = 0x77          # dst >>= imm
_MOV_K = 0xB7          # dst = imm
_MOV_X = 0xBF          # dst = src
_JNE_K = 0x55          # if dst != imm: pc += off
_JEQ_K = 0x15          # if dst == imm: pc += off
_EXIT = 0x95

Insn = Tuple[int, int, int, int, int]   # code, dst, src, off, imm


def _encode(insns: Sequence[Insn]) -> bytes:
    out = b""
    for code, dst, src, off, imm in insns:
        regs = (dst | src << 4) if sys.byteorder == "little" else (dst << 4 | src)
        out += struct.pack("=BBhi", code, regs, off, imm)
    return out


Entry = Tuple[str, Optional[int], Optional[int], int]   # type, major, minor, access


def effective(rules: Sequence[DeviceRule]) -> Tuple[bool, List[Entry]]:
    """What v1 makes of ``rules``: the default verdict and its exceptions.

    As devcgroup_update_access() does: a rule for every device (type
    ``a``) sets the default and clears the exceptions; a rule that agrees
    with the default takes its access bits away from the exception with
    exactly the same type, major and minor (wildcards are values here, not
    patterns); a rule that disagrees adds its bits to that exception.
    """
    default = True      # a new v1 cgroup inherits allow-all from the root
    table: Dict[Tuple[str, Optional[int], Optional[int]], int] = {}
    for r in rules:
        if r.type == "a":
            default = r.allow
            table.clear()
            continue
        key, bits = (r.type, r.major, r.minor), sum(_ACCESS[a] for a in r.access)
        if r.allow == default:
            left = table.get(key, 0) & ~bits
            if left:
                table[key] = left
            else:
                table.pop(key, None)
        else:
            table[key] = table.get(key, 0) | bits
    return default, [(t, ma, mi, bits) for (t, ma, mi), bits in table.items()]


def _block(ex: Entry, default: bool) -> Optional[List[Insn]]:
    """If the request falls under exception ``ex``, return the opposite of the default."""
    kind, major, minor, bits = ex
    body: List[Insn] = [(_JNE_K, 2, 0, -1, _DEV_TYPE[kind])]
    for reg, number in ((4, major), (5, minor)):
        if number is not None:
            if number > 0x7FFFFFFF:
                return None     # no device has such a number: never matches
            body.append((_JNE_K, reg, 0, -1, number))
    if default:
        # Denied if any requested access is one the exception names.
        body += [(_MOV_X, 1, 3, 0, 0), (_AND_K, 1, 0, 0, bits), (_JEQ_K, 1, 0, -1, 0)]
    elif bits != 7:
        # Allowed only if every requested access is one the exception names.
        body += [(_MOV_X, 1, 3, 0, 0), (_AND_K, 1, 0, 0, 7 & ~bits), (_JNE_K, 1, 0, -1, 0)]
    body += [(_MOV_K, 0, 0, 0, int(not default)), (_EXIT, 0, 0, 0, 0)]
    # Every "-1" offset jumps past the end of this block.
    return [(c, d, s, len(body) - n - 1 if off == -1 else off, imm)
            for n, (c, d, s, off, imm) in enumerate(body)]


def program(rules: Sequence[DeviceRule]) -> List[Insn]:
    """The eBPF instructions for ``rules`` (see :func:`effective`)."""
    default, exceptions = effective(rules)
    insns: List[Insn] = [
        (_LDX_MEM_W, 2, 1, 0, 0), (_AND_K, 2, 0, 0, 0xFFFF),   # r2 = type
        (_LDX_MEM_W, 3, 1, 0, 0), (_RSH_K, 3, 0, 0, 16),       # r3 = access
        (_LDX_MEM_W, 4, 1, 4, 0),                               # r4 = major
        (_LDX_MEM_W, 5, 1, 8, 0),                               # r5 = minor
    ]
    for ex in exceptions:
        block = _block(ex, default)
        if block is not None:
            insns += block
    return insns + [(_MOV_K, 0, 0, 0, int(default)), (_EXIT, 0, 0, 0, 0)]


def attach_device_filter(cgroup_dir: str, rules: Sequence[DeviceRule]) -> None:
    """Load the program for ``rules`` and attach it to the v2 ``cgroup_dir``.

    The cgroup keeps the program (removing the cgroup frees it); the
    program's fd is closed at once.  ``BPF_F_ALLOW_MULTI``: programs on
    ancestors (systemd's, say) still apply too.

    Raises:
        CgroupError: loading (the verifier's log is in the message) or
            attaching failed; ``ENOSYS`` without bpf(2).
    """
    code = _encode(program(rules))
    log = bytearray(1 << 16)
    dfd = prog = -1
    try:
        with critical:
            try:
                prog = _sys.bpf_prog_load(_sys.BPF_PROG_TYPE_CGROUP_DEVICE, code, "Apache-2.0",
                                          "pidsafe_devices", log)
            except OSError as exc:
                verifier = log.split(b"\0", 1)[0].decode(errors="replace").strip()[-400:]
                raise cgroup_error(exc.errno or errno.EIO, "unable to load the device filter "
                                   "for linux.resources.devices (bpf BPF_PROG_LOAD)",
                                   cgroup_dir, verifier) from None
            dfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        _sys.bpf_prog_attach(dfd, prog, _sys.BPF_CGROUP_DEVICE, _sys.BPF_F_ALLOW_MULTI)
    except CgroupError:
        raise
    except OSError as exc:
        raise cgroup_error(exc.errno or errno.EIO, f"unable to attach the device filter "
                           f"to {cgroup_dir} (bpf BPF_PROG_ATTACH)", cgroup_dir) from None
    finally:
        with critical:
            for fd in (dfd, prog):
                if fd >= 0:
                    os.close(fd)
