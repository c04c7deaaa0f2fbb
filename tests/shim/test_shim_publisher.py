"""pidsafe.shim._publisher: events to a fake containerd, in order, retried."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

from pidsafe.errors import RpcError
from pidsafe.shim import Code, Context, Publisher, Server, validate_identifier, validate_topic
from pidsafe.shim import messages as m

from ttrpchelp import TIMEOUT, address, listen

E = m.EventsService


class FakeContainerd:
    """containerd's ttrpc Events service: records each Forward, or fails it
    as ``script`` says (a list of RpcError/None, consumed one per call)."""

    def __init__(self, addr: Optional[str] = None) -> None:
        self.addr = addr or address()
        self.received: "queue.Queue[Tuple[m.Envelope, Optional[str]]]" = queue.Queue()
        self.calls = 0
        self.script: List[Optional[BaseException]] = []
        self.gate: Optional[threading.Event] = None
        self.entered = threading.Event()
        self.server: Optional[Server] = None
        self.start()

    def forward(self, req: m.ForwardRequest, ctx: Context) -> m.Empty:
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(TIMEOUT)
        if self.script:
            error = self.script.pop(0)
            if error is not None:
                raise error
        assert req.envelope is not None
        self.received.put((req.envelope, ctx.get("containerd-namespace-ttrpc")))
        return m.Empty()

    def start(self) -> None:
        self.server = Server()
        self.server.register(E.Forward, self.forward)
        self.server.start(listen(self.addr))

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown(TIMEOUT)
            self.server = None

    def topics(self, n: int) -> List[str]:
        return [self.received.get(timeout=TIMEOUT)[0].topic for _ in range(n)]


@pytest.fixture
def containerd() -> Iterator[FakeContainerd]:
    fake = FakeContainerd()
    try:
        yield fake
    finally:
        if fake.gate is not None:
            fake.gate.set()
        fake.stop()


@pytest.fixture
def publishers() -> Iterator[Callable[..., Publisher]]:
    made: List[Publisher] = []

    def make(addr: str, **kw: Any) -> Publisher:
        kw.setdefault("retry_delay", 0.001)
        p = Publisher(addr, "testns", **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close(timeout=TIMEOUT)


def exit_event(n: int) -> m.TaskExit:
    return m.TaskExit(container_id="c", id="c", pid=n, exit_status=n)


def test_forwards_an_envelope_as_containerd_expects(containerd: FakeContainerd,
                                                   publishers: Callable[..., Publisher]) -> None:
    pub = publishers("unix://" + containerd.addr)
    before = time.time_ns()
    assert pub.publish("/tasks/exit", exit_event(7))
    envelope, namespace = containerd.received.get(timeout=TIMEOUT)
    assert namespace == "testns"
    assert (envelope.namespace, envelope.topic) == ("testns", "/tasks/exit")
    assert envelope.event is not None
    assert envelope.event.type_url == "containerd.events.TaskExit"
    assert envelope.event.unpack() == exit_event(7)
    assert envelope.timestamp is not None and envelope.timestamp.to_ns() >= before
    assert pub.close(TIMEOUT) and pub.dropped == 0


def test_order_is_kept_and_publish_never_waits(containerd: FakeContainerd,
                                               publishers: Callable[..., Publisher]) -> None:
    containerd.gate = threading.Event()         # containerd answers nothing for now
    pub = publishers(containerd.addr)
    for i in range(50):
        assert pub.publish(f"/tasks/e{i}", exit_event(i))
    assert pub.pending == 50
    containerd.gate.set()
    assert containerd.topics(50) == [f"/tasks/e{i}" for i in range(50)]


def test_failures_are_retried_in_place(containerd: FakeContainerd,
                                       publishers: Callable[..., Publisher]) -> None:
    containerd.script = [RpcError(Code.UNAVAILABLE, "busy"), RpcError(Code.UNKNOWN, "x"), None]
    pub = publishers(containerd.addr)
    for i in range(3):
        pub.publish(f"/tasks/e{i}", exit_event(i))
    assert containerd.topics(3) == ["/tasks/e0", "/tasks/e1", "/tasks/e2"]
    assert containerd.calls == 5 and pub.dropped == 0


def test_an_event_that_always_fails_is_dropped_and_logged(
        containerd: FakeContainerd, publishers: Callable[..., Publisher],
        caplog: pytest.LogCaptureFixture) -> None:
    containerd.script = [RpcError(Code.INVALID_ARGUMENT, "bad")] * 3
    pub = publishers(containerd.addr, retries=2)
    with caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        pub.publish("/tasks/doomed", exit_event(1))
        pub.publish("/tasks/next", exit_event(2))
        assert containerd.topics(1) == ["/tasks/next"]
    assert pub.dropped == 1 and containerd.calls == 4
    assert "dropping event /tasks/doomed after 3 attempts: InvalidArgument: bad" in caplog.text


def test_reconnects_when_containerd_restarts(containerd: FakeContainerd,
                                             publishers: Callable[..., Publisher]) -> None:
    pub = publishers(containerd.addr, retries=1000)
    pub.publish("/tasks/one", exit_event(1))
    assert containerd.topics(1) == ["/tasks/one"]
    containerd.stop()                            # the connection closes; the socket goes away
    pub.publish("/tasks/two", exit_event(2))
    containerd.start()                           # back, at the same address
    pub.publish("/tasks/three", exit_event(3))
    assert containerd.topics(2) == ["/tasks/two", "/tasks/three"]


def test_waits_for_containerd_to_listen(publishers: Callable[..., Publisher]) -> None:
    addr = address()
    pub = publishers(addr, retries=1000)
    pub.publish("/tasks/early", exit_event(1))
    fake = FakeContainerd(addr)
    try:
        assert fake.topics(1) == ["/tasks/early"]
    finally:
        fake.stop()


def test_a_full_queue_drops_instead_of_blocking(containerd: FakeContainerd,
                                                publishers: Callable[..., Publisher],
                                                caplog: pytest.LogCaptureFixture) -> None:
    containerd.gate = threading.Event()
    pub = publishers(containerd.addr, queue_size=2)
    with caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        results = [pub.publish(f"/tasks/e{i}", exit_event(i)) for i in range(3)]
    assert results == [True, True, False] and pub.dropped == 1
    assert "dropping event /tasks/e2 (containerd.events.TaskExit): the queue is full" in caplog.text
    containerd.gate.set()
    assert containerd.topics(2) == ["/tasks/e0", "/tasks/e1"]


def test_close_drains_then_refuses(containerd: FakeContainerd,
                                   publishers: Callable[..., Publisher]) -> None:
    containerd.gate = threading.Event()
    pub = publishers(containerd.addr)
    for i in range(5):
        pub.publish(f"/tasks/e{i}", exit_event(i))
    closer = threading.Thread(target=lambda: results.append(pub.close(TIMEOUT)))
    results: List[bool] = []
    closer.start()
    containerd.gate.set()
    closer.join()
    assert results == [True] and containerd.topics(5) == [f"/tasks/e{i}" for i in range(5)]
    assert not pub.publish("/tasks/late", exit_event(9)) and pub.dropped == 1


def test_close_gives_up_when_containerd_is_gone(publishers: Callable[..., Publisher],
                                                caplog: pytest.LogCaptureFixture) -> None:
    pub = publishers(address(), retries=1000)
    with caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        for i in range(3):
            pub.publish(f"/tasks/e{i}", exit_event(i))
        assert pub.close(timeout=0.01) is False
    assert pub.pending == 0 and pub.dropped == 3
    assert "the publisher closed" in caplog.text


def test_close_interrupts_a_call_in_flight(containerd: FakeContainerd,
                                           publishers: Callable[..., Publisher]) -> None:
    containerd.gate = threading.Event()          # Forward never answers
    pub = publishers(containerd.addr, timeout=TIMEOUT)
    pub.publish("/tasks/stuck", exit_event(1))
    assert containerd.entered.wait(TIMEOUT)
    assert pub.close(timeout=0.01) is False and pub.dropped == 1


def test_a_publisher_that_never_published_closes() -> None:
    assert Publisher(address(), "ns").close()


@pytest.mark.parametrize("topic", ["/tasks/exit", "/tasks/exec-started", "/a.b_c-d/E9"])
def test_good_topics(topic: str) -> None:
    validate_topic(topic)


@pytest.mark.parametrize("topic, what", [
    ("", "must start with '/'"), ("tasks/exit", "must start with '/'"), ("/", "component"),
    ("/tasks//exit", "must not be empty"), ("/tasks/exit/", "must not be empty"),
    ("/tasks/-exit", "joined by single"), ("/tasks/ex..it", "joined by single"),
    ("/tasks/exit-", "joined by single"), ("/tâsks", "joined by single"),
    ("/" + "a" * 77, "greater than maximum length"),
])
def test_bad_topics(topic: str, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        validate_topic(topic)


def test_bad_namespace_and_environment() -> None:
    validate_identifier("k8s.io")
    with pytest.raises(ValueError, match="joined by single"):
        Publisher(address(), "k8s io")
    with pytest.raises(ValueError, match="TTRPC_ADDRESS is not set"):
        Publisher.from_env("ns", environ={})
    pub = Publisher.from_env("ns", environ={"TTRPC_ADDRESS": "/run/x.ttrpc"})
    assert pub.address == "/run/x.ttrpc"
    with pytest.raises(ValueError, match="must start with"):
        pub.publish("tasks", exit_event(1))
    with pytest.raises(TypeError, match="TaskExit.pid"):
        pub.publish("/tasks/exit", m.TaskExit(pid="1"))  # type: ignore[arg-type]
    assert pub.close() and pub.pending == 0
