"""get_userns_fd, UsernsCache, spawn into user namespaces, `pidsafe userns`.

How a namespace's maps are checked: a process is started *in* it
(``nsenter --user=/proc/self/fd/N``, a different code path from pidsafe's
own spawn(userns=)) and reads its own /proc/self/uid_map, gid_map and
setgroups.  The kernel prints those; nothing here trusts pidsafe's word.

The helper is killed (and optionally reaped, as a foreign __WALL reaper
would) at each stage through ``pidsafe.userns._userns._test_hook``.
"""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import os
import select
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import pidsafe
from pidsafe import _sys
from pidsafe.userns import _userns
from pidsafe import IDMap, IDMapError

PIPE = subprocess.PIPE
MAP = "0:100000:65536"
NS_GET_NSTYPE = 0xB703  # ioctl_ns(2), Linux 4.11

pytestmark = pytest.mark.root


def ns_maps(fd: Any) -> Tuple[str, str, str]:
    """(uid_map, gid_map, setgroups) as seen by a process inside the namespace."""
    n = fd.fileno() if hasattr(fd, "fileno") else fd
    with pidsafe.spawn(["nsenter", f"--user=/proc/self/fd/{n}", "--preserve-credentials",
                        "sh", "-c", "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map;"
                        " echo --; cat /proc/self/setgroups"],
                       pass_fds=[n], stdout=PIPE, stderr=PIPE) as p:
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert out is not None
    uid, gid, sg = out.decode().split("--\n")
    return (str(IDMap.from_kernel(uid)), str(IDMap.from_kernel(gid)), sg.strip())


def assert_userns_fd(fd: pidsafe.OwnedFd) -> None:
    """An open, close-on-exec fd of a user namespace that is not ours."""
    n = fd.fileno()
    assert fcntl.fcntl(n, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert fcntl.ioctl(n, NS_GET_NSTYPE) == _sys.CLONE_NEWUSER
    assert os.fstat(n).st_ino != os.stat("/proc/self/ns/user").st_ino


@pytest.fixture
def hook() -> Iterator[Callable[[Optional[Callable[[str, _userns.HelperView], None]]], None]]:
    """Install a _test_hook for the duration of one test."""
    def install(fn: Optional[Callable[[str, _userns.HelperView], None]]) -> None:
        _userns._test_hook = fn

    try:
        yield install
    finally:
        _userns._test_hook = None


def kill_helper(h: _userns.HelperView, reap: bool) -> None:
    """SIGKILL the helper; wait until it is a zombie, or reap it like a
    foreign __WALL reaper would (os.waitid on its pidfd)."""
    signal.pidfd_send_signal(h.pidfd, signal.SIGKILL)
    select.select([h.pidfd], [], [])  # readable once it has exited
    if reap:
        os.waitid(os.P_PIDFD, h.pidfd, os.WEXITED | _sys.WALL)
    else:
        with open(f"/proc/{h.pid}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] == "Z"


# -- get_userns_fd ----------------------------------------------------------------


def test_maps_are_written() -> None:
    with pidsafe.get_userns_fd(MAP, "0:200000:1000") as fd:
        assert_userns_fd(fd)
        assert ns_maps(fd) == (MAP, "0:200000:1000", "deny")
    assert fd.closed


def test_idmap_objects_and_many_ranges() -> None:
    um = IDMap.parse("1000:0:1,0:100000:1000,1001:101001:64535")
    with pidsafe.get_userns_fd(um, um, setgroups="allow") as fd:
        assert ns_maps(fd) == (str(um), str(um), "allow")


def test_each_call_makes_a_new_namespace() -> None:
    with pidsafe.get_userns_fd(MAP, MAP) as a, pidsafe.get_userns_fd(MAP, MAP) as b:
        assert os.fstat(a.fileno()).st_ino != os.fstat(b.fileno()).st_ino


@pytest.mark.parametrize("uidmap,gidmap,setgroups,exc,message", [
    ("0:0", MAP, "deny", IDMapError, "uidmap: range 0 '0:0': missing field"),
    (MAP, "0:1:0", "deny", IDMapError, "gidmap: range 0 '0:1:0': size is 0"),
    (MAP, MAP, "maybe", ValueError, "setgroups must be 'deny' or 'allow', not 'maybe'"),
    (0, MAP, "deny", TypeError, "uidmap must be an IDMap"),
    (",".join(f"{i * 2}:{4000000000 + i * 2}:1" for i in range(340)), MAP, "deny",
     IDMapError, "uidmap: the map is .* bytes as the kernel spells it"),
])
def test_bad_arguments_create_nothing(uidmap: Any, gidmap: Any, setgroups: str,
                                      exc: type, message: str,
                                      hook: Callable[..., None]) -> None:
    called: List[str] = []
    hook(lambda stage, h: called.append(stage))
    with pytest.raises(exc, match=message):
        pidsafe.get_userns_fd(uidmap, gidmap, setgroups=setgroups)
    assert called == []  # no helper was ever made


@pytest.mark.parametrize("stage", ["cloned", "opened", "proven"])
def test_helper_killed_at_stage_zombie(stage: str, hook: Callable[..., None]) -> None:
    """A zombie helper still proves alive and still holds its namespace."""
    hook(lambda s, h: kill_helper(h, reap=False) if s == stage else None)
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        assert_userns_fd(fd)
        assert ns_maps(fd) == (MAP, MAP, "deny")


@pytest.mark.parametrize("stage", ["cloned", "opened"])
def test_helper_reaped_before_proof(stage: str, hook: Callable[..., None]) -> None:
    """Reaped before the proof: a clear error, never a namespace."""
    hook(lambda s, h: kill_helper(h, reap=True) if s == stage else None)
    with pytest.raises(pidsafe.HelperDiedError, match="before its namespace could be") as ei:
        pidsafe.get_userns_fd(MAP, MAP)
    assert ei.value.errno == errno.ESRCH
    assert isinstance(ei.value, ProcessLookupError)


STEPS = ["open ns/user", "open setgroups", "open uid_map", "open gid_map",
         "write setgroups", "write uid_map", "write gid_map"]


@pytest.fixture
def fail_next_proc_call(monkeypatch: pytest.MonkeyPatch) -> Callable[[int], None]:
    """``arm(err)``: the next os.open/os.write fails with ``err``, as the
    kernel's own open or write does when it races with the helper's reaping
    (EACCES from ns/user, EINVAL from uid_map: the task vanished between
    the path lookup and the open)."""
    armed: List[int] = []
    real_open, real_write = os.open, os.write

    def fail_or(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            if armed:
                err = armed.pop()
                raise OSError(err, os.strerror(err))
            return real(*args, **kw)
        return call

    monkeypatch.setattr(os, "open", fail_or(real_open))
    monkeypatch.setattr(os, "write", fail_or(real_write))
    return armed.append


@pytest.mark.parametrize("err", [errno.EACCES, errno.EINVAL, errno.ENOENT, errno.EPERM])
@pytest.mark.parametrize("step", STEPS)
def test_helper_reaped_during_open_or_write_is_helper_died(
        step: str, err: int, hook: Callable[..., None],
        fail_next_proc_call: Callable[[int], None]) -> None:
    """Whatever errno the open or write under /proc/PID fails
    with, a helper that has been reaped meanwhile is HelperDiedError."""
    def on_stage(s: str, h: _userns.HelperView) -> None:
        if s == step:
            kill_helper(h, reap=True)
            fail_next_proc_call(err)

    hook(on_stage)
    with pytest.raises(pidsafe.HelperDiedError, match="user-namespace helper .* (died|reaped)") \
            as ei:
        pidsafe.get_userns_fd(MAP, MAP)
    assert ei.value.errno == errno.ESRCH
    assert isinstance(ei.value.__cause__, OSError) and ei.value.__cause__.errno == err


@pytest.mark.parametrize("err", [errno.EACCES, errno.EINVAL, errno.EPERM])
@pytest.mark.parametrize("step", STEPS)
def test_open_or_write_refused_with_live_helper_keeps_its_error(
        step: str, err: int, hook: Callable[..., None],
        fail_next_proc_call: Callable[[int], None]) -> None:
    """A genuine refusal (the helper alive) stays what it is, naming the step."""
    hook(lambda s, h: fail_next_proc_call(err) if s == step else None)
    with pytest.raises(OSError) as ei:
        pidsafe.get_userns_fd(MAP, MAP)
    assert not isinstance(ei.value, pidsafe.HelperDiedError)
    assert ei.value.errno == err
    assert step.split()[1] in str(ei.value) and "/proc/" in str(ei.value.filename)


def test_spawn_child_reaped_during_map_write_is_helper_died(
        hook: Callable[..., None], fail_next_proc_call: Callable[[int], None]) -> None:
    def on_stage(s: str, h: _userns.HelperView) -> None:
        if s == "write uid_map":
            kill_helper(h, reap=True)
            fail_next_proc_call(errno.EINVAL)

    hook(on_stage)
    with pytest.raises(pidsafe.HelperDiedError, match="child .* reaped while its uid_map"):
        pidsafe.spawn(["true"], uidmap=MAP, gidmap=MAP)


def test_a_timeout_handler_during_a_map_open_is_not_taken_for_the_open(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGALRM-style handler raises TimeoutError (an OSError) right after
    uid_map was opened: it must come out as itself, not be re-examined and
    reported as the open's failure ("open uid_map ... [Errno 110]")."""
    alarm = TimeoutError("alarm")

    def handler(signum: int, frame: Any) -> None:
        raise alarm

    real_open = os.open

    def open_then_signal(path: Any, *args: Any, **kw: Any) -> int:
        fd = real_open(path, *args, **kw)
        if isinstance(path, bytes) and path.endswith(b"/uid_map"):
            signal.raise_signal(signal.SIGUSR1)
        return fd

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        monkeypatch.setattr(os, "open", open_then_signal)
        with pytest.raises(TimeoutError) as ei:
            pidsafe.spawn(["true"], uidmap=MAP, gidmap=MAP)
    finally:
        monkeypatch.undo()
        signal.signal(signal.SIGUSR1, old)
    assert ei.value is alarm


def test_helper_reaped_after_proof(hook: Callable[..., None]) -> None:
    """After the proof the fds are pinned: reaping changes nothing."""
    hook(lambda s, h: kill_helper(h, reap=True) if s == "proven" else None)
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        assert ns_maps(fd) == (MAP, MAP, "deny")


def _take_pid(pid: int) -> Optional[pidsafe.Process]:
    """Start a process that gets ``pid`` (ns_last_pid), or None if another
    process on the machine took it first."""
    for _ in range(20):
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(pid - 1))
        p = pidsafe.spawn(["sleep", "60"])
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
        p.close()
    return None


def test_pid_reused_before_proof_is_caught(hook: Callable[..., None]) -> None:
    """The containerd race itself: the helper dies, is reaped by someone
    else, and its pid goes to an unrelated process before /proc is opened.
    The opens then reach the impostor; the pidfd proof catches it."""
    impostor: List[pidsafe.Process] = []
    seen: Dict[str, str] = {}

    def on_stage(stage: str, h: _userns.HelperView) -> None:
        if stage == "cloned":
            kill_helper(h, reap=True)
            p = _take_pid(h.pid)
            if p is not None:
                impostor.append(p)
        elif stage == "opened":
            seen["ns"] = os.readlink(f"/proc/{h.pid}/ns/user")

    hook(on_stage)
    try:
        with pytest.raises(pidsafe.HelperDiedError):
            pidsafe.get_userns_fd(MAP, MAP)
    finally:
        for p in impostor:
            p.kill()
            p.wait()
            p.close()
    if not impostor:
        pytest.skip("another process took the helper's pid first; the race was not staged")
    # Without the proof, get_userns_fd would have returned this namespace:
    # the impostor's, i.e. ours (the initial one).
    assert seen["ns"] == os.readlink("/proc/self/ns/user")


@pytest.mark.parametrize("stage", ["cloned", "opened", "proven"])
def test_exception_in_any_stage_leaks_nothing(stage: str, hook: Callable[..., None]) -> None:
    class Boom(Exception):
        pass

    def on_stage(s: str, h: _userns.HelperView) -> None:
        if s == stage:
            raise Boom(s)

    hook(on_stage)
    with pytest.raises(Boom):
        pidsafe.get_userns_fd(MAP, MAP)
    # conftest's no_leaks checks the fds and the (killed, reaped) helper.


def test_map_write_refused_names_map_and_capability(hook: Callable[..., None]) -> None:
    """A map the kernel refuses (here: already written) -> PermissionError
    naming the file, the map and what would allow it."""
    def on_stage(s: str, h: _userns.HelperView) -> None:
        if s == "proven":
            with open(f"/proc/{h.pid}/uid_map", "w") as f:
                f.write("0 0 1\n")

    hook(on_stage)
    with pytest.raises(PermissionError, match=r"write uid_map \(0:100000:65536\).*CAP_SETUID"):
        pidsafe.get_userns_fd(MAP, MAP)


def test_nested_call_gets_its_own_stack(hook: Callable[..., None]) -> None:
    """A call made while another is in progress on the same thread (as a
    signal handler could) must not reuse the busy helper stack."""
    inner: List[pidsafe.OwnedFd] = []
    outer_pid: List[int] = []

    def on_stage(s: str, h: _userns.HelperView) -> None:
        if s == "opened" and not outer_pid:
            outer_pid.append(h.pid)
            inner.append(pidsafe.get_userns_fd("0:300000:10", "0:300000:10"))
            # The outer helper still runs, on its own stack, in its namespace.
            assert _userns._alive(h.pidfd)
            assert os.readlink(f"/proc/{h.pid}/ns/user") != os.readlink("/proc/self/ns/user")

    hook(on_stage)
    with pidsafe.get_userns_fd(MAP, MAP) as outer:
        hook(None)
        assert ns_maps(outer)[0] == MAP
    with inner[0] as fd:
        assert ns_maps(fd)[0] == "0:300000:10"


def test_sixteen_threads_at_once() -> None:
    n = 16
    barrier = threading.Barrier(n)

    def one(i: int) -> pidsafe.OwnedFd:
        barrier.wait()
        m = f"0:{100000 + i * 65536}:65536"
        return pidsafe.get_userns_fd(m, m)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        fds = list(pool.map(one, range(n)))
    try:
        assert len({os.fstat(fd.fileno()).st_ino for fd in fds}) == n
        for i, fd in enumerate(fds):
            m = f"0:{100000 + i * 65536}:65536"
            assert ns_maps(fd) == (m, m, "deny")
    finally:
        for fd in fds:
            fd.close()


def _mappings() -> int:
    with open("/proc/self/maps") as f:
        return sum(1 for _ in f)


def test_no_stack_mappings_leak() -> None:
    pidsafe.get_userns_fd(MAP, MAP).close()  # the thread's stack, mapped once
    before = _mappings()
    for _ in range(200):
        pidsafe.get_userns_fd(MAP, MAP).close()
    # A leaked helper stack would be two mappings (guard + stack) per call.
    assert _mappings() - before < 20


def test_get_userns_fd_loop() -> None:
    """One round; run with --count 1000 -n 2 for the stress loop."""
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        assert fcntl.ioctl(fd.fileno(), NS_GET_NSTYPE) == _sys.CLONE_NEWUSER


def test_unprivileged_caller() -> None:
    """As an ordinary user: its own id maps; others' ids say what is missing."""
    code = (
        "import pidsafe, sys\n"
        "try:\n"
        "    fd = pidsafe.get_userns_fd('0:65534:1', '0:65534:1')\n"
        "except PermissionError as e:\n"
        "    if 'clone3' in str(e): print('no unprivileged userns:', e); sys.exit()\n"
        "    raise\n"
        "fd.close(); print('own ok')\n"
        "try:\n"
        "    pidsafe.get_userns_fd('0:100000:65536', '0:100000:65536')\n"
        "except PermissionError as e:\n"
        "    print('refused', e)\n"
    )
    with pidsafe.spawn(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code],
                       stdout=PIPE, stderr=PIPE, cwd="/") as p:
        out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out is not None
    lines = out.decode().splitlines()
    if lines[0].startswith("no unprivileged userns"):
        pytest.skip(lines[0])
    assert lines[0] == "own ok"
    assert lines[1].startswith("refused [Errno 1] write uid_map (0:100000:65536)")
    assert "CAP_SETUID" in lines[1]


# -- UsernsCache ----------------------------------------------------------------------


def test_cache_hands_out_dups_of_one_namespace() -> None:
    with pidsafe.UsernsCache() as cache:
        a = cache.get(MAP, MAP)
        b = cache.get(IDMap.parse(MAP), MAP)
        with a, b:
            assert a.fileno() != b.fileno()
            assert os.fstat(a.fileno()).st_ino == os.fstat(b.fileno()).st_ino
            assert fcntl.fcntl(b.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
            assert len(cache) == 1
            assert ns_maps(b) == (MAP, MAP, "deny")


def test_cache_key_ignores_range_order_but_not_setgroups() -> None:
    with pidsafe.UsernsCache() as cache:
        with cache.get("0:100000:1000,1000:0:1", MAP) as a, \
                cache.get("1000:0:1,0:100000:1000", MAP) as b, \
                cache.get("1000:0:1,0:100000:1000", MAP, setgroups="allow") as c:
            ino = [os.fstat(x.fileno()).st_ino for x in (a, b, c)]
        assert ino[0] == ino[1] != ino[2]
        assert len(cache) == 2


def test_cache_evicts_least_recently_used() -> None:
    with pidsafe.UsernsCache(maxsize=2) as cache:
        maps = [f"0:{100000 + i * 1000}:1000" for i in range(3)]
        first = cache.get(maps[0], maps[0])
        cache.get(maps[1], maps[1]).close()
        cache.get(maps[0], maps[0]).close()  # maps[0] is now the most recent
        cache.get(maps[2], maps[2]).close()  # evicts maps[1]
        assert len(cache) == 2
        with cache.get(maps[0], maps[0]) as again:
            assert os.fstat(again.fileno()).st_ino == os.fstat(first.fileno()).st_ino
        # An fd handed out earlier outlives eviction and close().
        cache.close()
        assert ns_maps(first)[0] == maps[0]
        first.close()


def test_cache_close_and_bad_arguments() -> None:
    cache = pidsafe.UsernsCache()
    with pytest.raises(ValueError, match="maxsize"):
        pidsafe.UsernsCache(maxsize=0)
    with pytest.raises(ValueError, match="setgroups"):
        cache.get(MAP, MAP, setgroups="yes")
    with pytest.raises(IDMapError, match="gidmap"):
        cache.get(MAP, "bogus")
    cache.get(MAP, MAP).close()
    cache.close()
    cache.close()
    assert cache.closed and len(cache) == 0
    with pytest.raises(ValueError, match="closed"):
        cache.get(MAP, MAP)


def test_cache_threads() -> None:
    """16 threads, 4 keys, many gets: one namespace per key, no leaks."""
    n = 16
    barrier = threading.Barrier(n)
    keys = [f"0:{100000 + k * 65536}:65536" for k in range(4)]

    def work(i: int) -> List[int]:
        barrier.wait()
        out = []
        for j in range(20):
            m = keys[(i + j) % 4]
            with cache.get(m, m) as fd:
                out.append(os.fstat(fd.fileno()).st_ino)
        return out

    with pidsafe.UsernsCache() as cache:
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            inos = [x for r in pool.map(work, range(n)) for x in r]
        assert len(cache) == 4
        assert len(set(inos)) == 4


# -- spawn() into user namespaces ------------------------------------------------------

NS_GET_USERNS = 0xB701  # ioctl_ns(2): the user namespace that owns a namespace


def run(args: Any, **kw: Any) -> Tuple[int, str]:
    with pidsafe.spawn(args, stdout=PIPE, stderr=subprocess.STDOUT, **kw) as p:
        out, _ = p.communicate(timeout=60)
    assert p.returncode is not None and out is not None
    return p.returncode, out.decode()


def owner_ino(ns_path: str) -> int:
    """Inode of the user namespace that owns the namespace at ns_path."""
    fd = os.open(ns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def test_spawn_new_userns_maps_and_id() -> None:
    code, out = run(["sh", "-c", "id -u; id -g; cat /proc/self/uid_map; echo --; "
                     "cat /proc/self/gid_map; echo --; cat /proc/self/setgroups"],
                    uidmap=MAP, gidmap="0:200000:65536")
    assert code == 0, out
    uid_s, gid_s, rest = out.split("\n", 2)
    uid, gid, sg = rest.split("--\n")
    assert (uid_s, gid_s) == ("0", "0")
    assert str(IDMap.from_kernel(uid)) == MAP
    assert str(IDMap.from_kernel(gid)) == "0:200000:65536"
    assert sg.strip() == "deny"


def test_spawn_new_userns_seen_from_the_parent() -> None:
    """The parent reads the child's maps under /proc/PID while it runs."""
    um = IDMap.parse("0:100000:1000,1000:0:1")
    with pidsafe.spawn(["cat"], stdin=PIPE, stdout=PIPE, uidmap=um, gidmap=um) as p:
        with open(f"/proc/{p.pid}/uid_map") as f:
            assert IDMap.from_kernel(f.read()) == um
        with open(f"/proc/{p.pid}/gid_map") as f:
            assert IDMap.from_kernel(f.read()) == um
        assert os.readlink(f"/proc/{p.pid}/ns/user") != os.readlink("/proc/self/ns/user")
        with open(f"/proc/{p.pid}/status") as f:
            status = dict(line.split(":\t", 1) for line in f if ":\t" in line)
        # Host view: container uid 0 is host 100000; no signal left blocked.
        assert status["Uid"].split()[0] == "100000"
        assert int(status["SigBlk"], 16) == 0
        p.communicate(b"", timeout=30)
    assert p.returncode == 0


def test_spawn_new_userns_without_root_mapping_keeps_overflow_ids() -> None:
    code, out = run(["sh", "-c", "id -u; id -g"], uidmap="1000:100000:10",
                    gidmap="1000:100000:10")
    assert (code, out.split()) == (0, ["65534", "65534"])


def test_spawn_pdeathsig_is_cleared_unless_asked() -> None:
    """The phase-1 SIGKILL-on-parent-death must not survive into the program."""
    code = "from pidsafe import _sys; print(_sys.pdeathsig())"
    # Host root stays root inside, so it can run our interpreter wherever it is.
    ident = "0:0:65536"
    assert run([sys.executable, "-c", code], uidmap=ident, gidmap=ident) == (0, "0\n")
    assert run([sys.executable, "-c", code], uidmap=ident, gidmap=ident,
               pdeathsig=signal.SIGTERM) == (0, "15\n")


def test_spawn_caller_signal_mask_untouched() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert run(["true"], uidmap=MAP, gidmap=MAP)[0] == 0
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_spawn_new_userns_owns_other_namespaces_and_pid_1() -> None:
    ns = (pidsafe.Namespace.NEWPID | pidsafe.Namespace.NEWUTS | pidsafe.Namespace.NEWNS
          | pidsafe.Namespace.NEWIPC | pidsafe.Namespace.NEWNET | pidsafe.Namespace.NEWCGROUP)
    with pidsafe.spawn(["sh", "-c", "echo $$; hostname inside; hostname; read x"],
                       stdin=PIPE, stdout=PIPE, uidmap=MAP, gidmap=MAP, namespaces=ns) as p:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline() == b"1\n"  # pid 1 of its own pid namespace
        assert p.stdout.readline() == b"inside\n"
        userns = os.stat(f"/proc/{p.pid}/ns/user").st_ino
        for kind in ("pid", "uts", "mnt", "ipc", "net", "cgroup"):
            assert owner_ino(f"/proc/{p.pid}/ns/{kind}") == userns, kind
        p.communicate(b"\n", timeout=30)
    assert p.returncode == 0
    assert os.uname().nodename != "inside"


def test_spawn_joins_userns() -> None:
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        want = os.fstat(fd.fileno()).st_ino
        with pidsafe.spawn(["sh", "-c", "id -u; read x"], stdin=PIPE, stdout=PIPE,
                           userns=fd) as p:
            assert p.stdout is not None
            assert p.stdout.readline() == b"0\n"
            assert os.stat(f"/proc/{p.pid}/ns/user").st_ino == want
            p.communicate(b"\n", timeout=30)
        assert p.returncode == 0
        # The fd is closed in the child, and stays open here.
        assert fcntl.ioctl(fd.fileno(), NS_GET_NSTYPE) == _sys.CLONE_NEWUSER


def test_spawn_joins_userns_with_namespaces_it_owns() -> None:
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        want = os.fstat(fd.fileno()).st_ino
        with pidsafe.spawn(["sh", "-c", "hostname joined; read x"], stdin=PIPE,
                           userns=fd.fileno(),
                           namespaces=pidsafe.Namespace.NEWUTS | pidsafe.Namespace.NEWNS) as p:
            for kind in ("uts", "mnt"):
                assert owner_ino(f"/proc/{p.pid}/ns/{kind}") == want
            p.communicate(b"\n", timeout=30)
        assert p.returncode == 0


def test_spawn_namespaces_without_userns() -> None:
    code, out = run(["sh", "-c", "hostname elsewhere; hostname; echo $$"],
                    namespaces=pidsafe.Namespace.NEWUTS | pidsafe.Namespace.NEWPID,
                    pdeathsig=signal.SIGKILL)
    assert (code, out) == (0, "elsewhere\n1\n")
    assert os.uname().nodename != "elsewhere"


def test_spawn_exec_failure_in_new_userns() -> None:
    with pytest.raises(FileNotFoundError, match="exec") as ei:
        pidsafe.spawn(["/nonexistent/program"], uidmap=MAP, gidmap=MAP)
    assert ei.value.filename == "/nonexistent/program"


def test_spawn_chdir_refused_in_new_userns(tmp_path: Any) -> None:
    """Root of the namespace is host uid 100000: a 0700 root-owned dir is closed."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(PermissionError, match="chdir") as ei:
        pidsafe.spawn(["true"], cwd=private, uidmap=MAP, gidmap=MAP)
    assert ei.value.filename == private


@pytest.mark.parametrize("kw,exc,message", [
    ({"uidmap": MAP}, ValueError, "uidmap and gidmap go together"),
    ({"gidmap": MAP}, ValueError, "uidmap and gidmap go together"),
    ({"uidmap": "0:0", "gidmap": MAP}, IDMapError, "uidmap: range 0"),
    ({"namespaces": _sys.CLONE_NEWUSER}, ValueError, "made with uidmap= and gidmap="),
    ({"namespaces": 1}, ValueError, "unknown flags 0x1"),
    ({"namespaces": "NEWNS"}, TypeError, "namespaces must be"),
    ({"userns": "x"}, TypeError, "userns must be"),
    ({"userns": 0, "uidmap": MAP, "gidmap": MAP}, ValueError, "not both"),
])
def test_spawn_bad_namespace_arguments(kw: Dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc, match=message):
        pidsafe.spawn(["true"], **kw)


def test_spawn_userns_must_be_a_user_namespace() -> None:
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        with pytest.raises(ValueError, match=f"userns: fd {r} is not a namespace fd"):
            pidsafe.spawn(["true"], userns=r)
    finally:
        os.close(r)
        os.close(w)
    with open("/proc/self/ns/uts") as f:
        with pytest.raises(ValueError, match="not a user namespace"):
            pidsafe.spawn(["true"], userns=f)
    with pytest.raises(OSError, match="userns: fd") as ei:
        pidsafe.spawn(["true"], userns=999)
    assert ei.value.errno == errno.EBADF
    with pidsafe.get_userns_fd(MAP, MAP) as fd:
        with pytest.raises(ValueError, match="NEWPID cannot be combined with userns"):
            pidsafe.spawn(["true"], userns=fd, namespaces=pidsafe.Namespace.NEWPID)


def test_spawn_child_reaped_before_proof(hook: Callable[..., None]) -> None:
    hook(lambda s, h: kill_helper(h, reap=True) if s == "opened" else None)
    with pytest.raises(pidsafe.HelperDiedError, match="child .* was reaped before"):
        pidsafe.spawn(["true"], uidmap=MAP, gidmap=MAP)


def test_spawn_child_killed_after_proof(hook: Callable[..., None]) -> None:
    """A zombie child: its maps are written, it never runs; spawn() still
    returns a Process whose exit (SIGKILL) is not lost."""
    hook(lambda s, h: kill_helper(h, reap=False) if s == "proven" else None)
    p = pidsafe.spawn(["sleep", "60"], uidmap=MAP, gidmap=MAP)
    hook(None)
    with p:
        assert p.wait(timeout=30) == -signal.SIGKILL


def test_spawn_map_write_refused(hook: Callable[..., None]) -> None:
    def on_stage(s: str, h: _userns.HelperView) -> None:
        if s == "proven":
            with open(f"/proc/{h.pid}/gid_map", "w") as f:
                f.write("0 0 1\n")

    hook(on_stage)
    with pytest.raises(PermissionError, match=r"write setgroups \(deny\) \[setgroups can no "
                       r"longer change once the gid map is written\]"):
        pidsafe.spawn(["true"], uidmap=MAP, gidmap=MAP)


def test_spawn_new_userns_sixteen_threads() -> None:
    n = 16
    barrier = threading.Barrier(n)

    def one(i: int) -> Tuple[int, str]:
        barrier.wait()
        m = f"0:{100000 + i * 65536}:65536"
        return run(["cat", "/proc/self/uid_map"], uidmap=m, gidmap=m)

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, range(n)))
    for i, (code, out) in enumerate(results):
        assert code == 0
        assert str(IDMap.from_kernel(out)) == f"0:{100000 + i * 65536}:65536"


def test_spawn_new_userns_loop() -> None:
    """One round; run with --count 1000 -n 2 for the stress loop."""
    assert run(["true"], uidmap=MAP, gidmap=MAP) == (0, "")


# -- pidsafe userns ------------------------------------------------------------------


def cli(*args: str) -> Tuple[int, str, str]:
    with pidsafe.spawn([sys.executable, "-m", "pidsafe.cli", *args], stdout=PIPE,
                       stderr=PIPE) as p:
        out, err = p.communicate(timeout=60)
    assert p.returncode is not None and out is not None and err is not None
    return p.returncode, out.decode(), err.decode()


def test_cli_userns_runs_as_root_of_new_namespace() -> None:
    code, out, err = cli("userns", "--uidmap", MAP, "--gidmap", MAP, "--",
                         "sh", "-c", "id -u; id -g; cat /proc/self/uid_map")
    assert code == 0, err
    uid, gid, rest = out.split("\n", 2)
    assert (uid, gid) == ("0", "0")
    assert str(IDMap.from_kernel(rest)) == MAP


def test_cli_userns_exit_status_and_errors() -> None:
    assert cli("userns", "--uidmap", MAP, "--gidmap", MAP, "--", "sh", "-c", "exit 7")[0] == 7
    assert cli("userns", "--uidmap", MAP, "--gidmap", MAP, "--",
               "sh", "-c", "kill -TERM $$")[0] == 128 + signal.SIGTERM
    code, _, err = cli("userns", "--uidmap", "0:1", "--gidmap", MAP, "--", "id")
    assert code == 2 and "missing field" in err
    code, _, err = cli("userns", "--uidmap", MAP, "--gidmap", MAP, "--", "/nonexistent")
    assert code == 127 and "pidsafe userns: [Errno 2] exec" in err


def test_thread_exit_frees_its_helper_stack() -> None:
    """Each thread keeps one helper stack; it is unmapped when the thread ends."""
    def work() -> None:
        pidsafe.get_userns_fd(MAP, MAP).close()

    def burst(n: int) -> None:
        for _ in range(n):
            t = threading.Thread(target=work)
            t.start()
            t.join()

    burst(10)  # warm up: Python's and glibc's own per-thread caches
    before = _mappings()
    burst(100)
    assert _mappings() - before < 20  # 100 leaked stacks would be 200 mappings


def test_too_many_user_namespaces_says_which_limit() -> None:
    """max_user_namespaces is per user namespace: set it to 0 in a child's."""
    code = (
        "import pidsafe\n"
        "with open('/proc/sys/user/max_user_namespaces', 'w') as f: f.write('0')\n"
        "try:\n"
        "    pidsafe.get_userns_fd('0:0:1', '0:0:1')\n"
        "except OSError as e:\n"
        "    print(e.errno, e)\n"
    )
    ident = "0:0:65536"  # root stays root inside: it may run our interpreter
    code_, out = run([sys.executable, "-c", code], uidmap=ident, gidmap=ident)
    assert code_ == 0, out
    assert out.startswith(f"{errno.ENOSPC} [Errno {errno.ENOSPC}] clone3(CLONE_NEWUSER) "
                          "[too many user namespaces: see /proc/sys/user/max_user_namespaces")


# -- make_userns: get_userns_fd whose helper is reaped by close() -------------------------


def test_make_userns_kills_its_helper_and_close_reaps_it() -> None:
    from pidsafe.userns import make_userns

    made = make_userns(MAP, MAP, setgroups="allow")
    try:
        assert made.userns is not None
        assert_userns_fd(made.userns)
        helper = made._helper
        assert helper is not None
        # Killed already (a zombie once it has run): only close() reaps it.
        select.select([helper.pidfd], [], [], 30)
        assert os.waitid(os.P_PIDFD, helper.pidfd, os.WEXITED | os.WNOWAIT | _sys.WALL
                         ) is not None
        assert ns_maps(made.userns) == (MAP, MAP, "allow")
    finally:
        made.close()
    assert made.userns.closed and made._helper is None
    made.close()   # idempotent


def test_make_userns_leaves_no_stack_mapping() -> None:
    from pidsafe.userns import make_userns

    make_userns(MAP, MAP).close()
    before = _mappings()
    for _ in range(100):
        made = make_userns(MAP, MAP)
        pidsafe.get_userns_fd(MAP, MAP).close()   # while the first helper's stack is busy
        made.close()
    assert _mappings() - before < 20
