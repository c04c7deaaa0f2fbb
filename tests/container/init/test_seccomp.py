"""linux.seccomp: filters compiled in the parent, loaded by pidsafe-init (root)."""

from __future__ import annotations

import errno
import os
import pathlib
import signal
from typing import Any, Dict, List, Optional

import pytest

import pidsafe
from conftest import leak_check
from faults import Faults, Interrupt
from pidsafe import PIPE
from pidsafe._sys import _seccomp as sys_seccomp   # loaded before faults install
from pidsafe.container.init import _seccomp_filter as compiler

pytestmark = pytest.mark.root


def _status(pid: int) -> Dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _filters(pid: int) -> int:
    return int(_status(pid)["Seccomp_filters"])


def _seccomp(**fields: Any) -> Any:
    def edit(doc: Dict[str, Any]) -> None:
        doc["linux"]["seccomp"] = fields
    return edit


def _run(make_bundle: Any, state_dir: pathlib.Path, args: List[str], edit: Any,
         nnp: bool = True) -> "tuple[int, bytes, int]":
    """Create, start and wait: (exit status, stdout, the program's Seccomp_filters)."""
    def both(doc: Dict[str, Any]) -> None:
        edit(doc)
        doc["process"]["noNewPrivileges"] = nnp

    bundle = make_bundle(["sh", "-c", 'read x; ' + args[0]], both)
    c = pidsafe.Container.create("s", bundle, state_dir=str(state_dir), stdin=PIPE,
                                 stdout=PIPE)
    try:
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None and proc.stdin is not None
        assert c.pid is not None
        filters = _filters(c.pid)
        proc.stdin.write(b"go\n")
        proc.stdin.close()
        out = proc.stdout.read()
        return c.wait(timeout=30), out, filters
    finally:
        c.delete(force=True)


#: Enough for pidsafe-init's last steps and busybox's sh, echo, cat, touch, ls
#: (static glibc) -- and no mkdir.
BUSYBOX_ALLOW = [
    "read", "write", "readv", "writev", "open", "openat", "close", "close_range", "stat",
    "fstat", "lstat", "newfstatat", "statx", "lseek", "mmap", "munmap", "mprotect", "mremap",
    "brk", "madvise", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "ioctl", "access", "faccessat", "faccessat2", "pipe", "pipe2", "dup", "dup2", "dup3",
    "fcntl", "getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "getgroups", "setgroups", "setresuid", "setresgid", "setuid", "setgid", "capget",
    "capset", "prctl", "umask", "chdir", "fchdir", "getcwd", "execve", "execveat", "exit",
    "exit_group", "wait4", "waitid", "clone", "clone3", "fork", "vfork", "kill", "tgkill",
    "uname", "arch_prctl", "set_tid_address", "set_robust_list", "rseq", "prlimit64",
    "getrlimit", "setrlimit", "futex", "getrandom", "readlink", "readlinkat", "getdents64",
    "utimensat", "clock_gettime", "clock_nanosleep", "nanosleep", "poll", "ppoll",
    "pselect6", "select", "sysinfo", "sched_getaffinity", "sched_yield", "getpgrp",
    "setpgid", "getpgid", "setsid", "unlink", "unlinkat", "time", "gettimeofday"]


def _rule(names: List[str], action: str, errno_ret: Optional[int] = None,
          args: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    r: Dict[str, Any] = {"names": names, "action": action}
    if errno_ret is not None:
        r["errnoRet"] = errno_ret
    if args is not None:
        r["args"] = args
    return r


def test_no_filter_without_linux_seccomp(make_bundle: Any, state_dir: pathlib.Path) -> None:
    rc, out, filters = _run(make_bundle, state_dir, ["echo ok"], lambda d: None)
    assert (rc, out) == (0, b"ok\n")
    assert filters == _filters(os.getpid())   # inherited ones only (none, normally)


@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
def test_a_filter_fails_mkdir_with_the_chosen_errno(make_bundle: Any, state_dir: pathlib.Path,
                                                     nnp: bool) -> None:
    edit = _seccomp(defaultAction="SCMP_ACT_ALLOW", architectures=["SCMP_ARCH_X86_64",
                                                                   "SCMP_ARCH_X86"],
                    syscalls=[_rule(["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errno.EDQUOT)])
    rc, out, filters = _run(
        make_bundle, state_dir,
        ["touch /dev/shm/f && echo touched; mkdir /dev/shm/d 2>&1; echo rc=$?"], edit, nnp)
    assert rc == 0
    assert out == (b"touched\nmkdir: can't create directory '/dev/shm/d': "
                   + os.strerror(errno.EDQUOT).encode() + b"\nrc=1\n")
    assert filters == _filters(os.getpid()) + 1


@pytest.mark.parametrize("nnp", [True, False], ids=["no_new_privs", "privileged-load"])
def test_default_errno_with_an_allow_list(make_bundle: Any, state_dir: pathlib.Path,
                                          nnp: bool) -> None:
    edit = _seccomp(defaultAction="SCMP_ACT_ERRNO", defaultErrnoRet=errno.ENOTSUP,
                    syscalls=[_rule(BUSYBOX_ALLOW + ["a_syscall_from_the_future"],
                                    "SCMP_ACT_ALLOW")])
    rc, out, _ = _run(make_bundle, state_dir,
                      ["cat /etc/group | head -1; mkdir /dev/shm/d 2>&1; echo rc=$?"], edit,
                      nnp)
    assert rc == 0
    assert out == (b"root:x:0:\nmkdir: can't create directory '/dev/shm/d': "
                   + os.strerror(errno.ENOTSUP).encode() + b"\nrc=1\n")


def test_argument_conditions(make_bundle: Any, state_dir: pathlib.Path) -> None:
    edit = _seccomp(defaultAction="SCMP_ACT_ALLOW", syscalls=[
        # Two tests of one argument: either blocks (ORed).
        _rule(["kill"], "SCMP_ACT_ERRNO", errno.EPERM, [
            {"index": 1, "value": signal.SIGUSR1, "op": "SCMP_CMP_EQ"},
            {"index": 1, "value": signal.SIGUSR2, "op": "SCMP_CMP_EQ"}]),
        # Tests of two arguments: both must hold (ANDed).  kill(pid, sig).
        _rule(["kill"], "SCMP_ACT_ERRNO", errno.EPERM, [
            {"index": 1, "value": signal.SIGTERM, "op": "SCMP_CMP_EQ"},
            {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]),
        # openat(dirfd, path, flags): creating is refused, opening is not.
        _rule(["openat"], "SCMP_ACT_ERRNO", errno.EACCES, [
            {"index": 2, "value": os.O_CREAT, "valueTwo": os.O_CREAT,
             "op": "SCMP_CMP_MASKED_EQ"}]),
    ])
    # The shell is the container's pid 1: TERM to it matches both tests, TERM
    # to a pid that does not exist only one (so the kernel's ESRCH comes back).
    script = ("trap : USR1 USR2 TERM; kill -USR1 1 2>&1; kill -USR2 1 2>&1; "
              "kill -TERM 1 2>&1; kill -TERM 99999 2>&1; kill -0 1 && echo zero-sent; "
              "head -1 /etc/group; echo x 2>&1 >/dev/shm/new || echo create-refused")
    rc, out, _ = _run(make_bundle, state_dir, [script], edit)
    assert rc == 0
    refused = b"sh: can't kill pid 1: Operation not permitted"
    assert out.splitlines() == [refused, refused, refused,
                                b"sh: can't kill pid 99999: No such process", b"zero-sent",
                                b"root:x:0:", b"sh: can't create /dev/shm/new: Permission denied",
                                b"create-refused"]


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS"])
def test_a_kill_action_kills_with_sigsys(make_bundle: Any, state_dir: pathlib.Path,
                                         action: str) -> None:
    edit = _seccomp(defaultAction="SCMP_ACT_ALLOW",
                    syscalls=[_rule(["mkdir", "mkdirat"], action)])
    bundle = make_bundle(["mkdir", "/dev/shm/d"], edit)
    c = pidsafe.Container.create("k", bundle, state_dir=str(state_dir))
    try:
        c.start()
        assert c.wait(timeout=30) == -signal.SIGSYS
    finally:
        c.delete(force=True)


def test_exec_gets_the_container_filter(make_bundle: Any, state_dir: pathlib.Path) -> None:
    edit = _seccomp(defaultAction="SCMP_ACT_ALLOW",
                    syscalls=[_rule(["mkdir", "mkdirat"], "SCMP_ACT_ERRNO", errno.EDQUOT)])
    c = pidsafe.Container.create("x", make_bundle(["sleep", "1000"], edit),
                                 state_dir=str(state_dir))
    try:
        c.start()
        base = _filters(os.getpid())
        for nnp in (True, False):
            assert c.pid is not None
            proc = c.spec().process
            spec_proc = proc.replace(
                args=("sh", "-c", "read x; mkdir /dev/shm/d 2>&1; touch /dev/shm/f; "
                            "echo rc=$?"), no_new_privileges=nnp)
            with c.exec_process(spec_proc, exec_id=f"e{nnp}", stdin=PIPE, stdout=PIPE) as e:
                assert e.stdin is not None and e.stdout is not None
                assert _filters(e.pid) == base + 1
                e.stdin.write(b"go\n")
                e.stdin.close()
                assert e.stdout.read() == (b"mkdir: can't create directory '/dev/shm/d': "
                                           + os.strerror(errno.EDQUOT).encode() + b"\nrc=0\n")
                assert e.wait(timeout=30) == 0
    finally:
        c.delete(force=True)


@pytest.mark.parametrize("refused", [["mkdir", "mkdirat"], ["mkdir", "mkdirat", "clone3"],
                                     ["mkdir", "mkdirat", "clone", "clone3"]],
                         ids=["fork-let-through", "clone3-refused", "clone-and-clone3-refused"])
def test_an_exec_loading_its_filter_while_privileged_runs_whether_it_may_fork_or_not(
        make_bundle: Any, state_dir: pathlib.Path, refused: List[str]) -> None:
    """Without no_new_privileges the filter is loaded before the exec's
    user and capabilities.  pidsafe-init then forks under it (clone when
    clone3 is refused) if it lets that through, and forks first otherwise:
    the exec runs, as its user, under the filter, either way."""
    def edit(doc: Dict[str, Any]) -> None:
        _seccomp(defaultAction="SCMP_ACT_ALLOW",
                 syscalls=[_rule(refused, "SCMP_ACT_ERRNO", errno.EDQUOT)])(doc)
        doc["process"]["noNewPrivileges"] = False

    c = pidsafe.Container.create("x", make_bundle(["sleep", "1000"], edit),
                                 state_dir=str(state_dir))
    try:
        c.start()
        spec_proc = c.spec().process.replace(   # (no shell: it could not fork)
            args=("cat", "/proc/self/status"),
            user=c.spec().process.user.replace(uid=1000, gid=1000))
        with c.exec_process(spec_proc, exec_id="e", stdout=PIPE) as e:
            assert e.stdout is not None
            status = dict(line.split(":\t", 1) for line in e.stdout.read().decode().splitlines()
                          if ":\t" in line)
            assert status["Uid"].split() == ["1000"] * 4 and status["Gid"].split() == ["1000"] * 4
            assert status["CapEff"] == status["CapPrm"] == "0000000000000000"
            assert int(status["Seccomp_filters"]) == _filters(os.getpid()) + 1
            assert e.wait(timeout=30) == 0
    finally:
        c.delete(force=True)


BAD = [
    ({"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction", False),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]},
     "linux.seccomp.architectures[0]", False),
    ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_EVERYTHING"]},
     "linux.seccomp.flags[0]", False),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_ROUGHLY"}]}]},
     "linux.seccomp.syscalls[0].args[0].op", False),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["kill"], "action": "SCMP_ACT_NOTIFY"}]},
     "linux.seccomp.syscalls[0].action", True),
    ({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/agent.sock"},
     "linux.seccomp.listenerPath", True),
]


@pytest.mark.parametrize("seccomp, where, unsupported", BAD, ids=[b[1] for b in BAD])
def test_a_bad_seccomp_config_leaves_nothing_behind(make_bundle: Any, state_dir: pathlib.Path,
                                                    seccomp: Dict[str, Any], where: str,
                                                    unsupported: bool) -> None:
    bundle = make_bundle(["true"], lambda d: d["linux"].update(seccomp=seccomp))
    with pytest.raises(pidsafe.ConfigError) as info:
        pidsafe.Container.create("bad", bundle, state_dir=str(state_dir))
    assert info.value.json_path == where
    assert isinstance(info.value, pidsafe.UnsupportedConfigError) == unsupported
    assert os.listdir(state_dir) == []


#: A filter whose compiling takes every libseccomp step: an extra architecture,
#: a rule with arguments, a rule without, the export.
_SWEPT = _seccomp(defaultAction="SCMP_ACT_ALLOW", architectures=["SCMP_ARCH_X86"],
                  syscalls=[_rule(["mkdir"], "SCMP_ACT_ERRNO", errno.EDQUOT),
                            _rule(["kill"], "SCMP_ACT_ERRNO", errno.EPERM,
                                  [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}])])


def _seccomp_calls(calls: List[str]) -> List[int]:
    return [k for k, name in enumerate(calls, 1) if name.startswith("pidsafe_seccomp_")]


def test_compile_failures_at_create_leave_nothing_behind(faults: Faults, make_bundle: Any,
                                                         state_dir: pathlib.Path) -> None:
    bundle = make_bundle(["true"], _SWEPT)

    def create() -> pidsafe.Container:
        return pidsafe.Container.create("f", bundle, state_dir=str(state_dir))

    made = []
    faults.count(lambda: made.append(create()))
    made.pop().delete(force=True)
    calls = list(faults.calls)
    ks = _seccomp_calls(calls)
    assert {calls[k - 1] for k in ks} == {
        "pidsafe_seccomp_new", "pidsafe_seccomp_arch_add", "pidsafe_seccomp_rule_add",
        "pidsafe_seccomp_export_bpf"}, calls
    for k in ks:
        with leak_check(f"create with call {k} ({calls[k - 1]}) failed"):
            with faults.fail_at(k, errno.ENOMEM), \
                    pytest.raises(pidsafe.ContainerError) as info:
                create()
            assert info.value.errno == errno.ENOMEM
            assert info.value.field.startswith("linux.seccomp"), info.value
            assert "compile the seccomp filter" in str(info.value)
            assert os.listdir(state_dir) == []
        with leak_check(f"create with call {k} ({calls[k - 1]}) interrupted"):
            with faults.interrupt_at(k), pytest.raises(Interrupt):
                create()
            assert os.listdir(state_dir) == []


def test_compile_failures_at_exec_leave_the_container_running(
        faults: Faults, make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("x", make_bundle(["sleep", "1000"], _SWEPT),
                                 state_dir=str(state_dir))
    try:
        c.start()
        def run(exec_id: str) -> int:
            with c.exec(["true"], exec_id=exec_id) as p:
                return p.wait(timeout=30)

        n = faults.count(lambda: run("probe"))
        calls = list(faults.calls)
        assert n and _seccomp_calls(calls)
        for k in _seccomp_calls(calls):
            with leak_check(f"exec with call {k} ({calls[k - 1]}) failed", check_mounts=False):
                with faults.fail_at(k, errno.ENOMEM), \
                        pytest.raises(pidsafe.ContainerError) as info:
                    c.exec(["true"], exec_id=f"e{k}")
                assert info.value.field.startswith("linux.seccomp")
        assert run("after") == 0
        assert c.status() == "running"
    finally:
        c.delete(force=True)


def test_without_libseccomp_seccomp_is_refused_by_name(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys_seccomp, "available", lambda: False)
    bundle = make_bundle(["true"], _seccomp(defaultAction="SCMP_ACT_ALLOW"))
    with pytest.raises(pidsafe.UnsupportedConfigError) as info:
        pidsafe.Container.create("n", bundle, state_dir=str(state_dir))
    assert info.value.json_path == "linux.seccomp"
    assert "libseccomp-dev" in str(info.value)
    assert os.listdir(state_dir) == []


@pytest.mark.parametrize("nnp", [True, False], ids=["at-start", "at-create"])
def test_a_program_the_kernel_refuses_is_reported_as_linux_seccomp(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        nnp: bool) -> None:
    # BPF_LD|BPF_W|BPF_ABS past struct seccomp_data: the kernel's checker says EINVAL.
    bad = compiler.SeccompProgram(0, bytes([0x20, 0, 0, 0, 0xFF, 0xFF, 0, 0]))
    monkeypatch.setattr(compiler, "compile_filter", lambda spec: bad)

    def edit(doc: Dict[str, Any]) -> None:
        _seccomp(defaultAction="SCMP_ACT_ALLOW")(doc)
        doc["process"]["noNewPrivileges"] = nnp

    bundle = make_bundle(["true"], edit)
    if not nnp:   # loaded before the capabilities are dropped: create fails
        with pytest.raises(pidsafe.ContainerError) as info:
            pidsafe.Container.create("b", bundle, state_dir=str(state_dir))
        assert os.listdir(state_dir) == []
    else:         # loaded after the gate: start learns it
        c = pidsafe.Container.create("b", bundle, state_dir=str(state_dir))
        try:
            with pytest.raises(pidsafe.ContainerError) as info:
                c.start()
        finally:
            c.delete(force=True)
    assert info.value.errno == errno.EINVAL and info.value.field == "linux.seccomp"
    assert "load the seccomp filter" in str(info.value)


def test_compiled_programs_skip_unknown_names_and_default_actions() -> None:
    from pidsafe.container.config._seccomp import SeccompSpec, SeccompSyscall

    # (Both name mkdir: the ENOSYS stub in front of them is the same.)
    plain = compiler.compile_filter(SeccompSpec("SCMP_ACT_ERRNO", syscalls=(
        SeccompSyscall(("mkdir",), "SCMP_ACT_ERRNO", errno.EPERM),)))
    same = compiler.compile_filter(SeccompSpec("SCMP_ACT_ERRNO", syscalls=(
        SeccompSyscall(("no_such_syscall_yet",), "SCMP_ACT_ALLOW"),
        SeccompSyscall(("mkdir", "no_such_syscall_either"), "SCMP_ACT_ERRNO", errno.EPERM))))
    assert plain == same and len(plain.bpf) % 8 == 0 and plain.flags == 0
    other = compiler.compile_filter(SeccompSpec("SCMP_ACT_ERRNO", flags=(
        "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"), syscalls=(
        SeccompSyscall(("mkdir",), "SCMP_ACT_ERRNO", errno.EDQUOT),)))
    assert other.flags == 3 and other.bpf != plain.bpf
