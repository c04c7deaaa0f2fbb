"""pidsafe._sys: errno -> OSError subclass with the step, EINTR in one place, shims."""

from __future__ import annotations

import errno
import fcntl
import os
import pathlib
import select
import signal
import struct
import subprocess
from typing import Any, List

import pytest

import pidsafe
from pidsafe import _sys


def is_cloexec(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)


def zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    return stat[stat.rindex(")") + 2] == "Z"


def wait_zombie(pid: int, pidfd: int) -> None:
    """Block until the child exits: a pidfd polls readable then (Linux 5.3)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    assert zombie(pid)


# -- errors -----------------------------------------------------------------------

@pytest.mark.parametrize("err,cls", [
    (errno.ENOENT, FileNotFoundError), (errno.EACCES, PermissionError),
    (errno.EPERM, PermissionError), (errno.ESRCH, ProcessLookupError),
    (errno.ECHILD, ChildProcessError), (errno.EEXIST, FileExistsError),
    (errno.ENOTDIR, NotADirectoryError), (errno.EINTR, InterruptedError),
    (errno.EAGAIN, BlockingIOError), (errno.EBADF, OSError), (errno.EINVAL, OSError),
])
def test_make_oserror_picks_the_subclass_and_names_the_step(err: int, cls: type) -> None:
    exc = _sys.make_oserror(err, "pidfd_open")
    assert type(exc) is cls and exc.errno == err
    assert exc.strerror == f"pidfd_open: {os.strerror(err)}"
    assert str(exc) == f"[Errno {err}] pidfd_open: {os.strerror(err)}"
    assert exc.filename is None


def test_make_oserror_carries_paths() -> None:
    exc = _sys.make_oserror(errno.ENOENT, "move_mount", "/from", "/to")
    assert isinstance(exc, FileNotFoundError)
    assert (exc.filename, exc.filename2) == ("/from", "/to")
    assert "move_mount" in str(exc) and "/from" in str(exc) and "/to" in str(exc)
    exc = _sys.make_oserror(errno.EACCES, "exec", b"/bin/x")
    assert exc.filename == b"/bin/x"


def test_retry_retries_eintr_only() -> None:
    calls: List[int] = []

    def flaky(ret_after: int) -> int:
        calls.append(1)
        if len(calls) < ret_after:
            _sys.ffi.errno = errno.EINTR
            return -1
        return 42

    assert _sys._retry("flaky", flaky, 4) == 42
    assert len(calls) == 4

    def failing() -> int:
        _sys.ffi.errno = errno.ENOENT
        return -1

    with pytest.raises(FileNotFoundError) as info:
        _sys._retry("the step", failing, filename="/some/path")
    assert "the step" in str(info.value) and info.value.filename == "/some/path"


def test_retry_lets_a_signal_handler_exception_through() -> None:
    class Boom(Exception):
        pass

    def handler(*a: Any) -> None:
        raise Boom()

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        def interrupted() -> int:
            os.kill(os.getpid(), signal.SIGUSR1)  # the handler runs between retries
            _sys.ffi.errno = errno.EINTR
            return -1

        with pytest.raises(Boom):
            _sys._retry("interrupted", interrupted)
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_errno_of() -> None:
    assert _sys.errno_of(lambda: None) == 0
    assert _sys.errno_of(lambda: _sys.close_range(0xFFFFFFFF, 0xFFFFFFFF)) == 0

    def raises() -> None:
        raise _sys.make_oserror(errno.ENOSYS, "x")

    assert _sys.errno_of(raises) == errno.ENOSYS


def test_native_version_matches_the_package() -> None:
    assert _sys.ffi.string(_sys.lib.pidsafe_version()).decode() == pidsafe.__version__


def test_a_stale_extension_fails_loudly_naming_itself() -> None:
    from pidsafe._sys._core import check_built_for

    check_built_for("pidsafe._libseccomp", pidsafe.__version__)
    with pytest.raises(ImportError, match=r"pidsafe\._libseccomp was built for pidsafe 0\.0\.1"):
        check_built_for("pidsafe._libseccomp", "0.0.1")


def test_every_child_stage_has_a_name() -> None:
    stages = {getattr(_sys.lib, n): n for n in dir(_sys.lib) if n.startswith("PIDSAFE_STAGE_")}
    assert len(stages) >= 9
    missing = {n for v, n in stages.items() if v not in _sys.STAGE_NAMES}
    assert not missing, f"stages the parent cannot name in its errors: {missing}"


# -- pidfd shims ------------------------------------------------------------------

def test_pidfd_open_and_send_signal() -> None:
    fd = _sys.pidfd_open(os.getpid())
    try:
        assert is_cloexec(fd)
        _sys.pidfd_send_signal(fd, 0)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as info:
        _sys.pidfd_send_signal(fd, 0)  # closed: EBADF
    assert info.value.errno == errno.EBADF and "pidfd_send_signal" in str(info.value)


def test_pidfd_open_errors() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        too_big = int(f.read()) + 1
    with pytest.raises(ProcessLookupError, match="pidfd_open"):
        _sys.pidfd_open(too_big)
    with pytest.raises(OSError) as info:
        _sys.pidfd_open(0)
    assert info.value.errno == errno.EINVAL


def test_probe_child_and_waitid_pidfd() -> None:
    pid, fd = _sys.probe_child()
    try:
        assert pid > 0 and is_cloexec(fd)
        wait_zombie(pid, fd)
        assert _sys.pidfd_exit_info(fd) is None  # not reaped yet
        assert _sys.waitid_pidfd(fd, _sys.WEXITED) == (pid, _sys.CLD_EXITED, 0)
        assert _sys.pidfd_exit_info(fd) == 0
        with pytest.raises(ChildProcessError, match="waitid"):
            _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
        with pytest.raises(ProcessLookupError, match="pidfd_send_signal"):
            _sys.pidfd_send_signal(fd, signal.SIGKILL)
    finally:
        os.close(fd)


def test_waitid_pidfd_nohang_killed_and_exit_status() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        assert _sys.waitid_pidfd(p.fileno(), _sys.WEXITED | _sys.WNOHANG) is None
        _sys.pidfd_send_signal(p.fileno(), signal.SIGKILL)
        wait_zombie(p.pid, p.fileno())
        assert p.wait() == -signal.SIGKILL
    with pidsafe.spawn(["sh", "-c", "exit 3"]) as p:
        wait_zombie(p.pid, p.fileno())
        res = _sys.waitid_pidfd(p.fileno(), _sys.WEXITED | _sys.WNOHANG)
        assert res == (p.pid, _sys.CLD_EXITED, 3)
        # The raw wait status, whoever reaped: exit 3 is 0x300.
        assert _sys.pidfd_exit_info(p.fileno()) == 3 << 8
        assert p.wait() == 3  # reaped behind its back: it asks the kernel too


def test_waitid_status_is_waitid_pidfd_in_one_int() -> None:
    with pidsafe.spawn(["sleep", "30"]) as p:
        assert _sys.waitid_status(p.fileno(), _sys.WEXITED | _sys.WNOHANG) == 0
        _sys.pidfd_send_signal(p.fileno(), signal.SIGKILL)
        wait_zombie(p.pid, p.fileno())
        status = _sys.waitid_status(p.fileno(), _sys.WEXITED | _sys.WNOWAIT)
        assert status == _sys.CLD_KILLED << 8 | signal.SIGKILL
        assert _sys.status_returncode(status) == -signal.SIGKILL
        assert p.wait() == -signal.SIGKILL
    with pidsafe.spawn(["sh", "-c", "exit 3"]) as p:
        wait_zombie(p.pid, p.fileno())
        status = _sys.waitid_status(p.fileno(), _sys.WEXITED | _sys.WNOHANG)
        assert status == _sys.CLD_EXITED << 8 | 3 and _sys.status_returncode(status) == 3
        with pytest.raises(ChildProcessError, match=r"waitid\(P_PIDFD\)"):
            _sys.waitid_status(p.fileno(), _sys.WEXITED | _sys.WNOHANG)
        assert p.wait() == 3


def test_unreaped_child_asks_the_kernel_and_reaps_nothing() -> None:
    with pidsafe.spawn(["sh", "-c", "exit 3"]) as p:
        assert _sys.unreaped_child(p.fileno())
        wait_zombie(p.pid, p.fileno())
        assert _sys.unreaped_child(p.fileno())   # a zombie is still to be reaped
        assert _sys.unreaped_child(p.fileno())   # and asking reaped nothing
        assert p.wait() == 3
        assert not _sys.unreaped_child(p.fileno())   # reaped
    fd = _sys.pidfd_open(os.getpid())   # not our child
    r, w = os.pipe()
    try:
        assert not _sys.unreaped_child(fd)
        with pytest.raises(OSError) as info:
            _sys.unreaped_child(r)   # not a pidfd
        assert info.value.errno == errno.EBADF
    finally:
        for x in (fd, r, w):
            os.close(x)


def test_waitid_pidfd_of_a_non_child() -> None:
    fd = _sys.pidfd_open(os.getpid())
    try:
        with pytest.raises(ChildProcessError, match=r"waitid\(P_PIDFD\)"):
            _sys.waitid_pidfd(fd, _sys.WEXITED | _sys.WNOHANG)
    finally:
        os.close(fd)


def test_pidfd_getfd_duplicates_the_childs_fd() -> None:
    r, w = os.pipe()
    try:
        with pidsafe.spawn(["cat"], stdin=subprocess.PIPE, stdout=w) as p:
            got = _sys.pidfd_getfd(p.fileno(), 1)
            try:
                assert is_cloexec(got)
                assert os.fstat(got).st_ino == os.fstat(w).st_ino
            finally:
                os.close(got)
            with pytest.raises(OSError) as info:
                _sys.pidfd_getfd(p.fileno(), 999)
            assert info.value.errno == errno.EBADF and "pidfd_getfd" in str(info.value)
            p.communicate(b"")
    finally:
        os.close(r)
        os.close(w)


# -- fds and paths ----------------------------------------------------------------

def test_close_range() -> None:
    fd = os.open(os.devnull, os.O_RDONLY)  # Python makes it cloexec
    os.set_inheritable(fd, True)
    _sys.close_range(fd, fd, 4)  # CLOSE_RANGE_CLOEXEC
    assert is_cloexec(fd)
    _sys.close_range(fd, fd)
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(OSError) as info:
        _sys.close_range(5, 4)
    assert info.value.errno == errno.EINVAL and "close_range" in str(info.value)


def test_openat2_resolves_inside_the_root(tmp_path: pathlib.Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "marker").write_text("inside")
    os.symlink("/etc", tmp_path / "abs-link")
    root = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for path in ("../../../etc/marker", "abs-link/marker"):
            fd = _sys.openat2(root, path, os.O_RDONLY | os.O_CLOEXEC,
                              resolve=_sys.RESOLVE_IN_ROOT)
            try:
                assert is_cloexec(fd)
                assert os.read(fd, 100) == b"inside"
            finally:
                os.close(fd)
        with pytest.raises(OSError) as info:
            _sys.openat2(root, "abs-link/marker", os.O_RDONLY | os.O_CLOEXEC,
                         resolve=_sys.RESOLVE_NO_SYMLINKS)
        assert info.value.errno == errno.ELOOP and info.value.filename == "abs-link/marker"
        with pytest.raises(FileNotFoundError) as info2:
            _sys.openat2(root, "missing", os.O_RDONLY | os.O_CLOEXEC, filename="shown")
        assert info2.value.filename == "shown" and "openat2" in str(info2.value)
    finally:
        os.close(root)


def test_open_tree_errors_name_the_path(tmp_path: pathlib.Path) -> None:
    fd = _sys.open_tree(-100, str(tmp_path), _sys.OPEN_TREE_CLOEXEC)
    try:
        assert is_cloexec(fd)
    finally:
        os.close(fd)
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as info:
        _sys.open_tree(-100, missing, _sys.OPEN_TREE_CLOEXEC)
    assert info.value.filename == missing and "open_tree" in str(info.value)


def test_has_clone3_trampoline() -> None:
    assert _sys.has_clone3_trampoline() == (os.uname().machine in ("x86_64", "aarch64"))


def test_fault_harness_sees_every_submodule(faults: Any) -> None:
    # _sys is split by concept; each submodule looks `lib` up at call time,
    # so the harness (which swaps `lib` in every pidsafe._sys* module) sees
    # every native call.
    def op() -> None:
        os.close(_sys.pidfd_open(os.getpid()))                             # _pidfd
        os.close(_sys.openat2(_sys.AT_FDCWD, "/", os.O_RDONLY | os.O_CLOEXEC))  # _mount
        with pidsafe.spawn(["true"]) as p:                                   # _spawn
            p.wait()

    faults.count(op)
    for name in ("pidsafe_pidfd_open", "pidsafe_openat2", "pidsafe_spawn",
                 "pidsafe_waitid_pidfd_status"):
        assert name in faults.calls


# -- namespaces, terminals --------------------------------------------------------

def test_ns_type_tells_a_namespace_fd(tmp_path: pathlib.Path) -> None:
    with open("/proc/self/ns/user") as ns, open("/proc/self/ns/mnt") as mnt:
        assert _sys.ns_type(ns.fileno()) == _sys.CLONE_NEWUSER
        assert _sys.ns_type(mnt.fileno()) == _sys.CLONE_NEWNS
    (tmp_path / "f").write_text("")
    with open(tmp_path / "f") as f:
        with pytest.raises(OSError) as info:
            _sys.ns_type(f.fileno())
    assert info.value.errno == errno.ENOTTY and "NS_GET_NSTYPE" in str(info.value)


def test_pty_number_tells_a_pty_master() -> None:
    master, peer = os.openpty()
    try:
        n = _sys.pty_number(master)
        assert os.ttyname(peer) == f"/dev/pts/{n}"
        with pytest.raises(OSError, match="TIOCGPTN"):
            _sys.pty_number(peer)
    finally:
        os.close(master)
        os.close(peer)


# -- prctl, capabilities ----------------------------------------------------------

def test_child_subreaper_flag_round_trips() -> None:
    assert not _sys.child_subreaper()
    _sys.set_child_subreaper(True)
    try:
        assert _sys.child_subreaper()
    finally:
        _sys.set_child_subreaper(False)
    assert not _sys.child_subreaper()


def test_dumpable_and_pdeathsig() -> None:
    assert _sys.dumpable()
    _sys.set_dumpable(False)
    try:
        assert not _sys.dumpable()
    finally:
        _sys.set_dumpable(True)
    assert _sys.dumpable()
    assert _sys.pdeathsig() == 0


def test_capget_and_capset() -> None:
    caps = _sys.capget()
    assert caps.effective & ~caps.permitted == 0
    assert caps.has("SYS_ADMIN") == bool(caps.effective >> 21 & 1)   # CAP_SYS_ADMIN is 21
    if caps.has("KILL"):
        _sys.capset(caps.replace(effective=caps.effective & ~(1 << 5)))
        try:
            assert not _sys.capget().has("KILL")
        finally:
            _sys.capset(caps)
        assert _sys.capget() == caps
    # More than permitted: refused, naming the step.
    with pytest.raises(PermissionError, match="capset"):
        _sys.capset(caps.replace(permitted=(1 << 64) - 1, effective=(1 << 64) - 1))
    assert _sys.capget() == caps


# -- bpf --------------------------------------------------------------------------

#: r0 = 1; exit: a cgroup device program that allows everything.
ALLOW_ALL = bytes([0xB7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])


@pytest.mark.root
def test_bpf_prog_load_gives_a_cloexec_fd() -> None:
    fd = _sys.bpf_prog_load(_sys.BPF_PROG_TYPE_CGROUP_DEVICE, ALLOW_ALL, "GPL", "pidsafe_test")
    try:
        assert is_cloexec(fd)
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog"
    finally:
        os.close(fd)


@pytest.mark.root
def test_bpf_prog_load_refused_fills_the_verifier_log() -> None:
    log = bytearray(4096)
    exit_only = ALLOW_ALL[8:]   # r0 never set
    with pytest.raises(OSError) as info:
        _sys.bpf_prog_load(_sys.BPF_PROG_TYPE_CGROUP_DEVICE, exit_only, "GPL", "pidsafe_test",
                           log)
    assert info.value.errno == errno.EACCES and "bpf(BPF_PROG_LOAD)" in str(info.value)
    assert b"R0" in log.split(b"\0", 1)[0]
    with pytest.raises(ValueError):
        _sys.bpf_prog_load(_sys.BPF_PROG_TYPE_CGROUP_DEVICE, ALLOW_ALL[:5], "GPL", "x")


@pytest.mark.root
def test_bpf_prog_attach_to_a_non_cgroup_is_refused(tmp_path: pathlib.Path) -> None:
    prog = _sys.bpf_prog_load(_sys.BPF_PROG_TYPE_CGROUP_DEVICE, ALLOW_ALL, "GPL", "pidsafe_test")
    target = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with pytest.raises(OSError, match=r"bpf\(BPF_PROG_ATTACH\)"):
            _sys.bpf_prog_attach(target, prog, _sys.BPF_CGROUP_DEVICE, _sys.BPF_F_ALLOW_MULTI)
    finally:
        os.close(target)
        os.close(prog)


# -- the static programs, the child's failure record ------------------------------

def test_program_locates_the_installed_helpers() -> None:
    for name in ("pidsafe-helper", "pidsafe-init"):
        prog = _sys.program(name)
        assert prog.name == name and os.path.basename(prog.path) == name
        assert os.access(prog.exec_path, os.X_OK)
        assert _sys.program(name) is prog   # found once
    with pytest.raises(ValueError):
        _sys.program("sh")


def test_program_says_what_is_missing(tmp_path: pathlib.Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from pidsafe._sys import _libexec

    monkeypatch.setattr(_libexec, "LIBEXEC", str(tmp_path))
    monkeypatch.setattr(_libexec, "_found", {})
    with pytest.raises(FileNotFoundError) as info:
        _sys.program("pidsafe-init")
    assert info.value.filename == str(tmp_path / "pidsafe-init")
    assert "reinstall pidsafe" in str(info.value)


def test_programs_are_exec_d_from_a_sealed_copy_made_once() -> None:
    """CVE-2019-5736: what pidsafe execs is a memfd copy nobody can write."""
    from pidsafe._sys import _sealed

    for name in ("pidsafe-helper", "pidsafe-init"):
        prog = _sys.program(name)
        fd = prog.exec_fd()
        assert prog.exec_fd() == fd                       # made once per process
        assert fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        assert os.readlink(f"/proc/self/fd/{fd}") == f"/memfd:pidsafe:{name} (deleted)"
        seals = fcntl.fcntl(fd, _sealed.F_GET_SEALS)
        assert seals & _sealed.SEALS == _sealed.SEALS and _sealed.is_sealed(fd)
        st = os.fstat(fd)
        assert st.st_mode & 0o7777 == 0o511
        with open(prog.path, "rb") as f:
            assert os.pread(fd, st.st_size + 1, 0) == f.read()
        # Not through this fd, nor any other open of it, as root.
        rw = os.open(f"/proc/self/fd/{fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            with pytest.raises(PermissionError):
                os.pwrite(rw, b"\x7f", 0)
            with pytest.raises(PermissionError):
                os.ftruncate(rw, 1)
            with pytest.raises(PermissionError):   # F_SEAL_SEAL: no other seal, ever
                fcntl.fcntl(rw, _sealed.F_ADD_SEALS, 0x10)
            if seals & _sealed.F_SEAL_EXEC:        # Linux 6.3: the mode is fixed too
                with pytest.raises(PermissionError):
                    os.fchmod(rw, 0o400)
        finally:
            os.close(rw)


def test_a_sealed_copy_closed_behind_its_back_is_made_again() -> None:
    from pidsafe._sys import _sealed

    prog = _sys.program("pidsafe-init")
    fd = prog.exec_fd()
    dev_ino = os.fstat(fd)[1:3]
    os.close(fd)
    stranger = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)   # may take its number
    try:
        fresh = prog.exec_fd()
        assert fresh != stranger and _sealed.is_sealed(fresh)
        assert os.fstat(fresh)[1:3] != dev_ino
    finally:
        os.close(stranger)


def test_a_forked_child_execs_the_sealed_copy_it_inherited() -> None:
    fd = _sys.program("pidsafe-init").exec_fd()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - the child
        os._exit(0 if _sys.program("pidsafe-init").exec_fd() == fd else 1)
    assert os.waitpid(pid, 0)[1] == 0


def test_read_child_error() -> None:
    r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    try:
        assert _sys.read_child_error(r) is None   # nothing yet: exec ran
        os.write(w, struct.pack("=ii", _sys.STAGE_CHDIR, errno.ENOENT))
        assert _sys.read_child_error(r) == (_sys.STAGE_CHDIR, errno.ENOENT)
        os.close(w)
        w = -1
        assert _sys.read_child_error(r) is None   # EOF
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    exc = _sys.child_error(_sys.STAGE_CHDIR, errno.ENOENT, "/x", who="container init")
    assert isinstance(exc, FileNotFoundError) and exc.filename == "/x"
    assert exc.strerror == f"container init: chdir: {os.strerror(errno.ENOENT)}"
