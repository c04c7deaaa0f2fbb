"""The task service in-process, for tests: no socket, no containerd.

``shim`` is a :class:`~pidsafe.shim._service.TaskService` over a default-mode
:class:`pidsafe.Reaper` (a subreaper would take the statuses of the test
process's own ``subprocess`` children), publishing into an
:class:`Events` recorder.  Containers come from ``make_bundle`` (a busybox
rootfs in the bundle; tests/bundles.py), stdio from :class:`Fifos`, made
and opened as ``ctr`` does.
"""

from __future__ import annotations

import errno
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import pidsafe
from pidsafe.errors import RpcError
from pidsafe.shim import messages as m
from pidsafe.shim._service import TaskService


class Events:
    """A publisher that records (topic, event) pairs, in order."""

    def __init__(self) -> None:
        self.got: List[Tuple[str, Any]] = []
        self._cond = threading.Condition()

    def publish(self, topic: str, event: Any) -> bool:
        m.Any.pack(event)   # it must encode, as the real publisher encodes it at once
        with self._cond:
            self.got.append((topic, event))
            self._cond.notify_all()
        return True

    def of(self, container_id: str) -> List[Tuple[str, Any]]:
        with self._cond:
            return [(t, e) for t, e in self.got if e.container_id == container_id]

    def topics(self, container_id: str) -> List[str]:
        """Topics of one container; exits as ``/tasks/exit:<id>``."""
        return [t + (f":{e.id}" if t == "/tasks/exit" else "")
                for t, e in self.of(container_id)]

    def wait(self, topic: str, timeout: float = 30, **fields: Any) -> Any:
        def match() -> Optional[Any]:
            for t, e in self.got:
                if t == topic and all(getattr(e, k) == v for k, v in fields.items()):
                    return e
            return None
        with self._cond:
            assert self._cond.wait_for(lambda: match() is not None, timeout), \
                f"no {topic} {fields} in {self.got}"
            return match()


class Shim:
    def __init__(self, svc: TaskService, events: Events) -> None:
        self.svc = svc
        self.events = events
        self.shutdowns = 0

    def create(self, cid: str, bundle: Path, **kw: Any) -> m.CreateTaskResponse:
        return self.svc.Create(m.CreateTaskRequest(id=cid, bundle=str(bundle), **kw))

    def run(self, cid: str, bundle: Path, **kw: Any) -> int:
        """Create and start; the init's pid."""
        self.create(cid, bundle, **kw)
        return int(self.svc.Start(m.StartRequest(id=cid)).pid)

    def wait(self, cid: str, exec_id: str = "", timeout: float = 60) -> int:
        """``Wait`` (in a thread: a test that hangs fails within ``timeout``)."""
        box: List[Any] = []
        t = threading.Thread(target=lambda: box.append(
            self.svc.Wait(m.WaitRequest(id=cid, exec_id=exec_id))), daemon=True)
        t.start()
        t.join(timeout)
        assert box, f"Wait({cid!r}, {exec_id!r}) did not return within {timeout} s"
        return int(box[0].exit_status)

    def state(self, cid: str, exec_id: str = "") -> m.StateResponse:
        return self.svc.State(m.StateRequest(id=cid, exec_id=exec_id))

    def kill(self, cid: str, sig: int = 9, exec_id: str = "", all: bool = False) -> None:
        self.svc.Kill(m.KillRequest(id=cid, exec_id=exec_id, signal=sig, all=all))

    def delete(self, cid: str, exec_id: str = "") -> m.DeleteResponse:
        return self.svc.Delete(m.DeleteRequest(id=cid, exec_id=exec_id))

    def exec(self, cid: str, exec_id: str, args: List[str], **kw: Any) -> None:
        import json

        spec = m.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                     value=json.dumps({"args": args, "cwd": "/", "user": {"uid": 0, "gid": 0},
                                       "env": ["PATH=/bin"]}).encode())
        self.svc.Exec(m.ExecProcessRequest(id=cid, exec_id=exec_id, spec=spec, **kw))

    def start(self, cid: str, exec_id: str = "") -> int:
        return int(self.svc.Start(m.StartRequest(id=cid, exec_id=exec_id)).pid)

    def remove(self, cid: str) -> None:
        """Kill (if needed), wait and delete: the end of every test's container."""
        try:
            st = self.state(cid)
        except RpcError:
            return
        if st.status in (1, 2, 4):
            try:
                self.kill(cid, 9, all=True)
            except RpcError:
                pass
            self.wait(cid)
        self.delete(cid)


@pytest.fixture
def shim() -> Iterator[Shim]:
    with pidsafe.Reaper() as reaper:
        events = Events()
        box: List[Shim] = []

        def shutdown() -> None:
            box[0].shutdowns += 1

        svc = TaskService(namespace="test", events=events, reaper=reaper, shutdown=shutdown)
        box.append(Shim(svc, events))
        try:
            yield box[0]
        finally:
            left = svc.container_ids
            for cid in left:
                box[0].remove(cid)
            svc.close()
        assert left == [], f"the test left containers in the shim: {left}"


class Fifos:
    """``ctr``'s FIFOs for one process: made, and the client's ends opened first."""

    def __init__(self, d: Path, name: str, stdin: bool = False, stderr: bool = True) -> None:
        self.stdin = str(d / f"{name}-stdin") if stdin else ""
        self.stdout = str(d / f"{name}-stdout")
        self.stderr = str(d / f"{name}-stderr") if stderr else ""
        self.fds: List[int] = []
        for p in (self.stdin, self.stdout, self.stderr):
            if p:
                os.mkfifo(p)
        self.out = self._open(self.stdout, os.O_RDONLY)
        self.err = self._open(self.stderr, os.O_RDONLY) if self.stderr else -1
        self.inp = self._open(self.stdin, os.O_WRONLY) if self.stdin else -1

    def _open(self, path: str, flags: int) -> int:
        if flags == os.O_WRONLY:
            # As ctr: O_WRONLY|O_NONBLOCK fails with ENXIO until a reader exists;
            # ctr opens with O_RDWR-less fifo semantics through containerd/fifo,
            # which waits in a goroutine.  Here: a temporary reader.
            r = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            os.close(r)
        else:
            fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
        self.fds.append(fd)
        return fd

    def io(self, terminal: bool = False) -> dict[str, Any]:
        return {"stdin": self.stdin, "stdout": self.stdout, "stderr": self.stderr,
                "terminal": terminal}

    def close_stdin(self) -> None:
        os.close(self.inp)
        self.fds.remove(self.inp)
        self.inp = -1

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


@pytest.fixture
def fifos(tmp_path: Path) -> Iterator[Any]:
    made: List[Fifos] = []

    def make(name: str = "p", **kw: Any) -> Fifos:
        f = Fifos(tmp_path, name, **kw)
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


def read_all(fd: int, timeout: float = 30) -> bytes:
    """Everything until EOF (every writer closed)."""
    out = b""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no EOF within {timeout} s; got {out!r}"
        poller.poll(left * 1000)
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            continue
        except OSError as exc:
            if exc.errno == errno.EIO:
                return out
            raise
        if not data:
            return out
        out += data


def read_all_now(fd: int, timeout: float = 30) -> bytes:
    """What is there, waiting for at least a byte (or EOF)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    assert poller.poll(timeout * 1000), f"nothing to read within {timeout} s"
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


def rpc_code(exc: pytest.ExceptionInfo[RpcError]) -> int:
    return int(exc.value.code)


#: ``python -c SUPERVISOR ARGV...`` runs ARGV (a shim's ``start``) as containerd does, as a
#: subreaper: the daemon it forks is reparented here, reaped once it exits; then this
#: exits too.  It prints ``repr((returncode, stdout, stderr))`` of ARGV first.  SIGTERM
#: (:func:`end_supervisor`, when a test fails before the daemon's shutdown) kills its
#: children, the daemon among them, each through a pidfd opened before its parent is
#: read: a killed supervisor would leave the daemon to pid 1, serving for good.
SUPERVISOR = """
import os, signal, subprocess, sys
from pidsafe import _sys

def end_children(*_):
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fd = os.pidfd_open(int(name))
        except OSError:
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid():
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(fd)

signal.signal(signal.SIGTERM, end_children)
_sys.set_child_subreaper(True)
res = subprocess.run(sys.argv[1:], input=b"", capture_output=True)
sys.stdout.write(repr((res.returncode, res.stdout, res.stderr)) + "\\n")
sys.stdout.flush()
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def end_supervisor(sup: "subprocess.Popen[str]") -> None:
    """A test's clean-up of a SUPERVISOR still running: it kills its children
    (the daemon), reaps them and exits."""
    if sup.poll() is None:
        sup.terminate()
        try:
            sup.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sup.kill()
    sup.wait()
