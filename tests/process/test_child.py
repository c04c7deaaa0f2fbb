"""The child side of spawn: the exec'd credentials helper, every child stage.

Credentials never change in a child that shares our memory (invariant
8): spawn(uidmap=) and spawn(userns=) go through the static helper
(csrc/helper/), so the caller stays dumpable; a parent killed before the
helper's go leaves nothing asleep; every stage of the spawn child and of the
helper can be made to fail (``_sys._spawn._test_fail``) and reports a typed
error naming the stage.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
from typing import Any, Dict, Iterator, List, Tuple

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe._sys import _spawn as sys_spawn
from pidsafe.process._plan import plan_spawn

MAP = "0:100000:65536"
STAGES = sorted(_sys.STAGE_NAMES)


@pytest.fixture
def dumpable() -> Iterator[None]:
    """The test starts dumpable and leaves the process dumpable."""
    _sys.set_dumpable(True)
    try:
        yield
    finally:
        _sys.set_dumpable(True)


def run(args: List[str], **kw: Any) -> Tuple[int, bytes]:
    with pidsafe.spawn(args, stdout=subprocess.PIPE, **kw) as p:
        out, _ = p.communicate()
        return p.returncode, out


# -- no credential change in shared memory ------------------------------------------

_ALL_NS = (pidsafe.Namespace.NEWPID | pidsafe.Namespace.NEWNS | pidsafe.Namespace.NEWUTS
           | pidsafe.Namespace.NEWIPC | pidsafe.Namespace.NEWNET | pidsafe.Namespace.NEWCGROUP)


@pytest.mark.root
@pytest.mark.parametrize("namespaces", [pidsafe.Namespace(0), _ALL_NS], ids=["userns", "all"])
def test_spawn_new_userns_leaves_the_caller_dumpable(dumpable: None,
                                                     namespaces: pidsafe.Namespace) -> None:
    # CLONE_NEWUSER|CLONE_NEW* at clone3 time give the child new credentials
    # from birth (no commit_creds on our mm); the helper changes the rest.
    rc, out = run(["sh", "-c", "id -u; id -g"], uidmap=MAP, gidmap=MAP, namespaces=namespaces)
    assert (rc, out) == (0, b"0\n0\n")
    assert _sys.dumpable(), "spawn(uidmap=) made the caller non-dumpable"


@pytest.mark.root
def test_spawn_join_userns_leaves_the_caller_dumpable(dumpable: None) -> None:
    with pidsafe.get_userns_fd(MAP, MAP) as ns:
        rc, out = run(["sh", "-c", "id -u; cat /proc/self/uid_map"], userns=ns)
    assert rc == 0 and out.split(b"\n")[0] == b"0"
    assert out.split()[1:] == [b"0", b"100000", b"65536"]
    assert _sys.dumpable(), "spawn(userns=) made the caller non-dumpable"


@pytest.mark.root
def test_program_in_new_userns_gets_no_carried_capabilities() -> None:
    # The spawn child carries its capabilities into the helper as ambient
    # ones; none may reach the program.  As root of the namespace it has the
    # full permitted set all the same.
    rc, out = run(["grep", "^Cap", "/proc/self/status"], uidmap=MAP, gidmap=MAP)
    caps = dict(line.split(b":\t") for line in out.splitlines())
    assert rc == 0
    assert int(caps[b"CapAmb"], 16) == 0 and int(caps[b"CapInh"], 16) == 0
    assert int(caps[b"CapEff"], 16) == int(caps[b"CapBnd"], 16)


@pytest.mark.root
def test_unmapped_root_gets_no_capabilities() -> None:
    # uid 0 is not mapped: the program runs as the overflow uid and, as
    # before the helper, with no capabilities (no ambient set carried over).
    rc, out = run(["sh", "-c", "id -u; grep ^CapEff /proc/self/status"],
                  uidmap="1:100000:10", gidmap="1:100000:10")
    assert rc == 0
    uid, capeff = out.splitlines()
    assert uid == b"65534" and int(capeff.split()[1], 16) == 0


@pytest.mark.root
@pytest.mark.parametrize("how", ["uidmap", "userns"])
def test_helper_exec_errors_name_the_program(how: str) -> None:
    with pidsafe.get_userns_fd(MAP, MAP) as ns:
        kw: Dict[str, Any] = dict(uidmap=MAP, gidmap=MAP) if how == "uidmap" else dict(userns=ns)
        with pytest.raises(FileNotFoundError) as info:
            pidsafe.spawn(["/nonexistent/prog"], **kw)
        assert info.value.filename == "/nonexistent/prog"
        assert "exec" in str(info.value)
        with pytest.raises(FileNotFoundError) as info2:
            pidsafe.spawn(["true"], cwd="/nonexistent/dir", **kw)
        assert info2.value.filename == "/nonexistent/dir"
        assert "chdir" in str(info2.value)


@pytest.mark.root
def test_plan_uses_the_helper_only_for_credentials() -> None:
    assert plan_spawn(None, None, None, pidsafe.Namespace.NEWUTS).helper is None
    assert plan_spawn(None, MAP, MAP, 0).helper is not None
    with pidsafe.get_userns_fd(MAP, MAP) as ns:
        assert plan_spawn(ns, None, None, 0).helper is not None


# -- a parent killed before the go ---------------------------------------------------

# The grandchild: spawns with uidmap+NEWPID and is SIGKILLed once the child
# exists (clone3 done, the helper waiting for its go), after printing its pid.
_INNER = """
import os, signal, pidsafe
from pidsafe.userns import _userns
def hook(stage, view):
    if stage == "cloned":
        print(view.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
_userns._test_hook = hook
pidsafe.spawn(["sleep", "1000"], uidmap=%r, gidmap=%r, namespaces=pidsafe.Namespace.NEWPID)
""" % (MAP, MAP)

# The child: a subreaper, so that the orphaned helper becomes its child (pid
# 1 here reaps no orphans).  It watches the helper through a pidfd.
_OUTER = """
import os, select, signal, subprocess, sys
from pidsafe import _sys
_sys.set_child_subreaper(True)
inner = subprocess.Popen([sys.executable, "-c", %r], stdout=subprocess.PIPE)
pid = int(inner.stdout.readline())
assert inner.wait() == -signal.SIGKILL
fd = os.pidfd_open(pid)
exited = select.select([fd], [], [], 120)[0]   # a hang guard, not a timing
if not exited:
    signal.pidfd_send_signal(fd, signal.SIGKILL)
info = os.waitid(os.P_PIDFD, fd, os.WEXITED)
print("exited" if exited else "asleep", info.si_code, info.si_status)
""" % _INNER


@pytest.mark.root
def test_parent_killed_before_go_leaves_no_sleeping_child() -> None:
    out = subprocess.run([sys.executable, "-c", _OUTER], check=True, stdout=subprocess.PIPE,
                         timeout=300).stdout.decode()
    state, code, status = out.split()
    assert state == "exited", "the helper of a dead parent sleeps for ever"
    assert (int(code), int(status)) == (os.CLD_EXITED, 127)


# -- every stage fails on demand -----------------------------------------------------

def _spawn_kwargs(mode: str, ns: Any) -> Dict[str, Any]:
    # cwd "/": the namespace's root (host uid 100000) may enter it.
    kw: Dict[str, Any] = dict(cwd="/", pdeathsig=15, start_new_session=True)
    if mode == "uidmap":
        kw.update(uidmap=MAP, gidmap=MAP, namespaces=pidsafe.Namespace.NEWUTS)
    elif mode == "userns":
        kw.update(userns=ns, namespaces=pidsafe.Namespace.NEWUTS)
    return kw


#: Where each stage runs: the plain spawn child has no helper stages.  Only
#: the user-namespace modes need root.
_CASES = ([pytest.param("plain", s, id=f"plain-{_sys.STAGE_NAMES[s].split()[0]}{s}")
           for s in STAGES if s not in (10, 11, 12, 13, 14)]
          + [pytest.param(m, s, id=f"{m}-{_sys.STAGE_NAMES[s].split()[0]}{s}",
                          marks=pytest.mark.root)
             for m in ("uidmap", "userns") for s in STAGES])


@pytest.mark.parametrize("mode,stage", _CASES)
def test_every_child_stage_fails_typed(monkeypatch: pytest.MonkeyPatch, mode: str,
                                       stage: int) -> None:
    monkeypatch.setattr(sys_spawn, "_test_fail", (stage, errno.EXDEV))
    ns = pidsafe.get_userns_fd(MAP, MAP) if mode == "userns" else None
    try:
        with pytest.raises(OSError) as info:
            pidsafe.spawn(["true"], **_spawn_kwargs(mode, ns))
    finally:
        if ns is not None:
            ns.close()
    exc = info.value
    assert exc.errno == errno.EXDEV
    assert _sys.STAGE_NAMES[stage] in str(exc)
    if stage == _sys.STAGE_EXEC:
        assert exc.filename == "true"
    elif stage == _sys.STAGE_CHDIR:
        assert exc.filename == "/"


def test_every_stage_has_a_name() -> None:
    assert STAGES == list(range(1, _sys.STAGE_LAST + 1))


# -- the parent's own failures ---------------------------------------------------------

def test_sigmask_failure_reports_its_own_errno(monkeypatch: pytest.MonkeyPatch) -> None:
    # pthread_sigmask returns its error number and leaves errno alone: the
    # errno spawn reports must be that number, not whatever errno held.
    monkeypatch.setattr(sys_spawn, "_test_fail", (_sys.FAULT_SIGMASK, errno.EINVAL))
    _sys.ffi.errno = errno.ENOENT  # stale
    with pytest.raises(OSError) as info:
        pidsafe.spawn(["true"])
    assert info.value.errno == errno.EINVAL and "clone3" in str(info.value)


@pytest.mark.parametrize("newpid", [pytest.param(False, id="same-pidns"),
                                    pytest.param(True, id="pid-1-of-new-pidns",
                                                 marks=pytest.mark.root)])
def test_child_whose_parent_is_gone_does_not_run(newpid: bool) -> None:
    # After PR_SET_PDEATHSIG the child checks that its parent still lives
    # (else no signal will ever come).  getppid() cannot tell as pid 1 of a
    # new pid namespace (it is 0 there); the error pipe can.  Here its read
    # end is closed before the clone, as if the parent had died.
    r, w = os.pipe2(os.O_CLOEXEC)
    os.close(r)
    try:
        spec = _sys.ChildSpec(exec_paths=(b"/bin/true",), argv=(b"true",), errpipe_write=w,
                              keep_fds=(w,), pdeathsig=signal.SIGKILL,
                              clone_flags=_sys.CLONE_NEWPID if newpid else 0)
        pid, pidfd = _sys.spawn(spec)
    finally:
        os.close(w)
    try:
        assert _sys.waitid_pidfd(pidfd, _sys.WEXITED) == (pid, _sys.CLD_EXITED, 127)
    finally:
        os.close(pidfd)


def test_without_an_error_pipe_the_failure_comes_back_in_memory(tmp_path: Any) -> None:
    # No pipe: the CLONE_VM child stores {stage, errno} in our memory before
    # it exits, and clone3 (CLONE_VFORK) returns only after that.
    failed: List[Tuple[int, int]] = []
    spec = _sys.ChildSpec(exec_paths=(b"/bin/true",), argv=(b"true",), errpipe_write=-1,
                          cwd=os.fsencode(tmp_path / "missing"))
    fds = set(os.listdir("/proc/self/fd"))
    pid, pidfd = _sys.spawn(spec, failed)
    try:
        assert failed == [(_sys.STAGE_CHDIR, errno.ENOENT)]
        assert _sys.waitid_pidfd(pidfd, _sys.WEXITED) == (pid, _sys.CLD_EXITED, 127)
    finally:
        os.close(pidfd)
    assert set(os.listdir("/proc/self/fd")) == fds
    # ... and nothing when the program ran.
    pid, pidfd = _sys.spawn(spec.replace(cwd=None), failed := [])
    try:
        assert _sys.waitid_pidfd(pidfd, _sys.WEXITED) == (pid, _sys.CLD_EXITED, 0)
        assert failed == []
    finally:
        os.close(pidfd)


@pytest.mark.parametrize("spec", [
    _sys.ChildSpec(exec_paths=(b"/bin/true",), argv=(b"true",), errpipe_write=-1),
    _sys.ChildSpec(exec_paths=(b"/bin/true",), argv=(b"true",), errpipe_write=-1,
                   helper=_sys.HelperSpec()),
    _sys.ChildSpec(exec_paths=(b"/bin/true",), argv=(b"true",), errpipe_write=-1,
                   pdeathsig=signal.SIGKILL, clone_flags=_sys.CLONE_NEWPID),
], ids=["nowhere-to-report", "helper", "pdeathsig-in-new-pidns"])
def test_a_spec_that_needs_an_error_pipe_starts_nothing_without(spec: Any) -> None:
    # (no_leaks fails the test if a child was started.)
    with pytest.raises(ValueError, match="needs an error pipe"):
        _sys.spawn(spec, None if spec.helper is None and not spec.pdeathsig else [])


# -- start_process: the one child-start path --------------------------------------------

def _spec(*argv: str, **kw: Any) -> "_sys.ChildSpec":
    return _sys.ChildSpec(exec_paths=(argv[0].encode(),), argv=tuple(a.encode() for a in argv),
                          errpipe_write=-1, **kw)


def test_start_process_hands_out_the_exec_d_child_as_a_process() -> None:
    from pidsafe._sigsafe import critical
    from pidsafe.process import start_process

    with critical:
        p = start_process(_spec("/bin/sh", "-c", "exit 7"), args=["sh"])
    with p:
        assert isinstance(p, pidsafe.Process) and p.args == ["sh"]
        assert p.wait() == 7


@pytest.mark.parametrize("pipe", [False, True], ids=["in-memory", "error-pipe"])
def test_start_process_reaps_a_child_that_failed_and_names_its_stage(pipe: bool) -> None:
    from pidsafe._sigsafe import critical
    from pidsafe.process import start_process

    missing = "/nonexistent/program"
    # pdeathsig as pid 1 of a new pid namespace needs the error pipe:
    # start_process makes it.
    kw: Dict[str, Any] = dict(pdeathsig=signal.SIGKILL, clone_flags=_sys.CLONE_NEWPID) \
        if pipe else {}
    if pipe and os.geteuid() != 0:
        pytest.skip("CLONE_NEWPID needs root")
    with pytest.raises(FileNotFoundError) as info:
        with critical:
            start_process(_spec(missing, **kw), who="the test's child",
                          filenames={_sys.STAGE_EXEC: missing})
    assert info.value.filename == missing
    assert str(info.value).startswith("[Errno 2] the test's child: exec")
    # The autouse no_leaks fixture fails the test on a zombie or an fd left.


def test_start_process_raises_a_stage_s_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe._sigsafe import critical
    from pidsafe.process import start_process

    monkeypatch.setattr(sys_spawn, "_test_fail", (_sys.STAGE_CHDIR, errno.EXDEV))
    with pytest.raises(LookupError, match="errno 18"):
        with critical:
            start_process(_spec("/bin/true", cwd=b"/"),
                          stage_errors={_sys.STAGE_CHDIR: lambda e: LookupError(f"errno {e}")})


def test_start_process_names_clone3_as_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe._sigsafe import critical
    from pidsafe.process import _start, start_process

    def no_clone3(spec: Any, maps: Any = None, failed: Any = None) -> Tuple[int, int]:
        raise OSError(errno.ENOSYS, "clone3")

    monkeypatch.setattr(_start, "start_child", no_clone3)
    with pytest.raises(pidsafe.UnsupportedError, match="containers need clone3"):
        with critical:
            start_process(_spec("/bin/true"), unsupported="containers need clone3")
    with pytest.raises(OSError) as info:   # without the detail: clone3's own error
        with critical:
            start_process(_spec("/bin/true"))
    assert info.value.errno == errno.ENOSYS and not isinstance(info.value, pidsafe.UnsupportedError)
