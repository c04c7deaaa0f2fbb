"""Exit order: each race forced, then checked in the events (root).

A process's exit is never published before its create/start event, even
when it exits before Create/Start returns; an init's exit is the last exit
of its container; no exec starts once init has exited; exits are keyed by
process object.  Each race is forced by holding the
service right where it matters until the exit has provably arrived (the
router parked it), never by sleeping.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, Dict, List

import pytest

import pidsafe
from pidsafe.errors import RpcError
from pidsafe.shim import Code
from pidsafe.shim import _exec, _service
from pidsafe.shim._exits import ExitRouter
from pidsafe.shim._task import ShimProcess, Stdio

from shimhelp import Shim, shim  # noqa: F401 - fixtures

pytestmark = pytest.mark.root


def until(pred: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def held(proc: ShimProcess) -> bool:
    return proc._held is not None


def container(shim: Shim, cid: str) -> Any:
    c = shim.svc._table.get(cid)
    assert c is not None
    return c


def test_init_exit_before_start_returns(shim: Shim, make_bundle: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = pidsafe.Container.start
    parked: List[bool] = []

    def start(self: pidsafe.Container) -> None:
        real(self)
        init = container(shim, self.id).init
        until(lambda: held(init), "init's exit to be parked")
        parked.append(True)

    monkeypatch.setattr(pidsafe.Container, "start", start)
    shim.run("r1", make_bundle(["true"]))
    assert parked == [True]              # the exit did arrive while Start was in flight
    assert shim.wait("r1") == 0
    shim.delete("r1")
    assert shim.events.topics("r1") == ["/tasks/create", "/tasks/start", "/tasks/exit:r1",
                                        "/tasks/delete"]


def test_init_exit_before_create_returns(shim: Shim, make_bundle: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    real = _service.bring_up

    def bring_up(*args: Any, **kw: Any) -> Any:
        c = real(*args, **kw)
        c.init.process.kill()
        until(lambda: held(c.init), "init's exit to be parked")
        return c

    monkeypatch.setattr(_service, "bring_up", bring_up)
    shim.create("c1", make_bundle(["sleep", "1000"]))
    assert shim.wait("c1") == 137
    with pytest.raises(RpcError) as ei:
        shim.start("c1")
    assert ei.value.code == Code.FAILED_PRECONDITION
    shim.delete("c1")
    assert shim.events.topics("c1") == ["/tasks/create", "/tasks/exit:c1", "/tasks/delete"]


def test_exec_exit_before_start_returns(shim: Shim, make_bundle: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = _exec.start_exec
    parked: List[bool] = []

    def start_exec(c: Any, proc: ShimProcess, **kw: Any) -> Any:
        p = real(c, proc, **kw)
        until(lambda: held(proc), "the exec's exit to be parked")
        parked.append(True)
        return p

    monkeypatch.setattr(_exec, "start_exec", start_exec)
    shim.run("x", make_bundle(["sleep", "1000"]))
    shim.exec("x", "e1", ["sh", "-c", "exit 3"])
    shim.start("x", "e1")
    assert parked == [True]
    assert shim.wait("x", "e1") == 3
    shim.delete("x", "e1")
    shim.remove("x")
    assert shim.events.topics("x") == [
        "/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
        "/tasks/exit:e1", "/tasks/exit:x", "/tasks/delete"]


@pytest.mark.parametrize("pid_ns", [True, False], ids=["own-pidns", "host-pidns"])
def test_init_exit_after_its_execs(shim: Shim, make_bundle: Any, pid_ns: bool) -> None:
    def edit(doc: Dict[str, Any]) -> None:
        if not pid_ns:
            doc["linux"]["namespaces"] = [n for n in doc["linux"]["namespaces"]
                                          if n["type"] != "pid"]

    shim.run("o", make_bundle(["sleep", "1000"], edit))
    for i in range(3):
        shim.exec("o", f"e{i}", ["sleep", "1000"])
        shim.start("o", f"e{i}")
    # Only init is signalled: with a pid namespace the kernel ends the rest;
    # without one, the shim kills the rest of the cgroup (runc's KillAll).
    shim.kill("o", signal.SIGKILL)
    assert shim.wait("o") == 137
    for i in range(3):
        assert shim.wait("o", f"e{i}") == 137
        shim.delete("o", f"e{i}")
    shim.delete("o")
    exits = [t for t in shim.events.topics("o") if t.startswith("/tasks/exit")]
    assert exits[-1] == "/tasks/exit:o" and sorted(exits[:-1]) == [
        f"/tasks/exit:e{i}" for i in range(3)]


def test_init_exit_waits_for_an_exec_whose_exit_is_parked(
        shim: Shim, make_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = _exec.start_exec
    stashed: List[bool] = []

    def start_exec(c: Any, proc: ShimProcess, **kw: Any) -> Any:
        p = real(c, proc, **kw)
        # init dies while this exec's Start is in flight: the kernel ends the
        # exec too; its exit is parked, so init's must wait for it.
        c.init.process.kill()
        until(lambda: c.stashed_init_exit is not None and held(proc),
              "init's exit to be stashed behind the exec's")
        stashed.append(True)
        return p

    monkeypatch.setattr(_exec, "start_exec", start_exec)
    shim.run("s", make_bundle(["sleep", "1000"]))
    shim.exec("s", "e1", ["sleep", "1000"])
    shim.start("s", "e1")
    assert stashed == [True]
    assert shim.wait("s") == 137 and shim.wait("s", "e1") == 137
    shim.delete("s", "e1")
    shim.delete("s")
    assert shim.events.topics("s") == [
        "/tasks/create", "/tasks/start", "/tasks/exec-added", "/tasks/exec-started",
        "/tasks/exit:e1", "/tasks/exit:s", "/tasks/delete"]


def test_no_exec_starts_after_init_exited(shim: Shim, make_bundle: Any) -> None:
    shim.run("n", make_bundle(["sleep", "1000"]))
    shim.exec("n", "late", ["true"])
    shim.kill("n", signal.SIGKILL)
    shim.wait("n")
    with pytest.raises(RpcError) as ei:
        shim.start("n", "late")
    assert ei.value.code == Code.FAILED_PRECONDITION
    assert "init process is not running" in ei.value.message
    with pytest.raises(RpcError) as ei:
        shim.exec("n", "later", ["true"])
    assert ei.value.code == Code.FAILED_PRECONDITION
    shim.delete("n", "late")
    shim.delete("n")


def test_concurrent_execs_racing_the_init_exit(shim: Shim, make_bundle: Any) -> None:
    """Many execs that exit at once, started while init is killed: every started
    process has exactly one exit, after its start, and init's is the last."""
    for round_ in range(3):
        cid = f"race{round_}"
        shim.run(cid, make_bundle(["sleep", "1000"]))
        for i in range(6):
            shim.exec(cid, f"e{i}", ["true"])
        errors: Dict[str, Any] = {}

        def start(i: int) -> None:
            try:
                shim.start(cid, f"e{i}")
            except RpcError as exc:
                errors[f"e{i}"] = exc.code

        threads = [threading.Thread(target=start, args=(i,)) for i in range(6)]
        for t in threads[:3]:
            t.start()
        shim.kill(cid, signal.SIGKILL)
        for t in threads[3:]:
            t.start()
        for t in threads:
            t.join()
        assert shim.wait(cid) == 137
        assert set(errors.values()) <= {Code.FAILED_PRECONDITION, Code.UNKNOWN}, errors
        topics = shim.events.topics(cid)
        started = [t.split(":")[0] for t in topics]
        assert topics[-1] == f"/tasks/exit:{cid}", topics
        for i in range(6):
            name = f"e{i}"
            evs = [(t, e) for t, e in shim.events.of(cid)
                   if getattr(e, "exec_id", None) == name or getattr(e, "id", None) == name]
            kinds = [t for t, _ in evs]
            if name in errors:
                assert kinds == ["/tasks/exec-added"], kinds
            else:
                assert kinds == ["/tasks/exec-added", "/tasks/exec-started", "/tasks/exit"], \
                    kinds
            shim.delete(cid, name)
        assert started.count("/tasks/exit") == 7 - len(errors)
        shim.delete(cid)


def test_exits_are_routed_by_process_object_not_pid() -> None:
    """Two exits with the same pid reach the owner of each process object."""
    with pidsafe.Reaper() as reaper:
        got: List[Any] = []
        router = ExitRouter(reaper, lambda owner, ex: got.append((owner.exec_id, ex)))
        try:
            a = pidsafe.spawn(["true"])
            b = pidsafe.spawn(["true"])
            pa, pb = (ShimProcess("c", name, Stdio()) for name in ("a", "b"))
            router.own(a, pa)
            router.own(b, pb)
            # An exit that claims b's pid but carries a's process goes to a's owner.
            router._route(pidsafe.Exit(pid=b.pid, returncode=0, process=a, orphan=False,
                                       timestamp=time.monotonic()))
            router._route(pidsafe.Exit(pid=b.pid, returncode=1, process=b, orphan=False,
                                       timestamp=time.monotonic()))
            # An orphan, and a process nobody owns: dropped.
            router._route(pidsafe.Exit(pid=a.pid, returncode=2, process=None, orphan=True,
                                       timestamp=time.monotonic()))
            router._route(pidsafe.Exit(pid=a.pid, returncode=2, process=a, orphan=False,
                                       timestamp=time.monotonic()))
            assert [(name, ex.returncode) for name, ex in got] == [("a", 0), ("b", 1)]
            for p in (a, b):
                p.wait()
                p.close()
        finally:
            router.stop()
