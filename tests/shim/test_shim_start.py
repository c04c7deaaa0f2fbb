"""The ``start`` action: address, socket, options; and the daemon it forks, driven over
ttrpc with a stand-in for containerd's event service (root)."""

from __future__ import annotations

import hashlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterator, List, Tuple

import pytest

from pidsafe.shim import Client, Server, messages as m
from pidsafe.shim._start import (adjust_oom_score, go_clean, grouping, new_socket,
                                 read_group, shim_cgroup, socket_address, write_address)

from shimhelp import SUPERVISOR, Fifos, end_supervisor, read_all

SHIM = Path(sys.executable).parent / "containerd-shim-pidsafe-v1"


@pytest.mark.parametrize("path, want", [
    ("/run/containerd/containerd.sock/default/c1", "/run/containerd/containerd.sock/default/c1"),
    ("/a//b/./c/../d/", "/a/b/d"), ("//a", "/a"), ("a/../../b", "../b"), ("", "."),
    ("/..", "/"),
])
def test_go_clean(path: str, want: str) -> None:
    assert go_clean(path) == want


def test_socket_address_is_gos() -> None:
    want = hashlib.sha256(b"/run/containerd/containerd.sock/default/c1").hexdigest()
    assert socket_address("/run/containerd/containerd.sock", "default", "c1") == \
        f"unix:///run/containerd/s/{want}"
    assert len(socket_address("/x", "n", "g")) - len("unix://") < 106


def test_grouping() -> None:
    ann = {"io.containerd.runc.v2.group": "g", "io.kubernetes.cri.sandbox-id": "pod"}
    assert grouping({"annotations": ann}, "c") == "pod"
    assert grouping({"annotations": {"io.containerd.runc.v2.group": "g"}}, "c") == "g"
    assert grouping({"annotations": {"io.kubernetes.cri.sandbox-id": ""}}, "c") == "c"
    assert grouping({}, "c") == "c" and grouping([], "c") == "c"
    # From the bytes: JSON is parsed only for a config that names a group.
    assert read_group(b'{"annotations": {"io.containerd.runc.v2.group": "g"}}', "c") == "g"
    assert read_group(b"not json, and no group named", "c") == "c"
    with pytest.raises(OSError, match="read config.json"):
        read_group(b'{"io.kubernetes.cri.sandbox-id": ', "c")


def test_shim_cgroup_from_runc_options() -> None:
    opts = m.Options(shim_cgroup="/pods/shim", binary_name="runc", no_pivot_root=True)
    assert shim_cgroup(m.Any.pack(opts).encode()) == "/pods/shim"
    assert shim_cgroup(m.Any(type_url="other.Type", value=opts.encode()).encode()) == ""
    assert shim_cgroup(b"") == ""
    with pytest.raises(ValueError):
        shim_cgroup(b"\x0a\x80")


def _join_server(sock: Any, answer: Any) -> Server:
    """A daemon stand-in on ``sock`` (new_socket's) whose ``Join`` is ``answer(request)``."""
    from pidsafe.shim._binding import JOIN_METHOD, JOIN_SERVICE
    from pidsafe.shim._method import Method

    server = Server()
    server.register(Method(JOIN_SERVICE, JOIN_METHOD, m.ConnectRequest, m.Empty),
                    lambda req, ctx: answer(req))
    server.start(socket.socket(fileno=sock.detach()))
    return server


def test_new_socket_joins_a_live_daemon_and_replaces_a_dead_one(tmp_path: Path) -> None:
    path = str(tmp_path / "s/sock")
    s = new_socket(path, "c1")
    assert s is not None
    assert os.stat(path).st_mode & 0o777 == 0o600
    joined: List[str] = []
    server = _join_server(s, lambda req: joined.append(req.id) or m.Empty())
    try:
        assert new_socket(path, "c2") is None      # the group's daemon will wait for c2
        assert joined == ["c2"]
    finally:
        server.shutdown(timeout=30)
    # Closed, the file stays: nobody answers, so it is replaced.
    s = new_socket(path, "c3")
    assert s is not None
    s.close()
    os.unlink(path)


def test_new_socket_replaces_a_closing_daemon(tmp_path: Path) -> None:
    from pidsafe.errors import RpcError

    path = str(tmp_path / "sock")
    s = new_socket(path, "c1")
    assert s is not None

    def closing(req: Any) -> Any:
        raise RpcError(14, "join: the shim is shutting down")

    server = _join_server(s, closing)
    try:
        s2 = new_socket(path, "c2")                 # a daemon of its own
        assert s2 is not None
        s2.close()
    finally:
        server.shutdown(timeout=30)
    os.unlink(path)


def test_write_address(tmp_path: Path) -> None:
    write_address(str(tmp_path), "unix:///run/containerd/s/x")
    assert (tmp_path / "address").read_text() == "unix:///run/containerd/s/x"
    assert not (tmp_path / ".address").exists()


@pytest.mark.root
def test_adjust_oom_score() -> None:
    with subprocess.Popen(["sleep", "60"]) as p:
        try:
            with open(f"/proc/{os.getppid()}/oom_score_adj") as f:
                parent = int(f.read())
            adjust_oom_score(p.pid)   # containerd's (here: our parent's) + 1
            with open(f"/proc/{p.pid}/oom_score_adj") as f:
                assert int(f.read()) == min(parent + 1, 1000)
        finally:
            p.kill()


_MOVE_IN_A_HIERARCHY_WITH_A_SPACE = r"""
import os, subprocess, sys, tempfile
from pidsafe.shim._start import move_to_cgroup
rel = sys.argv[1]
top = tempfile.mkdtemp(prefix="pidsafe cg ")       # mountinfo spells the space \040
try:
    # The host's pids hierarchy, seen only at a path with a space (in this
    # process's own mount namespace): no new hierarchy, nothing global.
    subprocess.run(["mount", "--bind", "/sys/fs/cgroup/pids", top], check=True)
    try:
        subprocess.run(["umount", "/sys/fs/cgroup/pids"], check=True)
        os.mkdir(os.path.join(top, rel))
        try:
            with subprocess.Popen(["sleep", "60"]) as p:
                try:
                    move_to_cgroup(p.pid, "/" + rel)
                    with open(f"/proc/{p.pid}/cgroup") as f:
                        print([line for line in f.read().splitlines() if ":pids:" in line])
                finally:
                    p.kill()
        finally:
            os.rmdir(os.path.join(top, rel))
    finally:
        subprocess.run(["umount", top], check=True)
finally:
    os.rmdir(top)
"""


@pytest.mark.root
@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/pids"), reason="needs a v1 pids hierarchy")
def test_move_to_cgroup_finds_a_v1_hierarchy_mounted_on_a_path_with_a_space() -> None:
    """In a mount namespace of its own, so no other test sees the moved mount."""
    rel = f"pidsafe-shim-test-{os.getpid()}"
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                          "-c", _MOVE_IN_A_HIERARCHY_WITH_A_SPACE, rel],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[0].endswith(f":pids:/{rel}']"), out.stdout


# -- the daemon, through start -------------------------------------------------------

class FakeContainerd:
    """containerd's ttrpc event service (``Forward``), recording the events."""

    def __init__(self, path: str) -> None:
        self.events: List[Tuple[str, str]] = []
        self.cond = threading.Condition()
        self.server = Server()
        self.server.register(m.EventsService.Forward, self._forward)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.bind(path)
        sock.listen(16)
        self.server.start(sock)

    def _forward(self, req: Any, ctx: Any) -> Any:
        env = req.envelope
        assert ctx.get("containerd-namespace-ttrpc") == env.namespace == "shimtest"
        with self.cond:
            self.events.append((env.topic, env.event.type_url))
            self.cond.notify_all()
        return m.Empty()

    def wait_for(self, n: int) -> List[Tuple[str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= n, 30), self.events
            return list(self.events)


@pytest.fixture
def fake_containerd(tmp_path: Path) -> Iterator[FakeContainerd]:
    fake = FakeContainerd(str(tmp_path / "ttrpc.sock"))
    yield fake
    fake.server.shutdown(1)


def _start_supervised(bundle: Path, tmp_path: Path,
                      cid: str) -> Tuple["subprocess.Popen[str]", str]:
    """The shim's ``start`` for ``cid`` under SUPERVISOR, as containerd runs it,
    and the containerd address it was given."""
    grpc = str(tmp_path / f"containerd-{os.getpid()}.sock")
    env = dict(os.environ, TTRPC_ADDRESS=str(tmp_path / "ttrpc.sock"))
    sup = subprocess.Popen([sys.executable, "-c", SUPERVISOR, str(SHIM), "-namespace",
                            "shimtest", "-address", grpc, "-publish-binary",
                            "/usr/bin/containerd", "-id", cid, "start"],
                           cwd=bundle, env=env, stdout=subprocess.PIPE, text=True)
    return sup, grpc


@pytest.mark.root
def test_a_supervisor_ended_early_takes_its_daemon_along(make_bundle: Any, tmp_path: Path,
                                                        fake_containerd: FakeContainerd) -> None:
    """What a failing test's clean-up relies on: no daemon is left to pid 1."""
    bundle = make_bundle(["true"])
    sup, _ = _start_supervised(bundle, tmp_path, "e1")
    daemon = -1
    try:
        assert sup.stdout is not None
        code, out, err = eval(sup.stdout.readline())
        assert code == 0, err
        with Client(out.decode()) as client:
            shim_pid = client.call(m.TaskService.Connect, m.ConnectRequest(id="e1")).shim_pid
        daemon = os.pidfd_open(shim_pid)
        end_supervisor(sup)
        assert sup.returncode == 0
        assert select.select([daemon], [], [], 30)[0] == [daemon]   # it has exited
    finally:
        end_supervisor(sup)
        if daemon >= 0:
            os.close(daemon)
        if sup.stdout is not None:
            sup.stdout.close()


@pytest.mark.root
def test_start_serves_until_shutdown(make_bundle: Any, tmp_path: Path,
                                     fake_containerd: FakeContainerd) -> None:
    bundle = make_bundle(["sh", "-c", "echo from-the-daemon; exit 6"])
    io = Fifos(tmp_path, "d")
    sup, grpc = _start_supervised(bundle, tmp_path, "d1")
    try:
        assert sup.stdout is not None
        code, out, err = eval(sup.stdout.readline())
        assert (code, err) == (0, b""), err
        address = out.decode()
        assert address == socket_address(grpc, "shimtest", "d1")   # no newline, nothing else
        assert (bundle / "address").read_text() == address
        path = address[len("unix://"):]
        assert os.stat(path).st_mode & 0o777 == 0o600
        with Client(address) as client:
            r = client.call(m.TaskService.Create, m.CreateTaskRequest(
                id="d1", bundle=str(bundle), stdout=io.stdout, stderr=io.stderr))
            c = client.call(m.TaskService.Connect, m.ConnectRequest(id="d1"))
            assert c.task_pid == r.pid and c.shim_pid > 0
            # Garbage and an oversized frame on other connections: the daemon
            # answers or drops those, and keeps serving this one.
            for junk in (b"\xff" * 64, struct.pack(">IIBB", 5 << 20, 1, 1, 0) + b"x" * 1000,
                         struct.pack(">IIBB", 4, 2, 1, 0) + b"\x0a\x05ab"):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
                    raw.connect(path)
                    raw.sendall(junk)
                    raw.shutdown(socket.SHUT_WR)
                    raw.settimeout(30)
                    while raw.recv(4096):
                        pass
            assert client.call(m.TaskService.Connect, m.ConnectRequest(id="d1")).task_pid == r.pid
            client.call(m.TaskService.Start, m.StartRequest(id="d1"))
            w = client.call(m.TaskService.Wait, m.WaitRequest(id="d1"))
            assert w.exit_status == 6
            assert read_all(io.out) == b"from-the-daemon\n"
            client.call(m.TaskService.Delete, m.DeleteRequest(id="d1"))
            try:
                client.call(m.TaskService.Shutdown, m.ShutdownRequest(id="d1"))
            except ConnectionError:
                pass    # it may exit before answering
        assert sup.wait(timeout=30) == 0        # the daemon exited, and was reaped
        assert not os.path.exists(path)          # it removed its socket
        assert [t for t, _ in fake_containerd.wait_for(4)] == [
            "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]
        assert fake_containerd.events[2][1] == "containerd.events.TaskExit"
    finally:
        io.close()
        end_supervisor(sup)
        if sup.stdout is not None:
            sup.stdout.close()
