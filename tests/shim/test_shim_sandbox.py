"""Per-sandbox bring-ups (``_sandbox``): concurrent by default, serial on request,
never blocking another sandbox or another request; creates into a gone sandbox.

The bring-ups are traced (``BringUp.trace``: ``wait``, ``enter``, ``leave``
with ``time.monotonic_ns()``), and the tests check the order of what was
recorded; no wall-clock time is asserted.  Threads meet through events and
barriers; a timeout there only turns a hang into a failure.
"""

from __future__ import annotations

import os
import select
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from pidsafe.errors import RpcError
from pidsafe.shim import Code

from shimhelp import Shim, shim  # noqa: F401 - fixtures

pytestmark = pytest.mark.root

#: How long a test lets a thread run before calling it hung (a failure, not a measure).
HANG = 60.0

SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
CONTAINER_TYPE = "io.kubernetes.cri.container-type"


def in_pod(sandbox: str, *, serial: bool = False, pause: bool = False
           ) -> Callable[[Dict[str, Any]], None]:
    """A config edit: the container belongs to CRI sandbox ``sandbox``."""
    def edit(doc: Dict[str, Any]) -> None:
        doc["annotations"] = {SANDBOX_ID: sandbox,
                              CONTAINER_TYPE: "sandbox" if pause else "container"}
        if serial:
            doc["annotations"]["org.pidsafe.bringup"] = "serial"
    return edit


class Trace:
    """The bring-up trace of a shim: ``(what, container_id, t_ns)``, in order."""

    def __init__(self, shim: Shim) -> None:
        self.got: List[Tuple[str, str, int]] = []
        self._cond = threading.Condition()
        shim.svc.bringups.trace = self.record

    def record(self, what: str, sandbox: str, cid: str, t_ns: int) -> None:
        with self._cond:
            self.got.append((what, cid, t_ns))
            self._cond.notify_all()

    def when(self, what: str, cid: str) -> int:
        [t] = [t for w, c, t in self.got if (w, c) == (what, cid)]
        return t

    def wait_for(self, what: str, cid: str) -> None:
        with self._cond:
            assert self._cond.wait_for(
                lambda: any((w, c) == (what, cid) for w, c, _ in self.got), HANG), \
                f"no {what} of {cid} in {self.got}"

    def overlap(self, a: str, b: str) -> bool:
        """Whether the bring-ups of ``a`` and ``b`` were inside at the same time."""
        return self.when("enter", a) < self.when("leave", b) and \
            self.when("enter", b) < self.when("leave", a)


class Creates:
    """Creates in threads of their own (as the ttrpc server runs them)."""

    def __init__(self, shim: Shim) -> None:
        self.shim = shim
        self.threads: List[threading.Thread] = []
        self.errors: Dict[str, BaseException] = {}

    def start(self, cid: str, bundle: Path) -> None:
        def one() -> None:
            try:
                self.shim.create(cid, bundle)
            except BaseException as exc:   # reported by join()
                self.errors[cid] = exc
        t = threading.Thread(target=one, name=cid, daemon=True)
        t.start()
        self.threads.append(t)

    def join(self) -> None:
        for t in self.threads:
            t.join(HANG)
            assert not t.is_alive(), f"create of {t.name} hung"
        assert self.errors == {}


def within(fn: Callable[[], Any]) -> Any:
    """``fn()`` in another thread, which must return (a hang fails the test)."""
    box: List[Any] = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(HANG)
    assert box, "the call hung (or raised, see the thread's traceback)"
    return box[0]


def hold_bring_up(monkeypatch: pytest.MonkeyPatch, hold: Dict[str, Callable[[], None]]) -> None:
    """Before the real bring-up of container ``cid``, call ``hold[cid]()``."""
    from pidsafe.shim import _service

    real = _service.bring_up

    def bring_up(req: Any, *args: Any, **kw: Any) -> Any:
        if req.id in hold:
            hold[req.id]()
        return real(req, *args, **kw)

    monkeypatch.setattr(_service, "bring_up", bring_up)


def test_bring_ups_overlap_by_default(shim: Shim, make_bundle: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    shim.run("par", make_bundle(["sleep", "600"], in_pod("par", pause=True)))
    trace = Trace(shim)
    both = threading.Barrier(2, timeout=HANG)    # each waits inside for the other
    hold_bring_up(monkeypatch, {"p0": both.wait, "p1": both.wait})
    creates = Creates(shim)
    for i in range(2):
        creates.start(f"p{i}", make_bundle(["true"], in_pod("par")))
    creates.join()
    assert trace.overlap("p0", "p1")
    assert not shim.svc.bringups.serial("par")
    for i in range(2):
        shim.delete(f"p{i}")
    shim.remove("par")


def test_serial_bring_ups_do_not_overlap(shim: Shim, make_bundle: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    shim.run("ser", make_bundle(["sleep", "600"], in_pod("ser", serial=True, pause=True)))
    assert shim.svc.bringups.serial("ser")
    trace = Trace(shim)
    # s0 goes on with its bring-up only once s1 asks for the sandbox's lock.
    hold_bring_up(monkeypatch, {"s0": lambda: trace.wait_for("wait", "s1")})
    creates = Creates(shim)
    creates.start("s0", make_bundle(["true"], in_pod("ser", serial=True)))
    trace.wait_for("enter", "s0")
    creates.start("s1", make_bundle(["true"], in_pod("ser", serial=True)))
    creates.join()
    assert trace.when("wait", "s1") < trace.when("leave", "s0") <= trace.when("enter", "s1")
    assert not trace.overlap("s0", "s1")
    for i in range(2):
        shim.delete(f"s{i}")
    shim.remove("ser")


def test_serial_sandbox_blocks_nothing_else(shim: Shim, make_bundle: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """While a serial sandbox's bring-up is slow (held here), another sandbox's bring-ups
    (serial or not) and the other requests of the same sandbox all go on."""
    go = threading.Event()
    hold_bring_up(monkeypatch, {"slow1": lambda: go.wait(HANG) or None})
    serial = in_pod("slow", serial=True)
    shim.run("slow", make_bundle(["sleep", "600"], in_pod("slow", serial=True, pause=True)))
    trace = Trace(shim)
    held = Creates(shim)
    held.start("slow1", make_bundle(["true"], serial))
    trace.wait_for("enter", "slow1")
    held.start("slow2", make_bundle(["true"], serial))      # waits for slow1
    trace.wait_for("wait", "slow2")

    # Other sandboxes come up meanwhile, serial or not.
    others = [("fast", in_pod("fast", serial=True, pause=True)),
              ("fast1", in_pod("fast", serial=True)),
              ("other", in_pod("other", pause=True)), ("other1", in_pod("other"))]
    for cid, edit in others:
        within(lambda: shim.create(cid, make_bundle(["sleep", "600"], edit)))
    # So do State, Exec, Start, Kill and Wait of the serial sandbox's running container.
    assert within(lambda: shim.state("slow")).status == 2
    within(lambda: shim.exec("slow", "e1", ["sleep", "600"]))
    assert within(lambda: shim.start("slow", "e1")) > 0
    within(lambda: shim.kill("slow", 9, exec_id="e1"))
    assert within(lambda: shim.wait("slow", "e1")) == 137
    within(lambda: shim.delete("slow", "e1"))
    assert ("enter", "slow2") not in [(w, c) for w, c, _ in trace.got]

    go.set()
    held.join()
    slow_end = trace.when("leave", "slow1")
    for cid, _ in others:
        assert trace.when("leave", cid) < slow_end
    assert trace.when("enter", "slow2") >= slow_end
    for cid in ("fast1", "other1", "fast", "other", "slow1", "slow2"):
        shim.delete(cid)
    shim.remove("slow")


def test_create_into_a_stopped_or_removed_sandbox(shim: Shim, make_bundle: Any) -> None:
    shim.run("pod", make_bundle(["sleep", "600"], in_pod("pod", pause=True)))
    shim.kill("pod", 9)
    assert shim.wait("pod") == 137
    for step in ("stopped", "removed"):
        bundle = make_bundle(["true"], in_pod("pod"))
        with pytest.raises(RpcError) as ei:
            shim.create(f"app-{step}", bundle)
        assert ei.value.code == Code.FAILED_PRECONDITION
        assert "sandbox 'pod'" in str(ei.value)
        assert ("is not running" if step == "stopped" else "has been removed") in str(ei.value)
        # Refused before anything was made.
        assert not os.path.exists(bundle / "pidsafe")
        assert not os.path.ismount(bundle / "rootfs")
        assert shim.svc.container_ids == (["pod"] if step == "stopped" else [])
        if step == "stopped":
            shim.delete("pod")
    # Another pod is not affected.
    shim.run("pod2", make_bundle(["sleep", "600"], in_pod("pod2", pause=True)))
    shim.create("app2", make_bundle(["true"], in_pod("pod2")))
    shim.delete("app2")
    shim.remove("pod2")


def test_create_whose_sandbox_exits_during_its_bring_up(
        shim: Shim, make_bundle: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pause exits after the create's check, before the container joins its
    namespaces: the error names the sandbox, as a create refused before does
    (it said "No such file or directory: '/proc/PID/ns/ipc'"), and nothing is left."""
    pid = shim.run("pod", make_bundle(["sleep", "600"], in_pod("pod", pause=True)))
    pidfd = os.pidfd_open(pid)

    def kill_pause() -> None:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        assert select.select([pidfd], [], [], HANG)[0], "the pause did not exit"

    def joins_the_pause(doc: Dict[str, Any]) -> None:
        in_pod("pod")(doc)
        for ns in doc["linux"]["namespaces"]:
            if ns["type"] in ("ipc", "uts", "network"):
                ns["path"] = f"/proc/{pid}/ns/{'net' if ns['type'] == 'network' else ns['type']}"

    hold_bring_up(monkeypatch, {"app": kill_pause})
    bundle = make_bundle(["true"], joins_the_pause)
    try:
        with pytest.raises(RpcError) as ei:
            shim.create("app", bundle)
    finally:
        os.close(pidfd)
    assert ei.value.code == Code.FAILED_PRECONDITION, ei.value
    assert "sandbox 'pod' is not running (its pause process has exited)" in str(ei.value)
    assert not os.path.ismount(bundle / "rootfs")
    assert shim.wait("pod") == 137
    assert shim.svc.container_ids == ["pod"]
    shim.delete("pod")


def test_create_into_a_sandbox_this_shim_does_not_run(shim: Shim, make_bundle: Any) -> None:
    """A pod's daemon runs its sandbox: a CRI container without it (the pod was stopped
    and its daemon went) is refused before anything is made."""
    bundle = make_bundle(["true"], in_pod("elsewhere"))
    with pytest.raises(RpcError) as ei:
        shim.create("orphan", bundle)
    assert ei.value.code == Code.FAILED_PRECONDITION
    assert "sandbox 'elsewhere' is not running in this shim" in str(ei.value)
    assert not os.path.exists(bundle / "pidsafe")
