"""The only importer of ``pidsafe._libseccomp``: seccomp filters through libseccomp.

A separate extension from ``pidsafe._native`` (csrc/seccomp/): only it links
libseccomp, and it is imported only when a container asks for a filter or
``features`` is asked what pidsafe supports, so ``import pidsafe`` never
loads libseccomp.so.  When pidsafe was built without libseccomp's headers,
:func:`available` is false and every compiling call fails with ``ENOSYS``.

libseccomp (seccomp_init(3), seccomp_rule_add(3), seccomp_export_bpf(3))
builds the filter; the kernel probes are seccomp(2) calls (Linux 3.17;
SECCOMP_GET_ACTION_AVAIL 4.14) that install nothing.
"""

from __future__ import annotations

import os
from typing import Any, Optional, Sequence, Tuple

from .._lite import import_module
from ._core import check_built_for, make_oserror

try:
    _native: Any = import_module("pidsafe._libseccomp")
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "pidsafe's compiled extension pidsafe._libseccomp is missing or cannot load "
        f"libseccomp.so; reinstall pidsafe with pip: {exc}") from exc

ffi = _native.ffi
lib = _native.lib

check_built_for("pidsafe._libseccomp", ffi.string(lib.pidsafe_seccomp_version()).decode())

#: One argument comparison: (argument index, SCMP_CMP_* value, datum_a, datum_b).
Comparison = Tuple[int, int, int, int]


def available() -> bool:
    """Whether this build compiles filters (it found libseccomp's headers)."""
    return bool(lib.pidsafe_seccomp_available())


def library_version() -> Optional[Tuple[int, int, int]]:
    """The loaded libseccomp's version, or ``None`` without libseccomp."""
    v = ffi.new("unsigned int[3]")
    if lib.pidsafe_seccomp_lib_version(v, v + 1, v + 2) < 0:
        return None
    return int(v[0]), int(v[1]), int(v[2])


class Filter:
    """A libseccomp filter being built; :meth:`close` releases it.

    Raises (every method): ``OSError`` of the errno libseccomp reported,
    naming the step (``ENOSYS`` when built without libseccomp).
    """

    def __init__(self, default_action: int) -> None:
        self._ctx: Any = ffi.NULL
        ctx = lib.pidsafe_seccomp_new(default_action)
        if ctx == ffi.NULL:
            raise make_oserror(ffi.errno, "seccomp_init")
        self._ctx = ctx

    def close(self) -> None:
        ctx, self._ctx = self._ctx, ffi.NULL
        if ctx != ffi.NULL:
            lib.pidsafe_seccomp_free(ctx)

    def __enter__(self) -> "Filter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _live(self) -> Any:
        if self._ctx == ffi.NULL:
            raise ValueError("seccomp filter is closed")
        return self._ctx

    def add_arch(self, token: int) -> None:
        """seccomp_arch_add(3); the native architecture, always there, is no error."""
        if lib.pidsafe_seccomp_arch_add(self._live(), token) < 0:
            raise make_oserror(ffi.errno, "seccomp_arch_add")

    def add_rule(self, action: int, syscall: int, comparisons: Sequence[Comparison]) -> None:
        """seccomp_rule_add_array(3): ``action`` when every comparison holds."""
        cmps = ffi.new("struct pidsafe_seccomp_cmp[]", max(1, len(comparisons)))
        for i, (arg, op, a, b) in enumerate(comparisons):
            cmps[i].arg, cmps[i].op, cmps[i].datum_a, cmps[i].datum_b = arg, op, a, b
        if lib.pidsafe_seccomp_rule_add(self._live(), action, syscall, len(comparisons),
                                        cmps) < 0:
            raise make_oserror(ffi.errno, "seccomp_rule_add")

    def export_bpf(self, fd: int) -> None:
        """seccomp_export_bpf(3): write the program (struct sock_filter[]) to ``fd``."""
        if lib.pidsafe_seccomp_export_bpf(self._live(), fd) < 0:
            raise make_oserror(ffi.errno, "seccomp_export_bpf")

    def __del__(self) -> None:
        self.close()


def arch_token(name: str) -> int:
    """libseccomp's token for an architecture (``"x86_64"``), 0 if unknown to it."""
    return int(lib.pidsafe_seccomp_arch_resolve(name.encode()))


def syscall_number(name: str) -> Optional[int]:
    """The syscall's number for libseccomp, or ``None`` if it does not know the name."""
    nr = int(lib.pidsafe_seccomp_syscall_resolve(os.fsencode(name)))
    return None if nr == -1 else nr   # -1: __NR_SCMP_ERROR


def syscall_number_on(arch: int, name: str) -> Optional[int]:
    """The syscall's number on architecture ``arch`` (a token), ``None`` if unknown there."""
    nr = int(lib.pidsafe_seccomp_syscall_resolve_arch(arch, os.fsencode(name)))
    return None if nr == -1 else nr


def native_arch() -> int:
    """The token of the architecture we run on (0 without libseccomp)."""
    return int(lib.pidsafe_seccomp_arch_native())


def kernel_has_flag(flag: int) -> bool:
    """Whether seccomp(SECCOMP_SET_MODE_FILTER) takes ``flag`` (installs nothing)."""
    r = lib.pidsafe_seccomp_probe_flag(flag)
    if r < 0:
        raise make_oserror(ffi.errno, "seccomp(SECCOMP_SET_MODE_FILTER) probe")
    return bool(r)


def kernel_has_action(action: int) -> bool:
    """Whether the kernel knows a SECCOMP_RET_* action (SECCOMP_GET_ACTION_AVAIL)."""
    r = lib.pidsafe_seccomp_probe_action(action)
    if r < 0:
        raise make_oserror(ffi.errno, "seccomp(SECCOMP_GET_ACTION_AVAIL)")
    return bool(r)


__all__ = ["Comparison", "Filter", "arch_token", "available", "kernel_has_action",
           "kernel_has_flag", "library_version", "native_arch", "syscall_number",
           "syscall_number_on"]
