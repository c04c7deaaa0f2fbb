"""``linux.seccomp`` compiled, in the parent, into the program pidsafe-init loads.

libseccomp (through ``pidsafe._sys.seccomp``) turns the checked
:class:`SeccompSpec` into a classic BPF program (``struct sock_filter[]``);
pidsafe-init, which links no libseccomp, loads those bytes with seccomp(2)
(csrc/init/seccomp.c, op ``OP_SECCOMP``).  Compiling in the parent means
every mistake libseccomp finds is reported before the container exists.

What pidsafe does the way runc does, so that profiles written for it work:

* a syscall name libseccomp does not know is skipped (profiles list
  syscalls newer than the library; the kernel would not have them either);
* a rule whose action is the default action is skipped (libseccomp refuses
  it, and it changes nothing);
* the conditions of one rule are ANDed, unless two of them test the same
  argument: then each condition is a rule of its own, ORed (libseccomp
  cannot AND two tests of one argument);
* ``SCMP_ACT_ERRNO``/``SCMP_ACT_TRACE`` without ``errnoRet`` use ``EPERM``;
* a syscall newer than every one the profile names fails with ENOSYS, not
  the default action, so that libc falls back to an older one
  (:mod:`._seccomp_enosys`).
"""

from __future__ import annotations

import errno
import os
from typing import Any, Dict, List

from ..._sigsafe import critical
from ..._sys import seccomp as sc
from ..._value import Record
from ...errors import UnsupportedConfigError, container_error
from ..config import (ACTIONS, ARCHITECTURES, ERRNO_ACTIONS, FLAGS, OPERATORS, SeccompSpec,
                      SeccompSyscall)
from ._seccomp_enosys import needs_stub, with_stub

FIELD = "linux.seccomp"
_STEP = "compile the seccomp filter"
#: sizeof(struct sock_filter)
BPF_INSN_SIZE = 8


class SeccompProgram(Record):
    """A compiled filter: seccomp(2)'s flags and the BPF instructions."""

    flags: int
    bpf: bytes


def action_value(name: str, errno_ret: "int | None") -> int:
    """The SECCOMP_RET_* value of an OCI action (its errno in the low 16 bits)."""
    value = ACTIONS[name]
    if name in ERRNO_ACTIONS:
        value |= (errno.EPERM if errno_ret is None else errno_ret) & 0xFFFF
    return value


def _unavailable() -> UnsupportedConfigError:
    return UnsupportedConfigError(
        FIELD, "seccomp filters: this pidsafe was built without libseccomp's headers; "
               "install libseccomp-dev and reinstall pidsafe")


def compile_filter(spec: SeccompSpec) -> SeccompProgram:
    """Compile ``spec`` with libseccomp.

    Raises:
        UnsupportedConfigError: pidsafe was built without libseccomp, or
            libseccomp does not know an architecture (its path is named).
        ContainerError: libseccomp refused a rule or failed (the field, the
            syscall and libseccomp's errno are named).
    """
    if not sc.available():
        raise _unavailable()
    default = action_value(spec.default_action, spec.default_errno_ret)
    tokens = []
    for i, arch in enumerate(spec.architectures):
        token = sc.arch_token(arch[len("SCMP_ARCH_"):].lower())
        if token == 0:
            raise UnsupportedConfigError(f"{FIELD}.architectures[{i}]",
                                         f"{arch}: unknown to this libseccomp")
        tokens.append((i, token))
    flags = 0
    for name in spec.flags:
        flags |= FLAGS[name]
    try:
        filt = sc.Filter(default)
    except OSError as exc:
        raise container_error(exc.errno or errno.EIO, f"{_STEP}: seccomp_init", None,
                              f"{FIELD}.defaultAction") from None
    with filt:
        for i, token in tokens:
            try:
                filt.add_arch(token)
            except OSError as exc:
                raise container_error(exc.errno or errno.EIO, f"{_STEP}: seccomp_arch_add",
                                      spec.architectures[i],
                                      f"{FIELD}.architectures[{i}]") from None
        for i, rule in enumerate(spec.syscalls):
            action = action_value(rule.action, rule.errno_ret)
            if action == default:
                continue
            _add_rule(filt, action, rule, f"{FIELD}.syscalls[{i}]")
        program = _export(filt)
    if needs_stub(default):
        program = with_stub(program, _maxima(spec, [sc.native_arch()] + [t for _, t in tokens]))
    return SeccompProgram(flags, program)


def _maxima(spec: SeccompSpec, arches: List[int]) -> Dict[int, int]:
    """Architecture token -> the largest syscall number ``spec`` names there."""
    names = {name for rule in spec.syscalls for name in rule.names}
    out: Dict[int, int] = {}
    for arch in dict.fromkeys(arches):
        numbers = [nr for nr in (sc.syscall_number_on(arch, n) for n in names)
                   if nr is not None and nr >= 0]   # < 0: libseccomp's pseudo numbers
        if numbers:
            out[arch] = max(numbers)
    return out


def _add_rule(filt: sc.Filter, action: int, rule: SeccompSyscall, where: str) -> None:
    cmps: List[sc.Comparison] = [(a.index, OPERATORS[a.op], a.value, a.value_two) for a in rule.args]
    indexes = [c[0] for c in cmps]
    # libseccomp cannot AND two tests of one argument: such tests are ORed.
    groups = [[c] for c in cmps] if len(set(indexes)) < len(indexes) else [cmps]
    for name in rule.names:
        nr = sc.syscall_number(name)
        if nr is None:
            continue   # newer than this libseccomp (and so, likely, the kernel)
        for group in groups:
            try:
                filt.add_rule(action, nr, group)
            except OSError as exc:
                raise container_error(exc.errno or errno.EIO, f"{_STEP}: seccomp_rule_add",
                                      name, where) from None


def _export(filt: sc.Filter) -> bytes:
    """The program's bytes, through a memfd (no pipe to fill, no file on disk)."""
    fd = -1
    try:
        # In the try: a handler raising at the section's end finds the fd
        # in the finally.
        with critical:
            fd = os.memfd_create("pidsafe-seccomp", os.MFD_CLOEXEC)
        try:
            filt.export_bpf(fd)
        except OSError as exc:
            raise container_error(exc.errno or errno.EIO, f"{_STEP}: seccomp_export_bpf",
                                  None, FIELD) from None
        size = os.lseek(fd, 0, os.SEEK_END)
        chunks: List[bytes] = []
        got = 0
        while got < size:
            chunk = os.pread(fd, size - got, got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        if fd >= 0:
            with critical:
                os.close(fd)
    data = b"".join(chunks)
    if not data or len(data) % BPF_INSN_SIZE:
        raise container_error(errno.EIO, f"{_STEP}: seccomp_export_bpf wrote {len(data)} "
                                         "bytes, not whole instructions", None, FIELD)
    return data


def seccomp_features() -> Dict[str, Any]:
    """``pidsafe-runc features``' ``linux.seccomp``: what this build and kernel can do."""
    if not sc.available():
        return {"enabled": False}
    known = sorted(FLAGS)
    return {
        "enabled": True,
        "actions": sorted(a for a, v in ACTIONS.items() if sc.kernel_has_action(v)),
        "operators": sorted(OPERATORS),
        "archs": sorted(a for a in ARCHITECTURES
                        if sc.arch_token(a[len("SCMP_ARCH_"):].lower()) != 0),
        "knownFlags": known,
        "supportedFlags": [f for f in known if sc.kernel_has_flag(FLAGS[f])],
    }
