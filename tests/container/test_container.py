"""Container: create/start/kill/wait/delete with a real busybox rootfs (root)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import warnings
from typing import Any, Dict

import pytest

import pidsafe
from pidsafe import PIPE

from conftest import wait_exited

pytestmark = pytest.mark.root


def test_create_start_wait_delete(make_bundle: Any, state_dir: pathlib.Path) -> None:
    bundle = make_bundle(["sh", "-c", "echo pid=$$ host=$(hostname); exit 3"])
    c = pidsafe.Container.create("c1", bundle, state_dir=str(state_dir), stdout=PIPE)
    try:
        st = c.state()
        assert st["status"] == "created" and st["id"] == "c1" and st["pid"] == c.pid
        assert st["bundle"] == str(bundle)
        c.start()
        assert c.state()["status"] in ("running", "stopped")
        proc = c.process()
        assert proc is not None and proc.stdout is not None
        assert proc.stdout.read() == b"pid=1 host=runc\n"
        assert c.wait(timeout=10) == 3
        assert c.state()["status"] == "stopped"
    finally:
        c.delete(force=True)
    c.delete()   # idempotent
    assert pidsafe.Container.list(str(state_dir)) == []


def test_kill_and_exact_status(make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("k", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        c.kill(signal.SIGKILL)
        assert c.wait(timeout=10) == -signal.SIGKILL
    finally:
        c.delete(force=True)


def test_delete_refuses_a_running_container_unless_forced(make_bundle: Any,
                                                          state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("r", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    c.start()
    with pytest.raises(pidsafe.ContainerStateError, match="force"):
        c.delete()
    c.delete(force=True)
    assert c.state()["status"] == "stopped"


def test_start_from_another_process(make_bundle: Any, state_dir: pathlib.Path) -> None:
    bundle = make_bundle(["sh", "-c", "exit 7"])
    c = pidsafe.Container.create("other", bundle, state_dir=str(state_dir))
    try:
        code = ("import sys, pidsafe; c = pidsafe.Container.load(sys.argv[1], 'other'); "
                "assert c.state()['status'] == 'created', c.state(); c.start(); c.close()")
        subprocess.run([sys.executable, "-c", code, str(state_dir)], check=True, timeout=60)
        assert c.wait(timeout=10) == 7
    finally:
        c.delete(force=True)


def test_a_failing_step_inside_names_its_field_and_leaves_nothing(
        make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path) -> None:
    def bad_mount(doc: Dict[str, Any]) -> None:
        doc["mounts"].append({"destination": "/data", "type": "bind",
                              "source": str(tmp_path / "missing"), "options": ["rbind"]})

    bundle = make_bundle(["true"], bad_mount)
    with pytest.raises(pidsafe.ContainerError) as info:
        pidsafe.Container.create("bad", bundle, state_dir=str(state_dir))
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.field == "mounts[7]" and info.value.path == str(tmp_path / "missing")
    assert pidsafe.Container.list(str(state_dir)) == []


def test_bad_config_is_refused_before_anything_exists(make_bundle: Any,
                                                      state_dir: pathlib.Path) -> None:
    bundle = make_bundle(["true"], lambda d: d["linux"].update(intelRdt={"closID": "x"}))
    with pytest.raises(pidsafe.UnsupportedConfigError) as info:
        pidsafe.Container.create("cfg", bundle, state_dir=str(state_dir))
    assert info.value.json_path == "linux.intelRdt"


def test_a_second_create_of_the_same_id_is_refused(make_bundle: Any,
                                                   state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("dup", make_bundle(["true"]), state_dir=str(state_dir))
    try:
        with pytest.raises(pidsafe.ContainerStateError, match="exists"):
            pidsafe.Container.create("dup", make_bundle(["true"]), state_dir=str(state_dir))
    finally:
        c.delete(force=True)


def test_load_takes_an_exact_id_and_a_prefix_only_when_asked(make_bundle: Any,
                                                              state_dir: pathlib.Path) -> None:
    """load("web") returned web2 (the only id it prefixed): a program naming a
    container that is gone reached another one."""
    w = pidsafe.Container.create("web2", make_bundle(["true"]), state_dir=str(state_dir))
    try:
        for wrong in ("web", "we", "web2x", "eb2"):
            with pytest.raises(pidsafe.ContainerLookupError, match=f"no container '{wrong}'"):
                pidsafe.Container.load(str(state_dir), wrong)
        again = pidsafe.Container.load(str(state_dir), "web", prefix=True)   # asked for
        assert again.id == "web2" and again.pid == w.pid
        again.close()
    finally:
        w.delete(force=True)


def test_load_by_unique_prefix_and_ambiguity(make_bundle: Any,
                                             state_dir: pathlib.Path) -> None:
    a = pidsafe.Container.create("alpha1", make_bundle(["true"]), state_dir=str(state_dir))
    b = pidsafe.Container.create("alpha2", make_bundle(["true"]), state_dir=str(state_dir))
    c = pidsafe.Container.create("alpha", make_bundle(["true"]), state_dir=str(state_dir))
    try:
        exact = pidsafe.Container.load(str(state_dir), "alpha", prefix=True)   # exact wins
        assert exact.pid == c.pid
        exact.close()
        with pytest.raises(pidsafe.ContainerLookupError):
            pidsafe.Container.load(str(state_dir), "beta", prefix=True)
        again = pidsafe.Container.load(str(state_dir), "alpha2", prefix=True)
        assert again.pid == b.pid and again.state()["status"] == "created"
        again.close()
        c.delete(force=True)
        with pytest.raises(pidsafe.ContainerLookupError, match="alpha1, alpha2"):
            pidsafe.Container.load(str(state_dir), "alpha", prefix=True)
    finally:
        a.delete(force=True)
        b.delete(force=True)
        c.delete(force=True)


def test_user_namespace_maps_root_to_100000(make_bundle: Any, state_dir: pathlib.Path) -> None:
    def userns(doc: Dict[str, Any]) -> None:
        doc["linux"]["namespaces"].append({"type": "user"})
        m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        doc["linux"]["uidMappings"] = m
        doc["linux"]["gidMappings"] = m

    bundle = make_bundle(["sh", "-c", "id -u; cat >/dev/null"], userns)
    c = pidsafe.Container.create("u", bundle, state_dir=str(state_dir), stdin=PIPE,
                                 stdout=PIPE)
    try:
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline() == b"0\n"
        with open(f"/proc/{c.pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == ["100000"] * 4
        proc.stdin.close()
        assert c.wait(timeout=10) == 0
    finally:
        c.delete(force=True)


NS = ("user", "mnt", "net", "ipc", "uts", "pid_for_children", "cgroup")


def _ns(pid: int) -> Dict[str, str]:
    out = {}
    for n in NS:
        try:
            out[n] = os.readlink(f"/proc/{pid}/ns/{n}")
        except FileNotFoundError:
            pass
    return out


def _cgroups(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def test_exec_joins_every_namespace_and_cgroup_of_init(make_bundle: Any,
                                                      state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("ex", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        e = c.exec(["sh", "-c", "echo $$ $(hostname); cat >/dev/null"], exec_id="e1", stdin=PIPE,
                   stdout=PIPE)
        try:
            assert e.stdout is not None and e.stdin is not None
            inner_pid, host = e.stdout.readline().split()
            assert host == b"runc" and int(inner_pid) > 1   # in init's pid namespace
            assert c.pid is not None
            assert _ns(e.pid) == _ns(c.pid)
            assert _cgroups(e.pid) == _cgroups(c.pid)
            with pytest.raises(pidsafe.ContainerStateError, match="e1"):
                c.exec(["true"], exec_id="e1")
            e.stdin.close()
            assert e.wait(timeout=10) == 0
        finally:
            e.close()
        with pytest.raises(pidsafe.ContainerError) as info:
            c.exec(["no-such-program"], exec_id="e2")
        assert isinstance(info.value, FileNotFoundError) and info.value.field == "process.args"
    finally:
        c.delete(force=True)


def test_init_runs_in_its_cgroup_in_every_hierarchy(make_bundle: Any,
                                                    state_dir: pathlib.Path) -> None:
    from pidsafe.container._records import cgroup_of

    c = pidsafe.Container.create("cg", make_bundle(["true"]), state_dir=str(state_dir))
    try:
        cg = cgroup_of(c._recorded.record)
        assert cg is not None and c.pid is not None
        where = {key: path for _, key, path in
                 (line.split(":", 2) for line in _cgroups(c.pid).splitlines())}
        wanted = {key: d for key, d in cg.v1_paths.items()}
        assert wanted, "no v1 hierarchy: nothing to check"
        for key, d in wanted.items():
            assert d.endswith(where[key]), (key, d, where[key])
        assert c.pid in cg.pids()
        # The tasks files it joined through were the spawn child's alone.
        held = [os.readlink(f"/proc/{c.pid}/fd/{n}") for n in os.listdir(f"/proc/{c.pid}/fd")]
        assert not [h for h in held if h.startswith("/sys/fs/cgroup")], held
    finally:
        c.delete(force=True)


def test_init_that_cannot_join_its_cgroup_leaves_nothing(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from pidsafe import _sys
    from pidsafe._sys import _spawn as sys_spawn

    monkeypatch.setattr(sys_spawn, "_test_fail", (_sys.STAGE_CGROUP, errno.EXDEV))
    with pytest.raises(pidsafe.CgroupError) as info:
        pidsafe.Container.create("cgf", make_bundle(["true"]), state_dir=str(state_dir))
    monkeypatch.undo()
    assert info.value.errno == errno.EXDEV and "unable to join the cgroup" in str(info.value)
    assert pidsafe.Container.list(str(state_dir)) == []
    from pidsafe.container._cgroup_defaults import default_cgroup
    from pidsafe.container.cgroup import CgroupLayout

    cgroup = default_cgroup(str(state_dir), "cgf")
    assert not [h for h in CgroupLayout.detect().v1
                if os.path.exists(h.mountpoint + cgroup)]


def test_create_in_an_empty_frozen_cgroup_does_not_hang(make_bundle: Any,
                                                        state_dir: pathlib.Path) -> None:
    import uuid

    from pidsafe.container.cgroup import CgroupLayout

    freezer = CgroupLayout.detect().v1_for("freezer")
    if freezer is None:
        pytest.skip("no v1 freezer hierarchy")
    path = f"/pidsafe-test-{uuid.uuid4().hex[:12]}"
    d = freezer.directory(path)
    os.mkdir(d)
    try:
        with open(os.path.join(d, "freezer.state"), "w") as f:
            f.write("FROZEN")

        def edit(doc: Dict[str, Any]) -> None:
            doc["linux"]["cgroupsPath"] = path

        bundle = make_bundle(["true"], edit)
        # In a child process: had init joined the frozen cgroup before its
        # exec, the creator's thread would stop with it, for good.
        code = ("import sys, pidsafe\n"
                "c = pidsafe.Container.create('fz', sys.argv[1], state_dir=sys.argv[2])\n"
                "c.start(); sys.exit(c.wait(timeout=30))\n")
        with pidsafe.Reaper(subreaper=True) as reaper:
            creator = reaper.spawn([sys.executable, "-c", code, str(bundle), str(state_dir)])
            try:
                assert creator.wait(timeout=60) == 0
            finally:
                if creator.returncode is None:
                    creator.kill()
                    creator.wait()
                creator.close()
        for cid in pidsafe.Container.list(str(state_dir)):
            pidsafe.Container.load(str(state_dir), cid).delete(force=True)
    finally:
        if os.path.isdir(d):   # delete removes it: the container had it
            with open(os.path.join(d, "freezer.state"), "w") as f:
                f.write("THAWED")   # what a failure left there may go
            os.rmdir(d)


def test_exec_in_a_user_namespace(make_bundle: Any, state_dir: pathlib.Path) -> None:
    def userns(doc: Dict[str, Any]) -> None:
        doc["linux"]["namespaces"].append({"type": "user"})
        m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        doc["linux"]["uidMappings"] = m
        doc["linux"]["gidMappings"] = m

    c = pidsafe.Container.create("exu", make_bundle(["sleep", "1000"], userns),
                                 state_dir=str(state_dir))
    try:
        c.start()
        with c.exec(["sh", "-c", "id -u; cat >/dev/null"], exec_id="x", stdin=PIPE,
                    stdout=PIPE) as e:
            assert e.stdout is not None and e.stdin is not None and c.pid is not None
            assert e.stdout.readline() == b"0\n"
            assert os.readlink(f"/proc/{e.pid}/ns/user") == os.readlink(f"/proc/{c.pid}/ns/user")
            with open(f"/proc/{e.pid}/status") as f:
                assert next(ln for ln in f if ln.startswith("Uid:")).split()[1] == "100000"
            e.stdin.close()
            assert e.wait(timeout=10) == 0
    finally:
        c.delete(force=True)


def _run(make_bundle: Any, state_dir: pathlib.Path, script: str,
         edit: Any = lambda d: None, **kw: Any) -> bytes:
    """Create, start and wait for ``sh -c script``; its stdout."""
    c = pidsafe.Container.create("run", make_bundle(["sh", "-c", script], edit),
                                 state_dir=str(state_dir), stdout=PIPE, **kw)
    try:
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None
        out = proc.stdout.read()
        assert c.wait(timeout=10) == 0, out
        return out
    finally:
        c.delete(force=True)


def test_identity_and_isolation_inside(make_bundle: Any, state_dir: pathlib.Path) -> None:
    out = _run(make_bundle, state_dir,
               "echo $$; hostname; wc -c < /proc/version; ls /proc/self/fd | tr '\\n' ' '; echo;"
               " (echo 1 > /proc/sys/vm/drop_caches) 2>&1; ls /sys/firmware | wc -l;"
               " cat /sys/class/net/lo/flags; touch /newfile 2>&1; true",
               lambda d: d["linux"]["maskedPaths"].append("/proc/version"))
    lines = out.decode().splitlines()
    assert lines[0] == "1"                       # the program is pid 1
    assert lines[1] == "runc"                    # hostname set
    assert lines[2] == "0"                       # masked: /proc/version reads empty
    assert lines[3].split() == ["0", "1", "2", "3"]   # only stdio (3: ls's own dir fd)
    assert "Read-only file system" in lines[4]   # readonlyPaths: /proc/sys
    assert lines[5] == "0"                       # masked directory: empty tmpfs
    assert int(lines[6], 16) & 1                 # lo is up in the new network namespace
    assert "Read-only file system" in lines[7]   # root.readonly


def test_sysctls_are_set_before_proc_sys_is_made_read_only(make_bundle: Any,
                                                         state_dir: pathlib.Path) -> None:
    # runc's default config makes /proc/sys read-only: sysctls come first.
    out = _run(make_bundle, state_dir,
               "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname;"
               " (echo 0 > /proc/sys/net/ipv4/ip_forward) 2>&1; true",
               lambda d: d["linux"].update(sysctl={"net.ipv4.ip_forward": "1",
                                                   "kernel.domainname": "dom"}))
    lines = out.decode().splitlines()
    assert lines[:2] == ["1", "dom"]
    assert "Read-only file system" in lines[2]


def test_idmapped_rootfs_from_rootfs_mounts(make_bundle: Any, state_dir: pathlib.Path,
                                            tmp_path: pathlib.Path,
                                            busybox_rootfs: pathlib.Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import pidsafe.userns

    # Every user namespace made: by get_userns_fd, or by make_userns (the
    # container's own).
    made = []
    real, real_make = pidsafe.userns.get_userns_fd, pidsafe.userns.make_userns

    def counted(*args: Any, **kwargs: Any) -> pidsafe.OwnedFd:
        made.append(args)
        return real(*args, **kwargs)

    def counted_make(*args: Any, **kwargs: Any) -> Any:
        made.append(args)
        return real_make(*args, **kwargs)

    monkeypatch.setattr(pidsafe.userns, "get_userns_fd", counted)
    monkeypatch.setattr(pidsafe.userns, "make_userns", counted_make)

    layer = tmp_path / "layer"
    shutil.copytree(busybox_rootfs, layer, symlinks=True)
    os.chmod(layer, 0o755)
    (layer / "owned-by-0").write_text("x")

    def userns_rw(doc: Dict[str, Any]) -> None:
        doc["root"]["readonly"] = False
        doc["linux"]["namespaces"].append({"type": "user"})
        m = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        doc["linux"]["uidMappings"] = m
        doc["linux"]["gidMappings"] = m

    bundle = make_bundle(["sh", "-c", "stat -c %u /owned-by-0; touch /made"], userns_rw)
    shutil.rmtree(bundle / "rootfs")
    (bundle / "rootfs").mkdir()
    mounts = [pidsafe.Mount("bind", str(layer), "", ["rbind", "uidmap=0:100000:65536",
                                                     "gidmap=0:100000:65536"])]
    c = pidsafe.Container.create("idm", bundle, state_dir=str(state_dir), stdout=PIPE,
                                 rootfs_mounts=mounts)
    # The rootfs has the container's maps: its user namespace serves both.
    assert len(made) == 1, made
    try:
        c.start()
        proc = c.process()
        assert proc is not None and proc.stdout is not None
        assert proc.stdout.read() == b"0\n"      # owned by 0 on disk, 0 inside
        assert c.wait(timeout=10) == 0
    finally:
        c.delete(force=True)
    assert os.stat(layer / "made").st_uid == 0  # made inside as root: 0 on disk
    assert not os.path.ismount(bundle / "rootfs")


def test_twenty_containers_from_threads(make_bundle: Any, state_dir: pathlib.Path) -> None:
    import concurrent.futures

    bundles = [make_bundle(["sh", "-c", f"exit {i}"]) for i in range(20)]

    def one(i: int) -> int:
        c = pidsafe.Container.create(f"t{i}", bundles[i], state_dir=str(state_dir))
        try:
            c.start()
            return c.wait(timeout=30)
        finally:
            c.delete(force=True)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(20))) == list(range(20))
    assert pidsafe.Container.list(str(state_dir)) == []


CREATE_STEPS = ("recorded", "mounted", "cgroup", "gate", "cloned", "ready", "saved")


@pytest.mark.parametrize("step", CREATE_STEPS)
def test_a_creator_killed_at_any_step_leaves_what_delete_cleans(
        step: str, make_bundle: Any, state_dir: pathlib.Path, tmp_path: pathlib.Path,
        busybox_rootfs: pathlib.Path) -> None:
    import json
    import shutil

    layer = tmp_path / "layer"
    shutil.copytree(busybox_rootfs, layer, symlinks=True)
    bundle = make_bundle(["sleep", "1000"])
    shutil.rmtree(bundle / "rootfs")
    (bundle / "rootfs").mkdir()
    mounts = json.dumps([["bind", str(layer), "", ["rbind"]]])
    code = f"""
import json, os, signal, sys
import pidsafe
from pidsafe.container import _create
def hook(name):
    if name == {step!r}:
        os.kill(os.getpid(), signal.SIGKILL)
_create._test_hook = hook
mounts = [pidsafe.Mount(*m) for m in json.loads(sys.argv[3])]
pidsafe.Container.create("k", sys.argv[1], state_dir=sys.argv[2], rootfs_mounts=mounts)
"""
    # A subreaper here, so that the orphaned init is reaped by us, not left to pid 1.
    with pidsafe.Reaper(subreaper=True) as reaper:
        creator = reaper.spawn([sys.executable, "-c", code, str(bundle), str(state_dir), mounts])
        assert creator.wait(timeout=60) == -signal.SIGKILL
        creator.close()
        assert pidsafe.Container.list(str(state_dir)) == ["k"]
        # What the crash left on disk: the rootfs mounts are recorded from
        # the first save on; their identities only from the cgroup's save,
        # so a creator killed before that (mounted, not yet identified)
        # leaves mounts that delete must find by their recorded paths.
        saved = json.loads((state_dir / "k.json").read_text())
        assert saved["mounts"] and saved["mountRoot"]
        identified = CREATE_STEPS.index(step) >= CREATE_STEPS.index("cgroup")
        assert ("mounted" in saved) == identified, saved
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        assert (str(bundle / "rootfs") in points) == (step != "recorded")
        c = pidsafe.Container.load(str(state_dir), "k")
        c.delete(force=True)
        assert pidsafe.Container.list(str(state_dir)) == []
        assert not os.path.ismount(bundle / "rootfs")


def test_kill_never_reaches_a_process_that_reused_inits_pid(make_bundle: Any,
                                                            state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("reuse", make_bundle(["true"]), state_dir=str(state_dir))
    try:
        c.start()
        assert c.wait(timeout=10) == 0
        pid = c.pid
        assert pid is not None
        newcomer = None
        for _ in range(200):   # other processes on the machine may take the pid first
            with open("/proc/sys/kernel/ns_last_pid", "w") as f:
                f.write(str(pid - 1))
            p = pidsafe.spawn(["sleep", "60"])
            if p.pid == pid:
                newcomer = p
                break
            p.kill()
            p.wait()
            p.close()
        if newcomer is None:
            pytest.skip("could not make the pid be reused (a busy machine took it each time)")
        try:
            with pytest.raises(pidsafe.ContainerStateError):
                c.kill(signal.SIGKILL)
            other = pidsafe.Container.load(str(state_dir), "reuse")   # from the state file
            assert other.state()["status"] == "stopped" and "pid" not in other.state()
            with pytest.raises(pidsafe.ContainerStateError):
                other.kill(signal.SIGKILL)
            other.close()
            assert newcomer.is_alive()
        finally:
            newcomer.kill()
            newcomer.wait()
            newcomer.close()
    finally:
        c.delete(force=True)


def test_reaper_sees_started_before_exit_for_init_and_execs(make_bundle: Any,
                                                           state_dir: pathlib.Path) -> None:
    """As containerd's runc shim needs it: "started" is published strictly
    before the exit, with no lock."""
    with pidsafe.Reaper() as reaper, reaper.subscribe() as exits:
        events = []
        c = pidsafe.Container.create("order", make_bundle(["sleep", "1000"]),
                                     state_dir=str(state_dir), reaper=reaper,
                                     on_created=lambda c: events.append(("created", c.pid)))
        try:
            c.start()
            for i in range(5):   # programs that exit at once: an exit before start returns
                p = c.exec(["true"], exec_id=f"x{i}",
                           on_started=lambda p: events.append(("started", p.pid)))
                ev = exits.get(timeout=10)
                events.append(("exit", ev.pid))
                assert ev.process is p and ev.returncode == 0
                p.close()
            c.kill(signal.SIGKILL)
            ev = exits.get(timeout=10)
            events.append(("exit", ev.pid))
            assert ev.returncode == -signal.SIGKILL
        finally:
            c.delete(force=True)
    # Every pid's exit comes after its created/started, never before.
    seen = set()
    for kind, pid in events:
        if kind == "exit":
            assert pid in seen, events
        else:
            seen.add(pid)


def test_every_bad_config_field_leaves_nothing(make_bundle: Any,
                                               state_dir: pathlib.Path) -> None:
    import importlib.util
    import json

    # By path: as a module name, test_config is importable only when pytest
    # collected tests/container/config too (its directory then is on sys.path).
    where_ = pathlib.Path(__file__).parent / "config" / "test_config.py"
    spec = importlib.util.spec_from_file_location("container_config_cases", where_)
    assert spec is not None and spec.loader is not None
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    BAD = cases.BAD

    bundle = make_bundle(["true"])
    good = json.loads((bundle / "config.json").read_text())
    for edit, where, _ in BAD:
        doc = json.loads(json.dumps(good))
        edit(doc)
        (bundle / "config.json").write_text(json.dumps(doc))
        with pytest.raises(pidsafe.ConfigError) as info:
            pidsafe.Container.create("bad", bundle, state_dir=str(state_dir),
                                     rootfs_mounts=[pidsafe.Mount("bind", str(bundle / "rootfs"),
                                                                  "", ["rbind"])])
        assert info.value.json_path == where
        assert os.listdir(state_dir) == [] and not os.path.ismount(bundle / "rootfs")


def test_exec_env_cwd_and_user(make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("ecu", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        with c.exec(["sh", "-c", "echo $FOO $(id -u):$(id -g) $(pwd)"], exec_id="a",
                    env=["FOO=bar", "PATH=/bin"], cwd="/tmp",
                    user=pidsafe.container.User(65534, 65534), stdout=PIPE) as e:
            assert e.communicate(timeout=10)[0] == b"bar 65534:65534 /tmp\n"
    finally:
        c.delete(force=True)


def test_inits_exit_is_delivered_after_the_execs_that_ended_with_it(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """When init of a pid namespace exits, the kernel kills every other
    process in it and init's own exit completes only once they have all
    been reaped (zap_pid_namespace); the reaper reaps and publishes each
    exec's exit as it happens, so init's exit comes last."""
    with pidsafe.Reaper() as reaper, reaper.subscribe() as exits:
        c = pidsafe.Container.create("last", make_bundle(["sleep", "1000"]),
                                     state_dir=str(state_dir), reaper=reaper)
        try:
            c.start()
            execs = [c.exec(["sleep", "1000"], exec_id=f"s{i}") for i in range(3)]
            c.kill(signal.SIGKILL)
            order = [exits.get(timeout=10) for _ in range(4)]
            assert sorted(id(e.process) for e in order[:3]) == sorted(id(p) for p in execs)
            assert order[3].process is c.process()
            assert all(e.returncode == -signal.SIGKILL for e in order)
            for p in execs:
                p.close()
        finally:
            c.delete(force=True)


def test_default_cgroup_names_hash_the_state_dir_with_sha256(tmp_path: pathlib.Path) -> None:
    # Hashed without importing hashlib (OpenSSL): the names stay what they were.
    import hashlib

    from pidsafe.container import _cgroup_defaults

    tag = hashlib.sha256(str(tmp_path).encode()).hexdigest()[:12]
    assert _cgroup_defaults.default_cgroup(str(tmp_path), "c1") == f"/pidsafe/{tag}-c1"
    assert _cgroup_defaults.sha256(b"").hexdigest() == hashlib.sha256(b"").hexdigest()


def _session_and_group(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[3]), int(fields[2])   # session, process group


def test_init_and_execs_lead_sessions_of_their_own(make_bundle: Any,
                                                   state_dir: pathlib.Path) -> None:
    """kill(0) or a terminal's signal inside never reaches the runtime's caller."""
    c = pidsafe.Container.create("sid", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        assert c.pid is not None
        assert _session_and_group(c.pid) == (c.pid, c.pid)   # created: waiting at the gate
        c.start()
        e = c.exec(["sleep", "1000"], exec_id="e1")
        try:
            assert _session_and_group(e.pid) == (e.pid, e.pid)
            assert os.getsid(0) not in (c.pid, e.pid) and os.getpgrp() not in (c.pid, e.pid)
        finally:
            e.kill()
            e.wait()
            e.close()
    finally:
        c.delete(force=True)


def test_exec_in_the_library_refuses_env_without_a_value(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("lib", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        with pytest.raises(pidsafe.ConfigError, match=r"process.env\[1\]"):
            c.exec(["true"], exec_id="e1", env=["A=1", "B"])
        assert c.pids() == [c.pid]
    finally:
        c.delete(force=True)


def test_an_exec_whose_on_started_raises_leaves_no_process(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """The process was left running, its handle dropped, when on_started raised."""
    class Boom(Exception):
        pass

    seen = []

    def on_started(p: pidsafe.Process) -> None:
        seen.append(p.pid)
        raise Boom()

    c = pidsafe.Container.create("onst", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        with pytest.raises(Boom):
            c.exec(["sleep", "1000"], exec_id="e1", on_started=on_started)
        assert len(seen) == 1 and c.pids() == [c.pid]
        with c.exec(["true"], exec_id="e1") as again:   # the id is free again
            assert again.wait() == 0
    finally:
        c.delete(force=True)


def test_cgroup_handle(make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("cg", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        cg = c.cgroup()
        assert cg is not None
        paths = list(cg.v1_paths.values()) + ([cg.v2_path] if cg.v2_path else [])
        assert paths and all(os.path.isdir(p) for p in paths)
        assert c.pid in cg.pids()
        assert cg.stats().pids_current == 1
    finally:
        c.delete(force=True)
    assert not any(os.path.exists(p) for p in paths)


def test_release_exec_frees_the_id(make_bundle: Any, state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("rel", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        with c.exec(["true"], exec_id="e") as p:
            assert p.wait(timeout=10) == 0
        with pytest.raises(pidsafe.ContainerStateError, match="already in use"):
            c.exec(["true"], exec_id="e")
        c.release_exec("e")
        c.release_exec("never-used")        # nothing to do
        with c.exec(["sh", "-c", "exit 4"], exec_id="e") as p:
            assert p.wait(timeout=10) == 4
    finally:
        c.delete(force=True)


def test_a_handle_inherited_through_fork_refuses_and_never_reads_init_as_gone(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    """In a child of os.fork(), init's pidfd cannot be used: the handle must
    refuse (as Process does), never report "stopped" and never let delete()
    destroy the running container."""
    c = pidsafe.Container.create("forked", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        c.start()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: report, never return into pytest
            try:
                os.close(r)
                got = []
                for call in (c.status, c.state, lambda: c.delete(force=True),
                             lambda: c.kill(signal.SIGKILL), c.wait, c.pids):
                    try:
                        call()
                        got.append("ran")
                    except ValueError as exc:
                        got.append("refused" if "fork()" in str(exc) else repr(exc))
                    except BaseException as exc:  # noqa: BLE001 - reported to the parent
                        got.append(repr(exc))
                got.append("repr ok" if "fork()" in repr(c) else repr(c))
                c.close()
                os.write(w, ",".join(got).encode())
            finally:
                os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            report = f.read().decode()
        assert os.waitpid(pid, 0)[1] == 0
        assert report == ",".join(["refused"] * 6 + ["repr ok"])
        assert c.status() == "running"
        again = pidsafe.Container.load(str(state_dir), "forked")
        assert again.status() == "running"
        again.close()
    finally:
        c.delete(force=True)


def test_wait_reaps_the_execs_it_owns_that_exited(make_bundle: Any,
                                                  state_dir: pathlib.Path) -> None:
    """The kernel completes init's exit only once its pid namespace is
    empty, and an exec'd process that exited stays there, a zombie, until
    its parent (us) reaps it: wait() reaps the container's own execs."""
    c = pidsafe.Container.create("w", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        quick = c.exec(["true"], exec_id="quick")        # exits at once, never waited
        slow = c.exec(["sleep", "1000"], exec_id="slow")  # dies with init
        wait_exited(quick, 30)   # a zombie before init dies, not killed with it
        c.kill(signal.SIGKILL)
        assert c.wait(timeout=30) == -signal.SIGKILL      # not TimeoutExpired
        assert quick.returncode == 0 and slow.returncode == -signal.SIGKILL
        quick.close()
        slow.close()
    finally:
        c.delete(force=True)


def test_delete_force_reaps_the_execs_it_owns(make_bundle: Any,
                                              state_dir: pathlib.Path) -> None:
    c = pidsafe.Container.create("d", make_bundle(["sleep", "1000"]), state_dir=str(state_dir))
    try:
        c.start()
        quick = c.exec(["true"], exec_id="quick")   # a zombie of ours, never waited
        wait_exited(quick, 30)                        # exited before delete kills
        c.delete(force=True)                          # no TimeoutExpired
        assert quick.returncode == 0
        quick.close()
        assert pidsafe.Container.list(str(state_dir)) == []
    finally:
        c.delete(force=True)


def test_every_ignored_property_warns_with_its_json_path(make_bundle: Any,
                                                         state_dir: pathlib.Path) -> None:
    """A misspelt field is not silently ignored in-process: one
    IgnoredConfigWarning (a UserWarning) per property, naming its path."""
    def misspelt(doc: Dict[str, Any]) -> None:
        doc["linux"]["namespace"] = [{"type": "network"}]   # next to namespaces
        doc["process"]["enviroment"] = ["A=1"]

    # Recorded, not pytest.warns: a create that did not warn is deleted
    # before the test fails, never left running.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = pidsafe.Container.create("ign", make_bundle(["true"], misspelt),
                                     state_dir=str(state_dir))
    c.delete(force=True)
    paths = sorted(w.message.json_path for w in caught  # type: ignore[union-attr]
                   if isinstance(w.message, pidsafe.IgnoredConfigWarning))
    assert paths == ["linux.namespace", "process.enviroment"]
    assert all(issubclass(w.category, UserWarning) and w.filename == __file__
               for w in caught)


def test_strict_refuses_an_ignored_property_before_anything_exists(
        make_bundle: Any, state_dir: pathlib.Path) -> None:
    def misspelt(doc: Dict[str, Any]) -> None:
        doc["linux"]["namespace"] = []

    with pytest.raises(pidsafe.ConfigError) as info:
        pidsafe.Container.create("strict", make_bundle(["true"], misspelt),
                                 state_dir=str(state_dir), strict=True)
    assert info.value.json_path == "linux.namespace"
    assert os.listdir(state_dir) == []


def test_start_writes_no_state_and_another_handle_sees_it_running(
        make_bundle: Any, state_dir: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """start() unlinks the gate FIFO once the gate is open, as runc does its
    exec FIFO: that says "started" to every later reader, and start saves
    no state (one fsync'd write fewer per container)."""
    from pidsafe.state import StateFile

    c = pidsafe.Container.create("gone-gate", make_bundle(["sleep", "1000"]),
                                 state_dir=str(state_dir))
    try:
        other = pidsafe.Container.load(str(state_dir), "gone-gate")
        assert other.status() == "created"
        saves = []
        real = StateFile.save
        monkeypatch.setattr(StateFile, "save", lambda self, data: (saves.append(data),
                                                                  real(self, data)))
        c.start()
        assert saves == []
        assert c.status() == other.status() == "running"
        again = pidsafe.Container.load(str(state_dir), "gone-gate")
        assert again.state()["status"] == "running"
        again.close()
        other.close()
        c.kill(signal.SIGKILL)
        c.wait(timeout=10)
        stopped = pidsafe.Container.load(str(state_dir), "gone-gate")
        assert stopped.status() == "stopped"
        stopped.close()
    finally:
        c.delete(force=True)
