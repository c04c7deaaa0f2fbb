"""pidsafe.shim._client: stream ids, out-of-order answers, timeouts, closes."""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any, Iterator, List, Tuple

import pytest

from pidsafe.errors import ConnectionClosedError, DecodeError, RpcError
from pidsafe.shim import Client, Code
from pidsafe.shim import messages as m
from pidsafe.shim._ttrpc import MAX_DATA

from ttrpchelp import TIMEOUT, address, listen

T = m.TaskService


class FakeServer:
    """The server end, driven by the test: read requests, answer as told."""

    def __init__(self) -> None:
        self.addr = address()
        self.listener = listen(self.addr)
        self.conn: Any = None

    def accept(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.settimeout(TIMEOUT)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(TIMEOUT)

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            assert chunk, "client hung up"
            buf += chunk
        return buf

    def request(self) -> Tuple[int, m.Request]:
        length, sid, type_, flags = struct.unpack(">IIBB", self._exact(10))
        assert (type_, flags) == (1, 0)
        return sid, m.Request.decode(self._exact(length))

    def answer(self, sid: int, response: Any, *, type_: int = 2, length: Any = None) -> None:
        data = response if isinstance(response, bytes) else response.encode()
        n = len(data) if length is None else length
        self.conn.sendall(struct.pack(">IIBB", n, sid, type_, 0) + data)

    def ok(self, sid: int, msg: Any) -> None:
        self.answer(sid, m.Response(payload=msg.encode()))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.close()


def call_in_thread(client: Client, *args: Any, **kw: Any) -> Tuple[threading.Thread, List[Any]]:
    out: List[Any] = []

    def run() -> None:
        try:
            out.append(client.call(*args, **kw))
        except BaseException as e:
            out.append(e)

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_stream_ids_are_odd_from_one_on_each_connection(fake: FakeServer) -> None:
    with Client("unix://" + fake.addr) as client:
        fake.accept()
        for want in (1, 3, 5):
            t, out = call_in_thread(client, T.State, m.StateRequest(id=str(want)))
            sid, req = fake.request()
            assert sid == want and (req.service, req.method) == (T.State.service, "State")
            assert m.StateRequest.decode(req.payload).id == str(want)
            assert req.timeout_nano == 0 and req.metadata == []
            fake.ok(sid, m.StateResponse(pid=sid))
            t.join()
            assert out == [m.StateResponse(pid=want)]
        client.reconnect()
        fake.accept()
        t, out = call_in_thread(client, T.State, m.StateRequest())
        assert fake.request()[0] == 1
        fake.ok(1, m.StateResponse())
        t.join()


def test_answers_in_any_order_reach_their_callers(fake: FakeServer) -> None:
    with Client(fake.addr) as client:
        fake.accept()
        calls = []
        for i in range(3):
            calls.append(call_in_thread(client, T.State, m.StateRequest(id=str(i))))
        requests = [fake.request() for _ in range(3)]
        for sid, req in reversed(requests):
            fake.ok(sid, m.StateResponse(id=m.StateRequest.decode(req.payload).id))
        for i, (t, out) in enumerate(calls):
            t.join()
            assert out == [m.StateResponse(id=str(i))]


def test_timeout_metadata_and_a_late_answer(fake: FakeServer) -> None:
    with Client(fake.addr) as client:
        fake.accept()
        with pytest.raises(RpcError) as e:
            client.call(T.State, m.StateRequest(), timeout=0.01,
                        metadata={"Containerd-Namespace-Ttrpc": "k8s.io", "x": ["a", "b"]})
        assert e.value.code == Code.DEADLINE_EXCEEDED
        sid, req = fake.request()
        assert req.timeout_nano == 10_000_000
        assert [(kv.key, kv.value) for kv in req.metadata] == [
            ("containerd-namespace-ttrpc", "k8s.io"), ("x", "a"), ("x", "b")]
        fake.ok(sid, m.StateResponse(id="late"))             # nobody waits: ignored
        t, out = call_in_thread(client, T.State, m.StateRequest())
        sid2, _ = fake.request()
        fake.ok(sid2, m.StateResponse(id="now"))
        t.join()
        assert sid2 == 3 and out == [m.StateResponse(id="now")]


def test_status_errors_and_bad_answers(fake: FakeServer) -> None:
    with Client(fake.addr) as client:
        fake.accept()
        answers = [
            m.Response(status=m.RpcStatus(code=Code.NOT_FOUND, message="gone")),
            m.Response(status=m.RpcStatus(code=0), payload=m.StateResponse(pid=2).encode()),
            b"\xff",                                              # not a Response
            b"\x12\x02\xff\xff",                                  # a payload that is not one
        ]
        results = []
        for answer in answers:
            t, out = call_in_thread(client, T.State, m.StateRequest())
            sid, _ = fake.request()
            fake.answer(sid, answer)
            t.join()
            results.append(out[0])
        assert isinstance(results[0], RpcError) and results[0].code == Code.NOT_FOUND
        assert results[0].message == "gone"
        assert results[1] == m.StateResponse(pid=2)
        assert isinstance(results[2], DecodeError) and isinstance(results[3], DecodeError)
        assert not client.closed


def test_an_oversized_answer_fails_that_call_only(fake: FakeServer) -> None:
    with Client(fake.addr) as client:
        fake.accept()
        t, out = call_in_thread(client, T.State, m.StateRequest())
        sid, _ = fake.request()
        fake.answer(sid, bytes(MAX_DATA + 1))
        t.join()
        assert isinstance(out[0], RpcError) and out[0].code == Code.RESOURCE_EXHAUSTED
        t, out = call_in_thread(client, T.State, m.StateRequest())
        sid, _ = fake.request()
        fake.answer(sid + 100, b"", type_=2)       # a stray id: ignored
        fake.answer(sid, b"", type_=3)             # another type: ignored
        fake.ok(sid, m.StateResponse(pid=9))
        t.join()
        assert out == [m.StateResponse(pid=9)]


def test_a_request_over_the_limit_is_refused_before_sending(fake: FakeServer) -> None:
    with Client(fake.addr) as client:
        fake.accept()
        with pytest.raises(ValueError, match="exceeds the maximum"):
            client.call(T.State, m.StateRequest(id="x" * MAX_DATA))
        with pytest.raises(TypeError, match="takes a StateRequest, not a WaitRequest"):
            client.call(T.State, m.WaitRequest())  # type: ignore[arg-type]
        t, out = call_in_thread(client, T.State, m.StateRequest())
        assert fake.request()[0] == 3              # id 1 was taken, never sent
        fake.ok(3, m.StateResponse())
        t.join()


def test_a_closed_connection_fails_calls_until_reconnect(fake: FakeServer) -> None:
    client = Client(fake.addr)
    fake.accept()
    waiting = [call_in_thread(client, T.Wait, m.WaitRequest()) for _ in range(2)]
    for _ in waiting:
        fake.request()
    fake.conn.close()                              # the server goes away
    fake.conn = None
    for t, out in waiting:
        t.join()
        assert isinstance(out[0], ConnectionClosedError)
    assert client.closed
    with pytest.raises(ConnectionClosedError):
        client.call(T.State, m.StateRequest())
    client.reconnect()
    fake.accept()
    assert not client.closed
    t, out = call_in_thread(client, T.State, m.StateRequest())
    fake.ok(fake.request()[0], m.StateResponse(id="back"))
    t.join()
    assert out == [m.StateResponse(id="back")]
    client.close()
    client.close()
    assert client.closed
    with pytest.raises(ConnectionClosedError, match="client closed"):
        client.call(T.State, m.StateRequest())


def test_close_fails_a_waiting_call(fake: FakeServer) -> None:
    client = Client(fake.addr)
    fake.accept()
    t, out = call_in_thread(client, T.Wait, m.WaitRequest())
    fake.request()
    client.close()
    t.join()
    assert isinstance(out[0], ConnectionClosedError)


def test_nothing_listening() -> None:
    with pytest.raises(ConnectionClosedError, match="cannot connect"):
        Client(address())
    lone = address()
    with socket.socket(socket.AF_UNIX) as bound:       # bound, not listening
        bound.bind(lone)
        with pytest.raises(ConnectionClosedError):
            Client(lone)
