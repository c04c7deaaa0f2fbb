"""The parent's run of a compiled seccomp filter on pidsafe-init's own last
syscalls, and the order of an exec's plan it decides."""

from __future__ import annotations

import errno
import json
import pathlib
import re
import shutil
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple

import pytest

import pidsafe
from bundles import runc_spec
from pidsafe._sys import _seccomp as sc
from pidsafe.container.config import parse_spec
from pidsafe.container.config._seccomp import SeccompArg, SeccompSpec, SeccompSyscall
from pidsafe.container.init import _seccomp_eval as ev
from pidsafe.container.init import _seccomp_filter as compiler
from pidsafe.container.init._enter import Entry, plan_exec
from pidsafe.container.init._protocol import (OP_CAP_BOUNDING, OP_CAPS, OP_CGROUP_JOIN,
                                              OP_CHDIR, OP_FORK, OP_SECCOMP, OP_USER, Op)

pytestmark = pytest.mark.skipif(not sc.available() or sc.native_arch() != 0xC000003E,
                                reason="needs libseccomp, on x86_64")

CLONE_NEWUSER = 0x10000000
#: An exec's identity as plan_exec gives it: non-root, no capabilities.
IDENTITY = [Op(OP_CAP_BOUNDING, (0,)), Op(OP_USER, (1000, 1000, 0o22, [])),
            Op(OP_CAPS, (0, 0, 0, 0)), Op(OP_CHDIR, ("/",))]
SOCK = 7


def _bpf(default: str, *rules: SeccompSyscall, default_errno: Optional[int] = None) -> bytes:
    return compiler.compile_filter(SeccompSpec(default, default_errno, syscalls=rules)).bpf


def _nr(name: str) -> int:
    nr = sc.syscall_number(name)
    assert nr is not None
    return nr


def _run(bpf: bytes, name: str, *args: Optional[int]) -> int:
    return ev.run(bpf, _nr(name), sc.native_arch(), tuple(args) + (0,) * (6 - len(args)))


def _names_before(nr: int) -> List[str]:
    """Every syscall name the kernel headers list below ``nr`` (a profile that
    knows nothing as new as it)."""
    out = []
    with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
                if int(parts[2]) < nr:
                    out.append(parts[1][len("__NR_"):])
    return out


def test_the_interpreter_returns_the_action_of_the_rule_that_matches() -> None:
    bpf = _bpf("SCMP_ACT_ALLOW",
               SeccompSyscall(("mkdir",), "SCMP_ACT_ERRNO", errno.EDQUOT),
               SeccompSyscall(("rmdir",), "SCMP_ACT_KILL_PROCESS"),
               SeccompSyscall(("kill",), "SCMP_ACT_ERRNO", errno.EPERM,
                              (SeccompArg(1, 15, "SCMP_CMP_EQ"),)),
               SeccompSyscall(("clone",), "SCMP_ACT_ERRNO", errno.EACCES,
                              (SeccompArg(0, CLONE_NEWUSER, "SCMP_CMP_MASKED_EQ",
                                          CLONE_NEWUSER),)),
               SeccompSyscall(("umask",), "SCMP_ACT_LOG", None,
                              (SeccompArg(0, 0o77, "SCMP_CMP_GT"),)))
    assert _run(bpf, "getpid") == ev.RET_ALLOW
    assert _run(bpf, "mkdir", 0, 0o755) == ev.RET_ERRNO | errno.EDQUOT
    assert _run(bpf, "rmdir", 0) == 0x80000000   # SECCOMP_RET_KILL_PROCESS
    assert _run(bpf, "kill", 1, 15) == ev.RET_ERRNO | errno.EPERM
    assert _run(bpf, "kill", 1, 9) == ev.RET_ALLOW
    assert _run(bpf, "clone", CLONE_NEWUSER | 17) == ev.RET_ERRNO | errno.EACCES
    assert _run(bpf, "clone", 0x8000 | 0x1000) == ev.RET_ALLOW
    assert _run(bpf, "umask", 0o777) == ev.RET_LOG
    assert _run(bpf, "umask", 0o22) == ev.RET_ALLOW
    # Another architecture than the filter's: libseccomp's "bad arch" action.
    assert ev.run(bpf, _nr("getpid"), 0x40000028, (0,) * 6) == 0   # KILL_THREAD
    # A test of an argument the parent cannot know is no answer.
    with pytest.raises(ValueError):
        _run(bpf, "kill", None, None)


def test_the_enosys_stub_answers_for_syscalls_newer_than_the_profile() -> None:
    bpf = _bpf("SCMP_ACT_ERRNO", SeccompSyscall(("getpid", "clone"), "SCMP_ACT_ALLOW"))
    assert _run(bpf, "getpid") == ev.RET_ALLOW
    assert _run(bpf, "clone3") == ev.RET_ERRNO | errno.ENOSYS
    assert _run(bpf, "dup") == ev.RET_ERRNO | errno.EPERM   # older: the default


@pytest.mark.parametrize("insn", [
    struct.pack("=HBBI", 0x28, 0, 0, 0),   # LD|H|ABS
    struct.pack("=HBBI", 0x16, 0, 0, 0),   # RET|A
    struct.pack("=HBBI", 0x20, 0, 0, 64),  # past seccomp_data
    struct.pack("=HBBI", 0x20, 0, 0, 8),   # the instruction pointer
    struct.pack("=HBBI", 0x05, 0, 0, 5),   # a jump out of the program
], ids=["ld-half", "ret-a", "past-the-data", "ip", "jump-out"])
def test_what_the_interpreter_does_not_know_is_no_answer(insn: bytes) -> None:
    with pytest.raises(ValueError):
        ev.run(insn + struct.pack("=HBBI", 0x06, 0, 0, ev.RET_ALLOW), 39, 0xC000003E, (0,) * 6)
    assert not ev.lets_fork_through(insn + struct.pack("=HBBI", 0x06, 0, 0, ev.RET_ALLOW),
                                    IDENTITY, SOCK, False)


NO_CLONE3 = [n for n in _names_before(_nr("clone3")) if n != "clone3"]

PROFILES: List[Tuple[str, bytes, bool]] = [
    ("default-allow-with-denies", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("mkdir", "mkdirat", "ptrace"), "SCMP_ACT_ERRNO", errno.EPERM)), True),
    ("runc-like-no-clone3", _bpf("SCMP_ACT_ERRNO", SeccompSyscall(
        tuple(NO_CLONE3), "SCMP_ACT_ALLOW")), True),
    ("docker-like-clone-by-flags", _bpf(
        "SCMP_ACT_ERRNO",
        SeccompSyscall(tuple(n for n in NO_CLONE3 if n != "clone"), "SCMP_ACT_ALLOW"),
        SeccompSyscall(("clone",), "SCMP_ACT_ALLOW", None,
                       (SeccompArg(0, 0x7E020000, "SCMP_CMP_MASKED_EQ", 0),)),
        SeccompSyscall(("clone3",), "SCMP_ACT_ERRNO", errno.ENOSYS)), True),
    ("logged", _bpf("SCMP_ACT_LOG"), True),
    ("clone3-and-clone-refused", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("clone", "clone3"), "SCMP_ACT_ERRNO", errno.EPERM)), False),
    ("clone3-refused-not-with-enosys", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("clone3",), "SCMP_ACT_ERRNO", errno.EACCES)), False),
    ("clone3-kills", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(("clone3",), "SCMP_ACT_KILL")),
     False),
    ("clone-by-our-flags", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("clone3",), "SCMP_ACT_ERRNO", errno.ENOSYS), SeccompSyscall(
        ("clone",), "SCMP_ACT_ERRNO", errno.EPERM,
        (SeccompArg(0, 0x8000, "SCMP_CMP_MASKED_EQ", 0x8000),))), False),
    ("setsid-refused", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("setsid",), "SCMP_ACT_ERRNO", errno.EPERM)), False),
    ("sendmsg-traced", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("sendmsg",), "SCMP_ACT_TRACE")), False),
    ("our-uid-refused", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("setresuid",), "SCMP_ACT_ERRNO", errno.EPERM, (SeccompArg(0, 1000, "SCMP_CMP_EQ"),))),
     False),
    ("another-uid-refused", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("setresuid",), "SCMP_ACT_ERRNO", errno.EPERM, (SeccompArg(0, 0, "SCMP_CMP_EQ"),))),
     True),
    ("write-by-fd", _bpf("SCMP_ACT_ALLOW", SeccompSyscall(
        ("write",), "SCMP_ACT_ERRNO", errno.EPERM, (SeccompArg(0, 99, "SCMP_CMP_EQ"),))), False),
]


@pytest.mark.parametrize("bpf, through", [p[1:] for p in PROFILES], ids=[p[0] for p in PROFILES])
def test_a_filter_lets_the_fork_through_only_if_every_call_still_happens(
        bpf: bytes, through: bool) -> None:
    assert ev.lets_fork_through(bpf, IDENTITY, SOCK, False) is through


def _exec_plan(seccomp: Optional[Dict[str, Any]], nnp: bool = False,
               terminal: bool = False) -> List[int]:
    doc = runc_spec(["true"])
    if seccomp is not None:
        doc["linux"]["seccomp"] = seccomp
    doc["process"]["noNewPrivileges"] = nnp
    doc["process"]["user"] = {"uid": 1000, "gid": 1000}
    spec = parse_spec(doc)
    process = spec.process.replace(terminal=terminal)
    plan = plan_exec(spec, process, Entry(pidfd=3, children_pidfd=4, fork_fd=5),
                     console_fd=6 if terminal else -1,
                     cgroup_fds=[(7, "/sys/fs/cgroup/pids/c/tasks"),
                                 (8, "/sys/fs/cgroup/unified/c/cgroup.procs")])
    return [op.code for op in plan.ops]


def _after(codes: List[int], first: int, then: int) -> bool:
    return codes.index(then) > codes.index(first)


ALLOW_WITH_DENIES = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize("terminal", [False, True], ids=["pipes", "terminal"])
def test_an_exec_takes_its_identity_before_the_fork_under_a_filter_that_lets_it(
        terminal: bool) -> None:
    codes = _exec_plan(ALLOW_WITH_DENIES, terminal=terminal)
    assert _after(codes, OP_SECCOMP, OP_USER) and _after(codes, OP_CHDIR, OP_FORK)
    assert _after(codes, OP_CAPS, OP_FORK)


def test_an_exec_forks_first_under_a_filter_that_refuses_the_fork() -> None:
    codes = _exec_plan({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone", "clone3"], "action": "SCMP_ACT_ERRNO"}]})
    assert _after(codes, OP_FORK, OP_SECCOMP) and _after(codes, OP_SECCOMP, OP_USER)


def test_with_no_new_privileges_the_fork_comes_after_the_identity() -> None:
    # (The filter is then loaded right before execve, whatever its place.)
    codes = _exec_plan({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone", "clone3"], "action": "SCMP_ACT_ERRNO"}]}, nnp=True)
    assert _after(codes, OP_USER, OP_FORK) and _after(codes, OP_CHDIR, OP_FORK)


@pytest.mark.parametrize("seccomp, nnp", [
    (None, False), (ALLOW_WITH_DENIES, False),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["clone", "clone3"], "action": "SCMP_ACT_ERRNO"}]}, False),
    (ALLOW_WITH_DENIES, True)], ids=["no-filter", "early-filter", "fork-first", "late-filter"])
def test_the_forked_process_joins_the_cgroups_never_pidsafe_init(
        seccomp: Optional[Dict[str, Any]], nnp: bool) -> None:
    """Right after the fork, by the child once it is ours: pidsafe-init,
    never in the container's cgroups, cannot be frozen or killed there
    between its fork and its send."""
    codes = _exec_plan(seccomp, nnp=nnp)
    fork = codes.index(OP_FORK)
    assert codes[fork + 1:fork + 3] == [OP_CGROUP_JOIN] * 2
    assert codes.count(OP_CGROUP_JOIN) == 2


def test_the_child_s_cgroup_joins_count_among_the_calls_under_the_filter() -> None:
    calls = ev.fork_calls(IDENTITY, SOCK, False, [8, 9])
    for fd in (8, 9):
        assert ("write", (fd, ev.UNKNOWN, 1)) in calls and ("close", (fd,)) in calls


#: A line of ``strace -f`` where a call starts: "PID name(" (finished or not).
_CALL = re.compile(r"^(\d+)\s+([a-z0-9_]+)\(", re.M)
#: Where a call another process's interrupted goes on: "PID  <... name resumed>REST".
_RESUMED = re.compile(r"^(\d+)\s+<\.\.\. [a-z0-9_]+ resumed>(.*)$")
_UNFINISHED = " <unfinished ...>"


def _whole_calls(text: str) -> List[str]:
    """``strace -f``'s lines, each call whole on the line where it began:
    one that another process's call interrupted is printed as
    "PID  name(args <unfinished ...>" and later "PID  <... name resumed>) = 0",
    and more often the more the processes run at once (a loaded machine)."""
    lines: List[str] = []
    unfinished: Dict[str, int] = {}
    for line in text.splitlines():
        m = _RESUMED.match(line)
        if m and m.group(1) in unfinished:
            i = unfinished.pop(m.group(1))
            lines[i] = lines[i][:-len(_UNFINISHED)] + m.group(2)
            continue
        if line.endswith(_UNFINISHED):
            unfinished[line.split(None, 1)[0]] = len(lines)
        lines.append(line)
    return lines


@pytest.mark.root
def test_every_call_after_an_early_filter_is_one_the_evaluator_lists(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """The evaluator's list of pidsafe-init's calls between its load of a
    filter and execve (:func:`fork_calls`) is kept by hand: a call it
    missed would be one the filter was never asked about, and an exec
    forked under a filter refusing it would fail.  So an exec under an
    early filter (no no_new_privileges) runs under strace, and every call
    pidsafe-init and its child make from the filter's load to the child's
    execve must be on the list (clone3 and clone besides), whichever libc
    built pidsafe-init."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace)")

    def edit(doc: Dict[str, Any]) -> None:
        doc["process"]["noNewPrivileges"] = False
        doc["process"]["user"] = {"uid": 1000, "gid": 1000}
        doc["linux"]["seccomp"] = ALLOW_WITH_DENIES

    bundle = make_bundle(["sleep", "1000"], edit)
    code = ("import sys, pidsafe\n"
            "c = pidsafe.Container.create('st', sys.argv[1], state_dir=sys.argv[2])\n"
            "try:\n"
            "    c.start()\n"
            "    with c.exec(['true'], exec_id='e') as p:\n"
            "        assert p.wait(timeout=60) == 0\n"
            "finally:\n"
            "    c.delete(force=True)\n")
    trace = tmp_path / "trace"
    with pidsafe.spawn([strace, "-f", "-qq", "-o", str(trace), sys.executable, "-c", code,
                        str(bundle), str(state_dir)],
                       stdout=pidsafe.PIPE, stderr=pidsafe.PIPE) as p:
        _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err.decode()
    calls: Dict[int, List[Tuple[str, str]]] = {}
    for line in _whole_calls(trace.read_text()):
        m = _CALL.match(line)
        if m:
            calls.setdefault(int(m.group(1)), []).append((m.group(2), line))

    def after_filter(pid: int) -> List[Tuple[str, str]]:
        seen = calls[pid]
        loads = [i for i, (name, line) in enumerate(seen)
                 if name == "seccomp" and "SECCOMP_SET_MODE_FILTER" in line
                 and "filter=" in line and line.endswith(" = 0")]
        return seen[loads[0] + 1:] if loads else []

    # The exec's pidsafe-init: the one that forks once its filter is loaded.
    forkers = [pid for pid in calls
               if any(name in ("clone3", "clone") for name, _ in after_filter(pid))]
    assert len(forkers) == 1, f"not one exec forking under its filter: {forkers}"
    made = calls[forkers[0]]
    # A clone3 interrupted returns on its "<... clone3 resumed>" line, joined
    # to it (_whole_calls).
    forked = [int(m) for name, line in after_filter(forkers[0]) if name in ("clone3", "clone")
              for m in re.findall(r"= (\d+)$", line)]
    assert len(forked) == 1, made
    child = calls[forked[0]]
    upto_exec = child[:[name for name, _ in child].index("execve") + 1]
    observed = {name for name, _ in after_filter(forkers[0]) + upto_exec}

    spec = parse_spec(json.loads((bundle / "config.json").read_text()))
    plan = plan_exec(spec, spec.process.replace(args=("true",)),
                     Entry(pidfd=3, children_pidfd=4, fork_fd=5),
                     cgroup_fds=[(7, "tasks"), (8, "cgroup.procs")])
    ops = list(plan.ops)
    load = next(i for i, op in enumerate(ops) if op.code == OP_SECCOMP)
    fork = next(i for i, op in enumerate(ops) if op.code == OP_FORK)
    listed = {name for name, _ in ev.fork_calls(ops[load + 1:fork], 5, False, [7, 8])}
    assert sorted(observed - listed - {"clone3", "clone"}) == []
