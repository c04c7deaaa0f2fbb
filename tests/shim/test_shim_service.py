"""The task service in-process: every method, its errors and its events (root)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import pidsafe
from pidsafe.errors import RpcError
from pidsafe.shim import Code
from pidsafe.shim import messages as m

from shimhelp import Shim, fifos, read_all, read_all_now, shim  # noqa: F401 - fixtures

pytestmark = pytest.mark.root


def test_run_to_the_end(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    io = fifos("r1")
    bundle = make_bundle(["sh", "-c", "echo out; echo err >&2; exit 3"])
    resp = shim.create("r1", bundle, **io.io())
    assert resp.pid > 0
    st = shim.state("r1")
    assert (st.status, st.pid, st.bundle, st.stdout) == (1, resp.pid, str(bundle), io.stdout)
    assert st.exited_at.seconds == -62135596800      # Go's zero time, as the runc shim
    assert shim.svc.Connect(m.ConnectRequest(id="r1")).task_pid == resp.pid
    assert shim.start("r1") == resp.pid
    assert shim.wait("r1") == 3
    assert read_all(io.out) == b"out\n" and read_all(io.err) == b"err\n"
    st = shim.state("r1")
    assert (st.status, st.exit_status) == (3, 3) and st.exited_at.seconds > 0
    d = shim.delete("r1")
    assert (d.pid, d.exit_status) == (resp.pid, 3)
    assert shim.events.topics("r1") == ["/tasks/create", "/tasks/start", "/tasks/exit:r1",
                                        "/tasks/delete"]
    ex = shim.events.wait("/tasks/exit", container_id="r1")
    assert (ex.pid, ex.exit_status) == (resp.pid, 3)
    assert (bundle / "init.pid").read_text() == str(resp.pid)
    assert os.listdir(bundle / "pidsafe") == []
    with pytest.raises(RpcError) as ei:
        shim.state("r1")
    assert ei.value.code == Code.NOT_FOUND


def test_signals_and_exit_status(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    io = fifos("k1")
    # A pid namespace's init gets only the signals it handles: trap TERM first.
    shim.run("k1", make_bundle(["sh", "-c", "trap 'exit 7' TERM; echo ready; "
                                            "sleep 1000 & wait"]), **io.io())
    ready = b""
    while b"ready" not in ready:
        ready += read_all_now(io.out)
    shim.kill("k1", signal.SIGTERM)
    assert shim.wait("k1") == 7
    shim.delete("k1")
    shim.run("k1", make_bundle(["sleep", "1000"]))
    shim.kill("k1", signal.SIGKILL)
    assert shim.wait("k1") == 128 + signal.SIGKILL
    with pytest.raises(RpcError) as ei:
        shim.kill("k1", signal.SIGKILL)
    assert ei.value.code == Code.NOT_FOUND and "already finished" in ei.value.message
    with pytest.raises(RpcError) as ei:
        shim.kill("k1", 0)
    assert ei.value.code == Code.INVALID_ARGUMENT
    shim.delete("k1")


def test_errors_as_containerd_maps_them(shim: Shim, make_bundle: Any) -> None:
    bundle = make_bundle(["sleep", "1000"])
    shim.run("e1", bundle)
    cases = [
        (lambda: shim.create("e1", bundle), Code.ALREADY_EXISTS),
        (lambda: shim.state("nope"), Code.NOT_FOUND),
        (lambda: shim.state("e1", "no-exec"), Code.NOT_FOUND),
        (lambda: shim.kill("e1", 9, exec_id="no-exec"), Code.NOT_FOUND),
        (lambda: shim.delete("e1"), Code.FAILED_PRECONDITION),        # running
        (lambda: shim.start("e1"), Code.FAILED_PRECONDITION),         # started already
        (lambda: shim.svc.Checkpoint(m.CheckpointTaskRequest(id="e1")), Code.UNIMPLEMENTED),
        (lambda: shim.svc.Stats(m.StatsRequest(id="nope")), Code.NOT_FOUND),
        (lambda: shim.create("", bundle), Code.INVALID_ARGUMENT),
        (lambda: shim.create("x", bundle, checkpoint="/c"), Code.UNIMPLEMENTED),
    ]
    for call, code in cases:
        with pytest.raises(RpcError) as ei:
            call()
        assert ei.value.code == code, ei.value
    shim.exec("e1", "x1", ["true"])
    with pytest.raises(RpcError) as ei:
        shim.exec("e1", "x1", ["true"])
    assert ei.value.code == Code.ALREADY_EXISTS
    with pytest.raises(RpcError) as ei:
        shim.kill("e1", 9, exec_id="x1")
    assert ei.value.code == Code.FAILED_PRECONDITION        # not started
    shim.delete("e1", "x1")                                 # a created exec can go
    shim.remove("e1")


def test_bad_config_names_the_field_and_leaves_nothing(shim: Shim, make_bundle: Any) -> None:
    def no_args(doc: Dict[str, Any]) -> None:
        doc["process"]["args"] = []

    bundle = make_bundle(["true"], no_args)
    with pytest.raises(RpcError) as ei:
        shim.create("bad", bundle)
    assert ei.value.code == Code.INVALID_ARGUMENT
    assert "process.args" in ei.value.message
    assert shim.svc.container_ids == []
    assert not os.path.exists(bundle / "pidsafe") or os.listdir(bundle / "pidsafe") == []
    assert shim.events.of("bad") == []
    (bundle / "config.json").write_text("{not json")
    with pytest.raises(RpcError) as ei:
        shim.create("bad", bundle)
    assert ei.value.code == Code.INVALID_ARGUMENT
    # The id is free again.
    (bundle / "config.json").write_text(json.dumps(json.loads(
        (make_bundle(["true"]) / "config.json").read_text())))
    shim.run("bad", bundle)
    assert shim.wait("bad") == 0
    shim.delete("bad")


def test_a_bad_rootfs_mount_leaves_nothing(shim: Shim, make_bundle: Any,
                                           tmp_path: Path) -> None:
    bundle = make_bundle(["true"])
    mounts = [m.Mount(type="overlay", source="overlay",
                      options=[f"lowerdir={tmp_path}/no-such-layer",
                               f"upperdir={tmp_path}/u", f"workdir={tmp_path}/w"])]
    with pytest.raises(RpcError) as ei:
        shim.create("badmount", bundle, rootfs=mounts)
    assert ei.value.code == Code.UNKNOWN and "no-such-layer" in ei.value.message
    assert shim.svc.container_ids == []


def test_exec_lifecycle(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    shim.run("x", make_bundle(["sleep", "1000"]))
    io = fifos("e1")
    shim.exec("x", "e1", ["sh", "-c", "echo in-exec; exit 5"], **io.io())
    st = shim.state("x", "e1")
    assert (st.id, st.status, st.pid) == ("e1", 1, 0)
    pid = shim.start("x", "e1")
    assert shim.wait("x", "e1") == 5
    assert read_all(io.out) == b"in-exec\n"
    st = shim.state("x", "e1")
    assert (st.status, st.exit_status, st.pid) == (3, 5, pid)
    d = shim.delete("x", "e1")
    assert (d.pid, d.exit_status) == (pid, 5)
    # The exec id is free again, as with the runc shim.
    shim.exec("x", "e1", ["true"])
    shim.start("x", "e1")
    assert shim.wait("x", "e1") == 0
    shim.delete("x", "e1")
    shim.remove("x")
    assert shim.events.topics("x") == [
        "/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
        "/tasks/exit:e1", "/tasks/exec-added", "/tasks/exec-started", "/tasks/exit:e1",
        "/tasks/exit:x", "/tasks/delete"]


def test_exec_spec_errors(shim: Shim, make_bundle: Any) -> None:
    shim.run("xs", make_bundle(["sleep", "1000"]))
    bad = m.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                value=json.dumps({"args": "sh", "cwd": "/"}).encode())
    with pytest.raises(RpcError) as ei:
        shim.svc.Exec(m.ExecProcessRequest(id="xs", exec_id="b", spec=bad))
    assert ei.value.code == Code.INVALID_ARGUMENT and "process.args" in ei.value.message
    bad.value = b"{"
    with pytest.raises(RpcError) as ei:
        shim.svc.Exec(m.ExecProcessRequest(id="xs", exec_id="b", spec=bad))
    assert ei.value.code == Code.INVALID_ARGUMENT
    # A program that is not there: Start fails, the exec is stopped, Wait returns.
    shim.exec("xs", "nx", ["/no/such/program"])
    with pytest.raises(RpcError):
        shim.start("xs", "nx")
    assert shim.state("xs", "nx").status == 3
    shim.wait("xs", "nx")
    shim.delete("xs", "nx")
    shim.remove("xs")


def test_closeio_is_the_stdin_eof(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    io = fifos("c", stdin=True)
    shim.run("cat", make_bundle(["cat"]), **io.io())
    os.write(io.inp, b"hello\n")
    io.close_stdin()      # the client's writer is gone: the shim's keeps cat reading
    assert shim.state("cat").status == 2
    shim.svc.CloseIO(m.CloseIORequest(id="cat", stdin=True))
    assert shim.wait("cat") == 0
    assert read_all(io.out) == b"hello\n"
    shim.delete("cat")


def test_a_reader_gone_never_hurts(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    io = fifos("g")
    os.close(io.out)         # the client went away before the container wrote
    io.fds.remove(io.out)
    shim.run("gone", make_bundle(["sh", "-c", "echo lost; exit 4"]), **io.io())
    assert shim.wait("gone") == 4     # no SIGPIPE: the shim keeps a reader
    shim.delete("gone")


def test_stdout_and_stderr_on_one_fifo_and_null_io(shim: Shim, make_bundle: Any,
                                                   fifos: Any) -> None:
    io = fifos("one", stderr=False)
    shim.run("one", make_bundle(["sh", "-c", "echo a; echo b >&2"]), stdout=io.stdout,
             stderr=io.stdout)
    assert shim.wait("one") == 0
    assert sorted(read_all(io.out).split()) == [b"a", b"b"]
    shim.delete("one")
    shim.run("null", make_bundle(["sh", "-c", "echo nowhere; read x; exit 0"]))
    assert shim.wait("null") == 0      # stdin is /dev/null: read gets EOF
    shim.delete("null")


def test_file_uri(shim: Shim, make_bundle: Any, tmp_path: Path) -> None:
    log = tmp_path / "logs/c.log"
    shim.run("f", make_bundle(["sh", "-c", "echo to-file; echo err >&2"]),
             stdout=f"file://{log}", stderr=f"file://{log}")
    assert shim.wait("f") == 0
    shim.delete("f")
    assert sorted(log.read_text().split()) == ["err", "to-file"]


def test_terminal(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    io = fifos("t", stdin=True, stderr=False)

    def tty(doc: Dict[str, Any]) -> None:
        doc["process"]["terminal"] = True

    bundle = make_bundle(["sh", "-c", "stty size; tty; read line; echo got:$line"], tty)
    shim.create("t", bundle, **io.io(terminal=True))
    shim.svc.ResizePty(m.ResizePtyRequest(id="t", width=100, height=40))
    shim.start("t")
    os.write(io.inp, b"hi\n")
    out = read_all(io.out)
    assert shim.wait("t") == 0
    assert b"40 100" in out and b"/dev/pts/" in out and b"got:hi" in out, out
    # After the exit, and 0x0: not an error (containerd sends both).
    shim.svc.ResizePty(m.ResizePtyRequest(id="t", width=0, height=0))
    shim.delete("t")


def test_exec_with_terminal(shim: Shim, make_bundle: Any, fifos: Any) -> None:
    shim.run("xt", make_bundle(["sleep", "1000"]))
    io = fifos("xt", stderr=False)
    shim.exec("xt", "t1", ["sh", "-c", "tty; exit 2"], **io.io(terminal=True))
    shim.start("xt", "t1")
    assert shim.wait("xt", "t1") == 2
    assert b"/dev/pts/" in read_all(io.out)
    shim.delete("xt", "t1")
    shim.remove("xt")


def test_pids_pause_resume_update_stats(shim: Shim, make_bundle: Any) -> None:
    pid = shim.run("p", make_bundle(["sleep", "1000"]))
    shim.exec("p", "s", ["sleep", "1000"])
    epid = shim.start("p", "s")
    procs = shim.svc.Pids(m.PidsRequest(id="p")).processes
    assert sorted(p.pid for p in procs) == sorted([pid, epid])
    info = next(p.info for p in procs if p.pid == epid)
    assert info.unpack_as(m.ProcessDetails).exec_id == "s"
    assert next(p.info for p in procs if p.pid == pid) is None
    shim.svc.Pause(m.PauseRequest(id="p"))
    assert shim.state("p").status == 4
    with pytest.raises(RpcError) as ei:
        shim.svc.Pause(m.PauseRequest(id="p"))
    assert ei.value.code == Code.FAILED_PRECONDITION
    shim.svc.Resume(m.ResumeRequest(id="p"))
    assert shim.state("p").status == 2
    res = m.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
                value=json.dumps({"pids": {"limit": 50}}).encode())
    shim.svc.Update(m.UpdateTaskRequest(id="p", resources=res))
    stats = shim.svc.Stats(m.StatsRequest(id="p")).stats
    metrics = stats.unpack()
    assert metrics.pids.current == 2 and metrics.pids.limit == 50
    if stats.type_url == "io.containerd.cgroups.v1.Metrics":
        assert metrics.memory.usage.usage > 0
    else:
        assert metrics.memory.usage > 0
    shim.remove("p")
    assert [t for t in shim.events.topics("p") if t in ("/tasks/paused", "/tasks/resumed")] \
        == ["/tasks/paused", "/tasks/resumed"]


def test_kill_all_and_shutdown(shim: Shim, make_bundle: Any) -> None:
    shim.run("a", make_bundle(["sh", "-c", "sleep 1000 & sleep 1000"]))
    shim.svc.Shutdown(m.ShutdownRequest(id="a"))
    assert shim.shutdowns == 0           # a container is left: never exit
    shim.kill("a", signal.SIGKILL, all=True)
    assert shim.wait("a") == 137
    shim.delete("a")
    shim.svc.Shutdown(m.ShutdownRequest(id="a"))
    assert shim.shutdowns == 1
    with pytest.raises(RpcError) as ei:
        shim.run("late", make_bundle(["true"]))
    assert ei.value.code == Code.UNAVAILABLE


def test_delete_of_a_created_container(shim: Shim, make_bundle: Any) -> None:
    shim.create("cr", make_bundle(["true"]))
    shim.delete("cr")
    assert shim.events.topics("cr") == ["/tasks/create", "/tasks/exit:cr", "/tasks/delete"]


def test_eight_at_once(shim: Shim, make_bundle: Any) -> None:
    bundles = [make_bundle(["sh", "-c", f"exit {i}"]) for i in range(8)]
    results: Dict[int, Any] = {}

    def one(i: int) -> None:
        try:
            shim.run(f"c{i}", bundles[i])
            results[i] = shim.wait(f"c{i}")
            shim.delete(f"c{i}")
        except BaseException as exc:   # reported below
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: i for i in range(8)}


def test_oom_event(shim: Shim, make_bundle: Any) -> None:
    def small(doc: Dict[str, Any]) -> None:
        doc["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}

    # tail keeps a line in memory, and /dev/zero has no newline: it grows to the limit.
    shim.run("oom", make_bundle(["tail", "/dev/zero"], small))
    assert shim.events.wait("/tasks/oom", container_id="oom")
    assert shim.wait("oom") == 137
    shim.delete("oom")
    topics = shim.events.topics("oom")
    assert topics.index("/tasks/oom") > topics.index("/tasks/start")


def test_an_oom_before_the_watch_is_published(shim: Shim, make_bundle: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The OOM kill of a program that fills its limit at once can come before
    the watch is registered (after the start, as the runc shim does it): it
    was lost, and the test above failed now and then on a loaded machine."""
    from pidsafe.shim._oom import OomWatcher

    def small(doc: Dict[str, Any]) -> None:
        doc["linux"]["resources"]["memory"] = {"limit": 16 << 20, "swap": 16 << 20}

    add = OomWatcher.add
    late = []

    def add_after_the_exit(self: OomWatcher, cid: str, *args: Any) -> bool:
        late.append(shim.svc._table.container(cid).init.exited.wait(60))   # killed already
        return add(self, cid, *args)

    monkeypatch.setattr(OomWatcher, "add", add_after_the_exit)
    shim.run("oom2", make_bundle(["tail", "/dev/zero"], small))
    assert shim.wait("oom2") == 137
    assert late == [True]
    assert shim.events.wait("/tasks/oom", container_id="oom2")
    shim.delete("oom2")
    assert shim.events.topics("oom2").count("/tasks/oom") == 1


def test_oom_counter_of_memory_events(tmp_path: Path) -> None:
    """cgroup v2's memory.events, as the watcher reads it (kernfs is not here to poll)."""
    from pidsafe.shim._oom import _oom_kills

    f = tmp_path / "memory.events"
    f.write_text("low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\n")
    fd = os.open(f, os.O_RDONLY)
    try:
        assert _oom_kills(fd) == 1
        f.write_text("low 0\nhigh 0\nmax 9\noom 3\noom_kill 2\n")
        assert _oom_kills(fd) == 2         # read again from the start each time
    finally:
        os.close(fd)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _oom_kills(fd) is None      # unreadable (as once the cgroup is gone)
    finally:
        os.close(fd)


def test_join_keeps_the_daemon_for_that_create(make_bundle: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A start that joined (``Join``) holds off the close until its Create, or its lease
    ends; a daemon that is closing refuses to be joined."""
    from pidsafe.shim import _group
    from pidsafe.shim._service import TaskService

    from shimhelp import Events

    closed = threading.Event()
    monkeypatch.setattr(_group, "LEASE", 2.0)
    bundle = str(make_bundle(["true"]))
    with pidsafe.Reaper() as reaper:
        svc = TaskService(namespace="test", events=Events(), reaper=reaper,
                          shutdown=closed.set)
        try:
            svc.Join(m.ConnectRequest(id="j1"))
            svc.Shutdown(m.ShutdownRequest(id="x"))     # no container, but j1 is coming
            assert not closed.is_set()
            svc.Create(m.CreateTaskRequest(id="j1", bundle=bundle))
            svc.Start(m.StartRequest(id="j1"))
            svc.Wait(m.WaitRequest(id="j1"))
            svc.Delete(m.DeleteRequest(id="j1"))
            svc.Join(m.ConnectRequest(id="j2"))          # j2 never comes: its lease ends
            svc.Shutdown(m.ShutdownRequest(id="j1"))
            assert closed.wait(30)
            with pytest.raises(RpcError) as ei:
                svc.Join(m.ConnectRequest(id="j3"))
            assert ei.value.code == Code.UNAVAILABLE
        finally:
            svc.close()
