"""The ENOSYS stub before a compiled seccomp filter (pidsafe/container/init/_seccomp_enosys.py).

Programs are run through a small classic-BPF interpreter over a
``struct seccomp_data``, with and without the stub: the stub may only
turn "newer than the profile" into ENOSYS and must change nothing else.
A container then shows it end to end (root).
"""

from __future__ import annotations

import errno
import pathlib
import shutil
import struct
import subprocess
from typing import Any, Dict, Tuple

import pytest

import pidsafe
from pidsafe import PIPE
from pidsafe._sys import _seccomp as sc
from pidsafe.container.init import _seccomp_filter as compiler
from pidsafe.container.init import _seccomp_enosys as enosys
from pidsafe.container.config._seccomp import SeccompSpec, SeccompSyscall

X86_64 = enosys.AUDIT_ARCH_X86_64
I386 = 0x40000003
AARCH64 = 0xC00000B7
X32 = enosys.X32_SYSCALL_BIT
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
ALLOW = 0x7FFF0000

pytestmark = pytest.mark.skipif(not sc.available(), reason="built without libseccomp")


def run_bpf(program: bytes, arch: int, nr: int, args: Tuple[int, ...] = (0,) * 6) -> int:
    """What seccomp returns for this syscall (the classic BPF libseccomp emits)."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, *args)
    insns = [enosys.INSN.unpack_from(program, i) for i in range(0, len(program), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    while True:
        op, jt, jf, k = insns[pc]
        pc += 1
        cls = op & 0x07
        if op == 0x20:
            a = struct.unpack_from("=I", data, k)[0]
        elif op == 0x00:
            a = k
        elif op == 0x60:
            a = mem[k]
        elif op == 0x61:
            x = mem[k]
        elif op == 0x02:
            mem[k] = a
        elif op == 0x03:
            mem[k] = x
        elif op == 0x07:
            x = a
        elif op == 0x87:
            a = x
        elif op == 0x54:
            a &= k
        elif op == 0x5C:
            a &= x
        elif op == 0x05:
            pc += k
        elif cls == 0x05 and op & 0xF0 in (0x10, 0x20, 0x30, 0x40):
            src = x if op & 0x08 else k
            test = {0x10: a == src, 0x20: a > src, 0x30: a >= src,
                    0x40: bool(a & src)}[op & 0xF0]
            pc += jt if test else jf
        elif op == 0x06:
            return k
        elif op == 0x16:
            return a
        else:
            raise AssertionError(f"opcode {op:#x} at {pc - 1} not in this interpreter")


def _compile(spec: SeccompSpec, monkeypatch: pytest.MonkeyPatch, stub: bool) -> bytes:
    with monkeypatch.context() as m:
        if not stub:
            m.setattr(compiler, "needs_stub", lambda default: False)
        return compiler.compile_filter(spec).bpf


NAMES = ("read", "mkdir", "openat")   # x86_64: 0, 83, 257; i386: 3, 39, 295


def test_newer_syscalls_get_enosys_and_nothing_else_changes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SeccompSpec("SCMP_ACT_ERRNO", architectures=("SCMP_ARCH_X86",), syscalls=(
        SeccompSyscall(NAMES, "SCMP_ACT_ALLOW"),
        SeccompSyscall(("not_a_syscall_yet",), "SCMP_ACT_ALLOW")))
    plain, patched = (_compile(spec, monkeypatch, s) for s in (False, True))
    assert len(patched) > len(plain)
    expect: Dict[Tuple[int, int], int] = {
        (X86_64, 0): ALLOW, (X86_64, 257): ALLOW, (X86_64, 39): EPERM,
        (X86_64, 258): ENOSYS, (X86_64, 462): ENOSYS, (X86_64, 0x3FFFFFFF): ENOSYS,
        (I386, 3): ALLOW, (I386, 295): ALLOW, (I386, 20): EPERM, (I386, 296): ENOSYS,
        (I386, 1000): ENOSYS}
    for (arch, nr), want in expect.items():
        assert run_bpf(patched, arch, nr) == want, (hex(arch), nr)
        if want != ENOSYS:
            assert run_bpf(plain, arch, nr) == want, (hex(arch), nr)
        else:
            assert run_bpf(plain, arch, nr) == EPERM   # what the stub is for
    # x32 (not in the filter) and other architectures: the filter decides, as before.
    for arch, nr in ((X86_64, X32 | 0), (X86_64, X32 | 5000), (AARCH64, 1), (AARCH64, 5000)):
        assert run_bpf(patched, arch, nr) == run_bpf(plain, arch, nr) != ENOSYS


def test_x32_has_its_own_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = SeccompSpec("SCMP_ACT_ERRNO", architectures=("SCMP_ARCH_X32",), syscalls=(
        SeccompSyscall(NAMES, "SCMP_ACT_ALLOW"),))
    patched = _compile(spec, monkeypatch, True)
    assert run_bpf(patched, X86_64, X32 | 257) == ALLOW
    assert run_bpf(patched, X86_64, X32 | 39) == EPERM
    assert run_bpf(patched, X86_64, X32 | 258) == ENOSYS
    assert run_bpf(patched, X86_64, 258) == ENOSYS


@pytest.mark.parametrize("default, errno_ret", [("SCMP_ACT_ALLOW", None),
                                                ("SCMP_ACT_LOG", None),
                                                ("SCMP_ACT_ERRNO", errno.ENOSYS)])
def test_no_stub_when_the_default_lets_newer_syscalls_through(
        monkeypatch: pytest.MonkeyPatch, default: str, errno_ret: Any) -> None:
    spec = SeccompSpec(default, errno_ret, syscalls=(
        SeccompSyscall(("mkdir",), "SCMP_ACT_ERRNO", errno.EDQUOT),))
    assert _compile(spec, monkeypatch, True) == _compile(spec, monkeypatch, False)


def test_the_stub_gives_way_to_bpf_maxinsns() -> None:
    program = b"\0" * 8 * enosys.BPF_MAXINSNS
    assert enosys.with_stub(program, {X86_64: 10}) == program
    assert enosys.with_stub(program[:80], {}) == program[:80]
    assert enosys.with_stub(program[:80], {X86_64: 10}).endswith(program[:80])


PROGRAM = r"""
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        long r = syscall(atol(argv[i]), -1L, -1L, -1L);
        printf("%s:%s\n", argv[i], r < 0 ? (errno == ENOSYS ? "ENOSYS" : errno == EPERM
                                             ? "EPERM" : "other") : "ok");
    }
    return 0;
}
"""


@pytest.mark.root
def test_a_container_sees_enosys_for_syscalls_newer_than_its_profile(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("needs gcc (scripts/bootstrap.sh installs it)")
    src = tmp_path / "sysno.c"
    src.write_text(PROGRAM)
    binary = tmp_path / "sysno"
    subprocess.run([gcc, "-static", "-O1", "-o", str(binary), str(src)], check=True)
    # Enough for a static glibc program to start, print and exit; the newest
    # is openat (257): mkdir (83) is older and unlisted, 1000 newer than all.
    allow = ["read", "write", "openat", "close", "fstat", "newfstatat", "brk", "mmap",
             "munmap", "mprotect", "arch_prctl", "set_tid_address", "set_robust_list",
             "prlimit64", "readlink", "getrandom", "uname", "execve", "exit", "exit_group",
             "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "ioctl", "futex", "chdir",
             "getpid"]

    def edit(doc: Dict[str, Any]) -> None:
        doc["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO",
                                   "syscalls": [{"names": allow, "action": "SCMP_ACT_ALLOW"}]}

    bundle = make_bundle(["/sysno", "83", "1000", "39"], edit)
    shutil.copy2(binary, bundle / "rootfs" / "sysno")
    c = pidsafe.Container.create("n", bundle, state_dir=str(state_dir), stdout=PIPE)
    try:
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None
        out = proc.stdout.read().decode().split()
        assert c.wait(timeout=30) == 0
    finally:
        c.delete(force=True)
    # mkdir: older than openat, not listed -> the default (EPERM); 1000: newer
    # than every syscall the profile names -> ENOSYS; getpid: listed -> runs.
    assert out == ["83:EPERM", "1000:ENOSYS", "39:ok"]
