"""Attacks on pidsafe's container path: nothing of the host is reachable (root).

Each test attacks one class of runc's CVEs and fails on a runtime that has
that bug.  The attacker is ``escape_probe.c`` (built once per session, static):
on the host it races, standing for another container that shares the
rootfs (a name swapped for a symlink with ``renameat2(RENAME_EXCHANGE)``,
tens of thousands of times a second); inside a container it probes every
process it can see.

Races are probabilistic: each race test runs :data:`ROUNDS` creates per
run (the races themselves are in ``escape_races.py``, which
``scripts/stress_escapes.py`` runs for thousands of rounds outside CI), and
``--count N`` (pytest-repeat) runs the attack N times over.  Each test
asserts that the race was live (some creates were refused for what the
racer did), so a racer that never ran cannot pass for a fix.
"""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import signal
import sys
import time
from typing import Any, Dict, Iterator, List, Optional

import pytest

import escape_races
import pidsafe
from escape_races import userns as _userns
from pidsafe import _sys
from pidsafe._sys import _sealed

pytestmark = pytest.mark.root

#: Creates per race test and run: the racer wins about one round in three
#: (the old code lost within 20), and CI stays quick (~15 ms a create on an
#: idle machine; the racer and a loaded one make it ~0.3 s).
ROUNDS = 60


@pytest.fixture(scope="session")
def probe(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """escape_probe, compiled static (it runs inside busybox containers too)."""
    built = escape_races.build_probe(tmp_path_factory.mktemp("probe"))
    if built is None:
        pytest.skip("needs a C compiler and static glibc (scripts/bootstrap.sh installs them)")
    return built


def test_device_nodes_are_chmodded_by_fd_never_through_a_swapped_name(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path,
        tmp_path: pathlib.Path) -> None:
    """Devices are made before pivot_root: a mode set by
    name (``fchmodat(dir, "null")``) follows a symlink swapped in after the
    mknod, resolved from the *host's* root, and makes a host file 0666."""
    tally = escape_races.device_chmod(probe, make_bundle, state_dir, tmp_path, ROUNDS)
    assert not tally.escapes and not tally.unexpected, tally.escapes + tally.unexpected
    assert tally.refused, f"the racer never won a round: the test proved nothing ({tally})"


def test_masked_paths_bind_the_null_device_never_a_swapped_dev_null(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path) -> None:
    """CVE-2025-31133.  A masked file gets a bind of
    /dev/null: looked up by name, a /dev/null swapped for a symlink to a
    procfs file makes the masked path a writable copy of that file (here
    the harmless, uts-namespaced kernel.domainname; core_pattern in the
    CVE), outside the read-only /proc/sys."""
    tally = escape_races.masked_null(probe, make_bundle, state_dir, ROUNDS)
    assert not tally.escapes and not tally.unexpected, tally.escapes + tally.unexpected
    assert tally.refused, f"the racer never won a round: the test proved nothing ({tally})"


def test_the_console_is_bound_onto_dev_console_never_through_a_swapped_name(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path) -> None:
    """CVE-2025-52565.  The pty's peer is bound onto
    /dev/console: a /dev/console swapped for a symlink to a procfs file,
    followed, puts the pty over that file instead."""
    tally = escape_races.console(probe, make_bundle, state_dir, ROUNDS)
    assert not tally.escapes and not tally.unexpected, tally.escapes + tally.unexpected
    assert tally.refused, f"the racer never won a round: the test proved nothing ({tally})"


def refused(bundle: pathlib.Path, state_dir: pathlib.Path, name: str) -> pidsafe.ContainerError:
    """The error of a create that must be refused (a container made anyway
    is deleted before the test fails)."""
    try:
        c = pidsafe.Container.create(name, bundle, state_dir=str(state_dir))
    except pidsafe.ContainerError as exc:
        return exc
    c.delete(force=True)
    pytest.fail("created: the attack went through")


def _sysctl_bundle(make_bundle: Any, edit: Any) -> pathlib.Path:
    def doc_edit(doc: Dict[str, Any]) -> None:
        doc["linux"]["sysctl"] = {"kernel.domainname": "pwned"}
        # Without the usual read-only /proc/sys, which would hide the bug
        # behind EROFS: the write must be refused for where it goes.
        doc["linux"]["readonlyPaths"] = []
        edit(doc)

    return make_bundle(["true"], doc_edit)


def test_sysctl_is_never_written_through_a_mount_over_proc_sys(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """CVE-2025-52881 class.  A sysctl written by path
    goes wherever the path leads: here a bind of a host file over the
    sysctl's /proc/sys file."""
    host_file = tmp_path / "host-file"
    host_file.write_text("host\n")

    def hide(doc: Dict[str, Any]) -> None:
        doc["mounts"].append({"destination": "/proc/sys/kernel/domainname", "type": "bind",
                              "source": str(host_file), "options": ["bind"]})

    exc = refused(_sysctl_bundle(make_bundle, hide), state_dir, "sysmnt")
    assert host_file.read_text() == "host\n"
    assert exc.errno == errno.EXDEV, exc
    assert exc.field == "linux.sysctl.kernel.domainname"
    assert "not the container's procfs" in str(exc)


def test_sysctl_is_never_written_outside_procfs(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """CVE-2025-52881 class: without a /proc mount, /proc/sys/... is whatever
    the image (a host directory) has there; the write is refused."""
    def no_proc(doc: Dict[str, Any]) -> None:
        doc["mounts"] = [m for m in doc["mounts"] if m["type"] != "proc"]
        doc["linux"]["maskedPaths"] = []
        doc["root"]["readonly"] = False   # else EROFS would hide the bug

    bundle = _sysctl_bundle(make_bundle, no_proc)
    fake = bundle / "rootfs" / "proc" / "sys" / "kernel" / "domainname"
    fake.parent.mkdir(parents=True)
    fake.write_text("image\n")
    exc = refused(bundle, state_dir, "sysfake")
    assert fake.read_text() == "image\n"
    assert exc.errno == errno.ENODEV, exc
    assert exc.field == "linux.sysctl.kernel.domainname"


def _identity(path: str) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def _ours() -> str:
    """The host binaries of ours no process a container sees may run from:
    the installed pidsafe-init and pidsafe-helper, and this python (the
    spawn child shares our memory until its exec), for ``escape_probe scan``."""
    return ",".join(_identity(p) for p in (_sys.program("pidsafe-init").path,
                                           _sys.program("pidsafe-helper").path,
                                           os.path.realpath(sys.executable)))


def _ns_pid(proc: pidsafe.Process) -> int:
    """``proc``'s pid in its own (the container's) pid namespace."""
    with open(f"/proc/{proc.pid}/status") as f:
        line = next(x for x in f if x.startswith("NSpid:"))
    return int(line.split()[-1])


@pytest.fixture
def installed_init(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private copy of pidsafe-init, installed where pidsafe's locator
    finds it: an attack that works writes this copy, never the suite's."""
    from pidsafe._sys import _libexec

    copy = tmp_path / "libexec" / "pidsafe-init"
    copy.parent.mkdir()
    shutil.copy2(_sys.program("pidsafe-init").path, copy)
    monkeypatch.setitem(_libexec._found, "pidsafe-init",
                        _sys.Program("pidsafe-init", str(copy), os.fsencode(copy)))
    yield str(copy)
    entry = _sealed._copies.pop(str(copy), None)   # made for this test only
    if entry is not None:
        os.close(entry[0])


def _probe_in(bundle: pathlib.Path, probe: pathlib.Path) -> None:
    shutil.copy2(probe, bundle / "rootfs" / "bin" / "escape_probe")
    script = bundle / "rootfs" / "bin" / "evil"
    script.write_text("#!/proc/self/exe\n")
    script.chmod(0o755)


def _with(userns: bool, ptrace: bool) -> Any:
    def edit(doc: Dict[str, Any]) -> None:
        if userns:
            _userns(doc)
        if ptrace:
            for caps in doc["process"]["capabilities"].values():
                caps.append("CAP_SYS_PTRACE")
    return edit


@pytest.mark.parametrize("userns", [False, True], ids=["host-users", "userns"])
@pytest.mark.parametrize("ptrace", [False, True], ids=["default-caps", "cap-sys-ptrace"])
def test_a_proc_self_exe_script_never_reaches_the_installed_init(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path, installed_init: str,
        userns: bool, ptrace: bool) -> None:
    """CVE-2019-5736.  A program ``#!/proc/self/exe``
    re-runs the binary of the process that exec'd it: pidsafe-init.  It
    must be a sealed copy: another process of the container opens it
    through ``/proc/PID/exe``, waits until it stops running, and writes."""
    bundle = make_bundle(["sleep", "1000"], _with(userns, ptrace))
    _probe_in(bundle, probe)
    with open(installed_init, "rb") as f:
        binary = f.read()
    c = pidsafe.Container.create("exe", bundle, state_dir=str(state_dir))
    try:
        c.start()
        # The re-run pidsafe-init reads its "op stream" from stdin: it stays.
        evil = c.exec(["/bin/evil", "0"], exec_id="evil", stdin=pidsafe.PIPE)
        with evil:
            attack = c.exec(["/bin/escape_probe", "exe", str(_ns_pid(evil)),
                             _identity(installed_init)], exec_id="probe", stdout=pidsafe.PIPE)
            with attack:
                out, _ = attack.communicate(timeout=60)
            assert evil.stdin is not None
            evil.stdin.close()
            evil.wait(timeout=60)
        report = out.decode()
        assert "HOST" not in report and "WRITABLE" not in report, report
        assert report.startswith(("DENIED", "SEALED")), report
    finally:
        c.delete(force=True)
    with open(installed_init, "rb") as f:
        assert f.read() == binary


@pytest.mark.parametrize("userns", [False, True], ids=["host-users", "userns"])
def test_init_waiting_to_start_shows_no_host_binary(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path, installed_init: str,
        userns: bool) -> None:
    """CVE-2019-5736, at the gate: a process exec'd before ``start`` sees init (pid 1)
    at the gate, still pidsafe-init, with the program's uid and capabilities."""
    bundle = make_bundle(["true"], _with(userns, ptrace=False))
    _probe_in(bundle, probe)
    c = pidsafe.Container.create("gate", bundle, state_dir=str(state_dir))
    try:
        attack = c.exec(["/bin/escape_probe", "exe", "1", _identity(installed_init)],
                        exec_id="probe", stdout=pidsafe.PIPE)
        with attack:
            out, _ = attack.communicate(timeout=60)
        report = out.decode()
        assert "HOST" not in report and "WRITABLE" not in report, report
    finally:
        c.delete(force=True)


#: execs (and startContainer hooks) per scan test: each is a process of
#: pidsafe's entering the container while the scanner races.
ENTRIES = 25


def _hooks(count: int) -> Any:
    def edit(doc: Dict[str, Any]) -> None:
        doc["hooks"] = {"startContainer": [{"path": "/bin/true"}] * count}
    return edit


def _edits(*edits: Any) -> Any:
    def edit(doc: Dict[str, Any]) -> None:
        for e in edits:
            e(doc)
    return edit


@pytest.mark.parametrize("userns, ptrace", [(False, False), (False, True), (True, False),
                                            (True, True)],
                         ids=["host-users", "host-users-cap-sys-ptrace", "userns",
                              "userns-cap-sys-ptrace"])
def test_no_process_of_ours_in_a_container_reaches_the_host(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path,
        userns: bool, ptrace: bool) -> None:
    """A process exec'd into a
    container (and a startContainer hook) enters the container's pid
    namespace; a scanner inside looks at every process it can see while
    they come, through /proc/PID/{root,cwd,exe,fd/*} and ptrace.  Were one
    of ours visible in the host's mount namespace (as the exec helper once
    was, with host root), its root would lead to the host's files."""
    marker = tmp_path / "host-only-marker"
    marker.write_text("host\n")
    bundle = make_bundle(["sleep", "1000"], _edits(_with(userns, ptrace), _hooks(ENTRIES)))
    _probe_in(bundle, probe)
    c = pidsafe.Container.create("scan", bundle, state_dir=str(state_dir))
    try:
        # Exec'd before start: it sees the startContainer hooks come too.
        scanner = c.exec(["/bin/escape_probe", "scan", str(marker), _identity("/"), _ours()],
                         exec_id="scanner", stdin=pidsafe.PIPE, stdout=pidsafe.PIPE)
        with scanner:
            assert scanner.stdout is not None and scanner.stdin is not None
            assert scanner.stdout.readline() == b"READY\n"
            c.start()
            for i in range(ENTRIES):
                with c.exec(["true"], exec_id=f"e{i}") as p:
                    assert p.wait(timeout=60) == 0
            scanner.stdin.close()
            report = scanner.stdout.read().decode()
            assert scanner.wait(timeout=60) == 0
    finally:
        c.delete(force=True)
    lines = report.splitlines()
    assert lines and lines[-1].startswith("SCANNED "), report
    assert int(lines[-1].split()[1]) > 0
    assert [x for x in lines if x.startswith("HOST")] == [], report
    if not ptrace:
        # Not dumpable: without CAP_SYS_PTRACE nothing of ours can be attached to.
        assert [x for x in lines if x.startswith("PTRACE") and "pidsafe" in x] == [], report


def _as_user(uid: int) -> Any:
    def edit(doc: Dict[str, Any]) -> None:
        doc["process"]["user"] = {"uid": uid, "gid": uid}
        for kind in doc["process"]["capabilities"]:
            doc["process"]["capabilities"][kind] = []
    return edit


#: Execs per identity test, at most: it stops once the watcher has seen
#: IDENTS_WANTED of ours before their execve (on a loaded machine it may
#: not be scheduled while one is there).
IDENT_EXECS = 300
IDENTS_WANTED = 5


def _seize_exec_helpers(monkeypatch: pytest.MonkeyPatch, hold: Any) -> None:
    """The next exec's pidsafe-init is seized by ``hold`` (hold_after_fork)
    as it starts: before it reads its ops, hence before its fork."""
    from pidsafe.container import _exec

    real = _exec.start_init

    def start_init(plan: Any, **kwargs: Any) -> Any:
        prepare = kwargs["prepare"]

        def seize_first(p: pidsafe.Process) -> None:
            hold.seize(p.pid)
            prepare(p)

        return real(plan, **{**kwargs, "prepare": seize_first})

    monkeypatch.setattr(_exec, "start_init", start_init)


def _read_available(fd: int, timeout: float = 0.0) -> bytes:
    import select

    out = b""
    while select.select([fd], [], [], timeout)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
        timeout = 0.0
    return out


def _names_before(name: str) -> List[str]:
    """Every syscall the kernel headers list below ``name``'s number."""
    headers = pathlib.Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
    if not headers.exists():
        pytest.skip("needs x86_64's kernel headers")
    numbers = {}
    for line in headers.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "#define" and parts[1].startswith("__NR_"):
            numbers[parts[1][len("__NR_"):]] = int(parts[2])
    return [n for n, nr in numbers.items() if nr < numbers[name]]


def _privileged_filter(kind: Optional[str]) -> Any:
    """A seccomp filter loaded without no_new_privileges (so, while
    pidsafe-init is still privileged): a default-allow profile with a few
    denials, or a runc-like default-deny one naming nothing as new as
    clone3 (which then fails with ENOSYS: pidsafe-init forks with clone)."""
    def edit(doc: Dict[str, Any]) -> None:
        if kind is None:
            return
        doc["process"]["noNewPrivileges"] = False
        if kind == "allow-with-denies":
            doc["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                {"names": ["mkdir", "mkdirat", "kexec_load"], "action": "SCMP_ACT_ERRNO"}]}
        else:
            doc["linux"]["seccomp"] = {
                "defaultAction": "SCMP_ACT_ERRNO",
                "syscalls": [{"names": _names_before("clone3"), "action": "SCMP_ACT_ALLOW"}]}
    return edit


@pytest.mark.parametrize("userns", [False, True], ids=["host-users", "userns"])
@pytest.mark.parametrize("seccomp", [None, "allow-with-denies", "runc-like-no-clone3"],
                         ids=["no-seccomp", "seccomp-allow", "seccomp-runc-like"])
def test_a_process_of_ours_has_the_exec_s_identity_when_the_container_first_sees_it(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path, userns: bool,
        seccomp: Optional[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """An exec's process is forked into the container's pid namespace only
    once pidsafe-init has taken the exec's user and capabilities: a
    process of the container watching each pid its namespace hands out
    reads the credentials of every process of ours (pidsafe-init before its
    execve) the moment it shows in /proc.  Forked before that, it would be
    seen as root with every capability (the host's, without a user
    namespace) for the container to signal or, with CAP_SYS_PTRACE, attach
    to: the other escape tests pass on such a runtime, since it is already
    in the container's mount namespace.  With a seccomp filter loaded while
    privileged too (it lets the fork through, by clone3 or clone).

    The first exec's process is held by ptrace before its first instruction
    until the watcher has read it, so that the race is won at least once
    whatever the load (IDENT_EXECS more race it freely)."""
    from hold_after_fork import HoldForked

    uid = 1000
    bundle = make_bundle(["sleep", "1000"], _edits(_with(userns, ptrace=False), _as_user(uid),
                                                   _privileged_filter(seccomp)))
    _probe_in(bundle, probe)
    c = pidsafe.Container.create("idents", bundle, state_dir=str(state_dir))
    report = b""
    execs = 0
    try:
        watcher = c.exec(["/bin/escape_probe", "idents"], exec_id="watcher",
                         stdin=pidsafe.PIPE, stdout=pidsafe.PIPE)
        with watcher:
            assert watcher.stdout is not None and watcher.stdin is not None
            out = watcher.stdout.fileno()
            while b"\n" not in report:
                report += _read_available(out, 60.0) or pytest.fail("the watcher never started")
            assert report == b"READY\n"
            c.start()

            def seen(pid: int) -> None:   # on the tracer's thread, the exec waiting
                nonlocal report
                with open(f"/proc/{pid}/status") as f:
                    inner = [x.split()[-1] for x in f if x.startswith("NSpid:")][0]
                until = time.monotonic() + 60
                while f"IDENT {inner} ".encode() not in report:
                    left = until - time.monotonic()
                    assert left > 0, f"the watcher never read the held {inner}: {report!r}"
                    report += _read_available(out, left)

            hold = HoldForked(seen)
            _seize_exec_helpers(monkeypatch, hold)
            with c.exec(["true"], exec_id="held") as p:
                assert p.wait(timeout=60) == 0
            monkeypatch.undo()
            hold.join()
            assert hold.error is None, hold.error
            assert hold.forked is not None
            while execs < IDENT_EXECS and report.count(b"IDENT ") < IDENTS_WANTED:
                with c.exec(["true"], exec_id=f"e{execs}") as p:
                    assert p.wait(timeout=60) == 0
                execs += 1
                report += _read_available(out)
            watcher.stdin.close()
            while not report.endswith(b"\n") or b"WATCHED " not in report:
                report += _read_available(out, 60.0) or pytest.fail(f"no end: {report!r}")
            assert watcher.wait(timeout=60) == 0
    finally:
        c.delete(force=True)
    text = report.decode()
    lines = text.splitlines()
    assert lines[-1].startswith("WATCHED "), text
    idents = [x.split() for x in lines if x.startswith("IDENT ")]
    # Some of ours were seen before their execve: the held one at least.
    assert idents, f"none of ours seen before its execve in {execs} execs: proved nothing"
    ids = f"{uid}/{uid}/{uid}/{uid}"
    wrong = [x for x in idents
             if x[2:] != [f"uid={ids}", f"gid={ids}", "capeff=0000000000000000",
                          "capprm=0000000000000000"]]
    assert wrong == [], text


#: Containers joining the pod per pod scan test.
JOINERS = 8


@pytest.mark.parametrize("pod_userns, ptrace, joiner_userns",
                         [(False, False, False), (False, False, True), (True, True, False),
                          (True, True, True)],
                         ids=["host-users", "joiner-userns", "pod-userns-cap-sys-ptrace",
                              "both-userns-cap-sys-ptrace"])
def test_no_process_of_ours_in_a_pod_reaches_the_host(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path,
        pod_userns: bool, ptrace: bool, joiner_userns: bool) -> None:
    """Containers joining a pod's pid namespace (``linux.namespaces`` pid
    with a ``path``) bring processes of ours into it while they are made:
    each one's init, forked into it before its mounts and its pivot_root,
    its startContainer hooks and its execs.  A scanner in the pod looks at
    each of them through /proc/PID/{root,cwd,exe,fd/*}: none leads to the
    host, nor runs from a host binary of ours.  (Not with CAP_SYS_PTRACE in
    the initial user namespace, which reaches every process: README,
    Security, "Not covered".)"""
    marker = tmp_path / "host-only-marker"
    marker.write_text("host\n")
    pod_bundle = make_bundle(["sleep", "1000"], _with(pod_userns, ptrace))
    _probe_in(pod_bundle, probe)
    pod = pidsafe.Container.create("pod", pod_bundle, state_dir=str(state_dir))
    try:
        pod.start()
        assert pod.pid is not None
        ns_path = f"/proc/{pod.pid}/ns/pid"

        def join(doc: Dict[str, Any]) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "pid":
                    ns["path"] = ns_path
            if joiner_userns:
                _userns(doc)

        joiner = make_bundle(["sleep", "1000"], _edits(join, _hooks(2)))
        scanner = pod.exec(["/bin/escape_probe", "scan", str(marker), _identity("/"),
                            _ours()], exec_id="scanner", stdin=pidsafe.PIPE,
                           stdout=pidsafe.PIPE)
        with scanner:
            assert scanner.stdout is not None and scanner.stdin is not None
            assert scanner.stdout.readline() == b"READY\n"
            for i in range(JOINERS):
                c = pidsafe.Container.create(f"joiner{i}", joiner, state_dir=str(state_dir))
                try:
                    c.start()
                    with c.exec(["true"], exec_id="e") as p:
                        assert p.wait(timeout=60) == 0
                finally:
                    c.delete(force=True)
            scanner.stdin.close()
            report = scanner.stdout.read().decode()
            assert scanner.wait(timeout=60) == 0
    finally:
        pod.delete(force=True)
    lines = report.splitlines()
    assert lines and lines[-1].startswith("SCANNED "), report
    assert int(lines[-1].split()[1]) > 0
    assert [x for x in lines if x.startswith("HOST")] == [], report


def _init_fd_like(pid: int, ours: int) -> int:
    """The number, in process ``pid``, of the other end of our pipe ``ours``."""
    want = os.readlink(f"/proc/self/fd/{ours}")
    for name in os.listdir(f"/proc/{pid}/fd"):
        if os.readlink(f"/proc/{pid}/fd/{name}") == want:
            return int(name)
    raise AssertionError(f"{pid} has no end of {want}")


@pytest.mark.parametrize("userns, ptrace", [(False, False), (True, True)],
                         ids=["host-users", "userns-cap-sys-ptrace"])
def test_a_process_exec_d_before_start_cannot_forge_inits_status(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path, userns: bool,
        ptrace: bool) -> None:
    """Init waits at the gate with its status pipe open,
    with the program's uid and capabilities: a process exec'd before start
    with those could reopen it through /proc/1/fd/N and write an ERROR
    record, which start would report as the program's failure (and the
    exec FIFO: start the program early).  Also with CAP_SYS_PTRACE in a
    user namespace of its own: init's memory belongs to the host's."""
    bundle = make_bundle(["true"], _with(userns, ptrace))
    _probe_in(bundle, probe)
    c = pidsafe.Container.create("forge", bundle, state_dir=str(state_dir))
    try:
        assert c.pid is not None and c._init._status is not None
        status = _init_fd_like(c.pid, c._init._status.fileno())
        with c.exec(["ls", "/proc/self/fd"], exec_id="ls", stdout=pidsafe.PIPE) as ls:
            fds, _ = ls.communicate(timeout=60)
        assert fds.split() == [b"0", b"1", b"2", b"3"]   # stdio, and ls's own directory
        with c.exec(["/bin/escape_probe", "forge", str(status)], exec_id="forge",
                    stdout=pidsafe.PIPE) as attack:
            out, _ = attack.communicate(timeout=60)
        assert out.startswith(b"DENIED"), out
        c.start()   # would raise the forged error
        assert c.wait(timeout=60) == 0
    finally:
        c.delete(force=True)


def test_an_exec_into_a_container_that_froze_itself_fails_instead_of_hanging(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that can write its own cgroup may freeze it between exec's
    check ("paused?") and the exec: what we put in that cgroup stops.  The
    exec fails with ETIMEDOUT after the entry deadline and leaves nothing
    (the leak check), rather than hang; once thawed, the container is
    whole.  (Had the exec's spawn child been born in that cgroup, our thread
    would have stopped with it, in clone3, for good.)"""
    from pidsafe.container.init import _forked

    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 1.0)
    c = pidsafe.Container.create("frozen", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        c.pause()
        # As if it froze itself after exec looked.
        from pidsafe.container._record import ContainerRecord

        monkeypatch.setattr(ContainerRecord, "frozen", lambda self: False)
        with pytest.raises(pidsafe.ContainerError) as info:
            c.exec(["true"], exec_id="frozen")
        assert info.value.errno == errno.ETIMEDOUT
        assert "did not start within 1 s" in str(info.value)
        monkeypatch.undo()
        c.resume()
        with c.exec(["true"], exec_id="thawed") as p:
            assert p.wait(timeout=60) == 0
    finally:
        c.delete(force=True)


def _cgroups(pid: int, text: Optional[str] = None) -> Dict[str, str]:
    """``/proc/PID/cgroup`` (or ``text``), by hierarchy."""
    if text is None:
        with open(f"/proc/{pid}/cgroup") as f:
            text = f.read()
    return {key: path for _, key, path in (line.split(":", 2) for line in text.splitlines())}


def test_an_exec_whose_helper_is_held_between_its_fork_and_its_send_leaves_nothing(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pidsafe-init held (frozen in the container's cgroup, as a container
    that can write its cgroup may do) between its fork of the exec's
    process into the container and its sending of that process's pidfd,
    for the whole entry deadline: the exec fails with ETIMEDOUT, and the
    forked process, ours (CLONE_PARENT), is killed and reaped through its
    pidfd, copied out of pidsafe-init's fd table before pidsafe-init was
    killed.  (It stayed a zombie without a pidfd for good, a leaked child,
    and the container's init could not finish its exit.)  Here ptrace
    stops pidsafe-init as it returns from the clone: the exact window.

    The container cannot even do that: pidsafe-init is never in its
    cgroups (the forked process joins them once it is ours), so neither
    a freeze nor a ``cgroup.kill`` of the container's reaches it there.
    (It joined them first thing.)"""
    from hold_after_fork import HoldAfterFork

    from pidsafe.container.init import _forked

    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 1.0)
    hold = HoldAfterFork()
    c = pidsafe.Container.create("held", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        _seize_exec_helpers(monkeypatch, hold)
        with pytest.raises(pidsafe.ContainerError) as info:
            c.exec(["true"], exec_id="held")
        assert info.value.errno == errno.ETIMEDOUT, info.value
        hold.join()
        assert hold.error is None, hold.error
        assert hold.forked is not None, "pidsafe-init was never held after a fork: proved nothing"
        assert c.pid is not None
        ours, inits = _cgroups(os.getpid()), _cgroups(c.pid)
        helper = _cgroups(0, hold.cgroups)
        theirs = [key for key in inits if inits[key] != ours.get(key)]
        assert theirs, "the container has no cgroup of its own: proved nothing"
        assert [key for key in theirs if helper[key] == inits[key]] == [], hold.cgroups
        try:
            assert _sys.fdinfo_pid(hold.forked) == -1, "the forked process was not reaped"
        finally:
            os.close(hold.forked)
        monkeypatch.undo()
        with c.exec(["true"], exec_id="after") as p:
            assert p.wait(timeout=60) == 0
        c.kill(signal.SIGKILL)
        assert c.wait(timeout=60) == -signal.SIGKILL   # init's exit completes
    finally:
        c.delete(force=True)


def test_the_process_an_exec_forks_into_the_container_shares_no_memory_with_pidsafe_init(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The process pidsafe-init forks into a running container is visible
    there at once, while pidsafe-init is still in our pid namespace.  A
    container without a user namespace of its own that has CAP_SYS_PTRACE
    may attach to it (non-dumpable asks for that capability in the initial
    user namespace only): had it pidsafe-init's memory (CLONE_VM, as
    bfa0f65 made it), writing there would run code of the container's in
    pidsafe-init, in the host's pid namespace.  A copy reaches nothing."""
    if os.uname().machine != "x86_64":
        pytest.skip("kcmp's syscall number is x86_64's here")
    from hold_after_fork import SharesMemory

    c = pidsafe.Container.create("vm", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        tracer = SharesMemory()
        _seize_exec_helpers(monkeypatch, tracer)
        with c.exec(["true"], exec_id="vm") as p:
            assert p.wait(timeout=60) == 0
        tracer.join()
        assert tracer.error is None, tracer.error
        assert tracer.shared is False, "the forked process shares pidsafe-init's memory"
    finally:
        c.delete(force=True)


def test_an_exec_into_a_container_that_froze_itself_in_the_v1_freezer_never_hangs(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that can write its v1 freezer cgroup freezes it: the
    exec's process, which joins the container's cgroups, freezes there.
    The exec fails with ETIMEDOUT after the entry deadline and the undo
    never blocks on the process it killed, which a v1 freezer keeps from
    dying until it is thawed: it goes to the abandoned registry, reaped
    once the container is thawed.  (The undo waited for it, for good.)"""
    from conftest import settle_abandoned

    from pidsafe.container.init import _forked
    from pidsafe.process import _undo

    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 1.0)
    monkeypatch.setattr(_undo, "KILLED_WAIT", 0.5)
    cgroups_path = f"/pidsafe-test/v1-frozen-{os.getpid()}"

    def edit(doc: Dict[str, Any]) -> None:
        doc["linux"]["cgroupsPath"] = cgroups_path

    c = pidsafe.Container.create("v1frozen", make_bundle(["sleep", "1000"], edit),
                                 state_dir=str(state_dir))
    try:
        c.start()
        cg = c.cgroup()
        assert cg is not None
        if "freezer" not in cg.v1_paths:
            pytest.skip("no v1 freezer hierarchy")
        freezer_state = os.path.join(cg.v1_paths["freezer"], "freezer.state")
        # As if it froze itself after exec looked ("paused?").
        from pidsafe.container._record import ContainerRecord

        monkeypatch.setattr(ContainerRecord, "frozen", lambda self: False)
        with open(freezer_state, "w") as f:
            f.write("FROZEN")
        try:
            with pytest.raises(pidsafe.ContainerError) as info:
                c.exec(["true"], exec_id="frozen")
            assert info.value.errno == errno.ETIMEDOUT, info.value
        finally:
            with open(freezer_state, "w") as f:
                f.write("THAWED")
            monkeypatch.undo()
        settle_abandoned()
        with c.exec(["true"], exec_id="thawed") as p:
            assert p.wait(timeout=60) == 0
    finally:
        c.delete(force=True)


def test_execs_racing_a_container_that_stops_everything_never_hang(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Raced for real: the container's init sends SIGSTOP
    to every process it may signal, in a loop, while execs come in.  Each
    exec either runs (and is stopped afterwards: its own business) or fails
    with ETIMEDOUT; none hangs.  (The old exec helper, born in the
    container's pid namespace sharing our memory until its exec, was
    stopped there, and our thread with it, in clone3, for good.)"""
    from pidsafe.container.init import _forked

    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 1.0)
    bundle = make_bundle(["/bin/escape_probe", "stopper"])
    _probe_in(bundle, probe)
    c = pidsafe.Container.create("stopper", bundle, state_dir=str(state_dir),
                                 stdin=pidsafe.PIPE, stdout=pidsafe.PIPE)
    try:
        c.start()
        init = c.process()
        assert init is not None and init.stdout is not None and init.stdin is not None
        assert init.stdout.readline() == b"READY\n"
        outcomes = []
        for i in range(ENTRIES // 2):   # each one stopped costs the deadline
            try:
                p = c.exec(["true"], exec_id=f"x{i}")
            except pidsafe.ContainerError as exc:
                assert exc.errno == errno.ETIMEDOUT, exc
                outcomes.append("timed out")
            else:
                with p:
                    p.kill()   # stopped or not, it is ours to end
                    p.wait(timeout=60)
                outcomes.append("ran")
        assert len(outcomes) == ENTRIES // 2
        init.stdin.close()
    finally:
        c.delete(force=True)


def test_a_container_joining_a_pod_that_stops_everything_never_hangs(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A container joining a pod's pid namespace has its init forked in
    before its mounts: from then on the pod's processes see it and, as its
    uid, may SIGSTOP it.  Here the pod's init stops everything it may
    signal, in a loop: each create either succeeds or fails with ETIMEDOUT
    after the deadline, leaving nothing (the leak check); none hangs.  (It
    waited for init's READY for ever.)"""
    from pidsafe.container.init import _forked

    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 1.0)
    pod_bundle = make_bundle(["/bin/escape_probe", "stopper"])
    _probe_in(pod_bundle, probe)
    pod = pidsafe.Container.create("stoppod", pod_bundle, state_dir=str(state_dir),
                                   stdin=pidsafe.PIPE, stdout=pidsafe.PIPE)
    try:
        pod.start()
        init = pod.process()
        assert init is not None and init.stdout is not None and init.stdin is not None
        assert init.stdout.readline() == b"READY\n"
        assert pod.pid is not None
        ns_path = f"/proc/{pod.pid}/ns/pid"

        def join(doc: Dict[str, Any]) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "pid":
                    ns["path"] = ns_path

        joiner = make_bundle(["true"], join)
        outcomes: List[str] = []
        # Until one is stopped (each one stopped costs the deadline): on a
        # loaded machine the stopper may not run while an init is made.
        for i in range(20):
            if "timed out" in outcomes:
                break
            try:
                c = pidsafe.Container.create(f"joiner{i}", joiner, state_dir=str(state_dir))
            except pidsafe.ContainerError as exc:
                assert exc.errno == errno.ETIMEDOUT, exc
                assert "create: the process did not start within 1 s" in str(exc)
                outcomes.append("timed out")
            else:
                c.delete(force=True)
                outcomes.append("created")
        assert "timed out" in outcomes, "the stopper never stopped an init: proved nothing"
        assert [n for n in os.listdir(state_dir) if n.startswith("joiner")] == []
        init.stdin.close()
    finally:
        pod.delete(force=True)


@pytest.mark.parametrize("wait_exec", [False, True], ids=["status", "poststart-fifo"])
def test_starting_a_pod_member_the_pod_stopped_fails_instead_of_hanging(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path,
        monkeypatch: pytest.MonkeyPatch, wait_exec: bool) -> None:
    """Init waits at the gate in the pod's pid namespace, where it is not
    pid 1: the pod's processes may SIGSTOP it there.  start then waited for
    its exec for ever (on its status pipe; with poststart hooks, on the
    FIFO).  Now start fails with ETIMEDOUT after the deadline and kills
    init, so that the program never runs after a failed start."""
    from pidsafe.container.init import _forked

    monkeypatch.setattr(_forked, "ENTER_TIMEOUT", 1.0)
    pod_bundle = make_bundle(["sleep", "1000"])
    _probe_in(pod_bundle, probe)
    pod = pidsafe.Container.create("gatepod", pod_bundle, state_dir=str(state_dir))
    try:
        pod.start()
        assert pod.pid is not None
        ns_path = f"/proc/{pod.pid}/ns/pid"

        def join(doc: Dict[str, Any]) -> None:
            for ns in doc["linux"]["namespaces"]:
                if ns["type"] == "pid":
                    ns["path"] = ns_path
            if wait_exec:
                doc["hooks"] = {"poststart": [{"path": "/bin/true"}]}

        c = pidsafe.Container.create("member", make_bundle(["true"], join),
                                     state_dir=str(state_dir))
        try:
            with pod.exec(["/bin/escape_probe", "stopper"], exec_id="stopper",
                          stdin=pidsafe.PIPE, stdout=pidsafe.PIPE) as stopper:
                assert stopper.stdout is not None and stopper.stdin is not None
                assert stopper.stdout.readline() == b"READY\n"
                init = c.process()
                assert init is not None
                # Ours (CLONE_PARENT): wait until the stopper has stopped it.
                os.waitid(os.P_PIDFD, init.fileno(), os.WSTOPPED | os.WNOWAIT)
                with pytest.raises(pidsafe.ContainerError) as info:
                    c.start()
                assert info.value.errno == errno.ETIMEDOUT, info.value
                assert "start: the process did not start within 1 s" in str(info.value)
                stopper.stdin.close()
                stopper.kill()
                stopper.wait(timeout=60)
            assert init.wait(timeout=60) == -signal.SIGKILL   # never ran the program
        finally:
            c.delete(force=True)
    finally:
        pod.delete(force=True)


#: How long each mount-target race may take (creates under a live racer; as
#: many rounds as fit, up to MOUNT_RACE_ROUNDS): CI stays under ~20 s.
MOUNT_RACE_SECONDS = 5.0   # x3 variants; --count N hunts longer
MOUNT_RACE_ROUNDS = 2000


@pytest.mark.parametrize("userns, mountns", [(False, False), (False, True), (True, True)],
                         ids=["host-mount-ns", "mount-ns", "userns"])
def test_a_mount_target_swapped_for_a_symlink_never_mounts_over_the_host(
        probe: pathlib.Path, make_bundle: Any, state_dir: pathlib.Path,
        tmp_path: pathlib.Path, userns: bool, mountns: bool) -> None:
    """A mount's target is looked up inside the rootfs, which another
    container sharing it (the racer) can write: swapped for a symlink to a
    host directory after a check, a target resolved by name from the host
    mounts over that host directory (runc's CVE-2021-30465 class).  Over
    as many creates as fit, with the swap running all the while: no mount
    point in our namespace ever is (or is under) the host directory, and
    its canary file is never hidden or changed.  Without a mount namespace
    init mounts in ours, where such a mount would be seen at once; and each
    delete, never retried, finishes (the racer renaming what is above or at
    the mount points meanwhile)."""
    tally = escape_races.mount_target(probe, make_bundle, state_dir, tmp_path,
                                      MOUNT_RACE_ROUNDS, MOUNT_RACE_SECONDS,
                                      with_userns=userns, with_mountns=mountns)
    assert not tally.escapes and not tally.unexpected, tally.escapes + tally.unexpected
    assert tally.rounds > 1
    assert tally.followed or tally.refused, (
        f"the racer never won: the test proved nothing ({tally})")
