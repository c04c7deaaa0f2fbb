"""pidsafe.shim._server: dispatch, errors, bad frames, concurrency, shutdown."""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
from typing import Any, Callable, List, Tuple

import pytest

from pidsafe.errors import ConnectionClosedError, RpcError
from pidsafe.shim import Client, Code, Context, Server, _server
from pidsafe.shim import messages as m
from pidsafe.shim._ttrpc import MAX_DATA

from conftest import wait_until
from ttrpchelp import TIMEOUT, RawPeer, address, listen, serve  # noqa: F401 - a fixture

T = m.TaskService
Serve = Callable[..., Tuple[Server, str]]


def state(req: m.StateRequest, ctx: Context) -> m.StateResponse:
    return m.StateResponse(id=req.id, exec_id=ctx.method, pid=ctx.stream_id)


def test_call_and_context(serve: Serve) -> None:
    seen: List[Context] = []

    def handler(req: m.StateRequest, ctx: Context) -> m.StateResponse:
        seen.append(ctx)
        return m.StateResponse(id=req.id, status=m.Status.RUNNING)

    _, addr = serve((T.State, handler))
    with Client(addr) as client:
        resp = client.call(T.State, m.StateRequest(id="c1"), timeout=TIMEOUT,
                           metadata={"Containerd-Namespace-TTRPC": "ns", "x": ["1", "2"]})
    assert resp == m.StateResponse(id="c1", status=m.Status.RUNNING)
    ctx = seen[0]
    assert (ctx.service, ctx.method, ctx.stream_id) == ("containerd.task.v2.Task", "State", 1)
    assert ctx.get("containerd-namespace-ttrpc") == ctx.get("CONTAINERD-namespace-ttrpc") == "ns"
    assert ctx.metadata["x"] == ["1", "2"] and ctx.get("absent") is None
    remaining = ctx.remaining()
    assert remaining is not None and remaining < TIMEOUT


def test_no_timeout_means_no_deadline(serve: Serve) -> None:
    seen: List[Context] = []
    _, addr = serve((T.State, lambda req, ctx: (seen.append(ctx), m.StateResponse())[1]))
    with Client(addr) as client:
        client.call(T.State, m.StateRequest())
    assert seen[0].deadline is None and seen[0].remaining() is None and seen[0].metadata == {}


def test_success_is_a_response_with_only_a_payload(serve: Serve) -> None:
    _, addr = serve((T.Create, lambda req, ctx: m.CreateTaskResponse(pid=871)),
                    (T.Pause, lambda req, ctx: m.Empty()))
    with RawPeer(addr) as peer:
        peer.request(1, T.Create, m.CreateTaskRequest(id="x"))
        assert peer.read() == (1, 2, bytes.fromhex("120308e706"))    # as the Go shim answers
        peer.request(3, T.Pause, m.PauseRequest(id="x"))
        assert peer.read() == (3, 2, b"")                           # Empty: a 0-byte Response


def test_unknown_service_and_method_are_unimplemented(serve: Serve) -> None:
    _, addr = serve((T.State, state))
    with Client(addr) as client:
        with pytest.raises(RpcError) as e:
            client.call(T.Pids, m.PidsRequest())
        assert (e.value.code, e.value.message) == (Code.UNIMPLEMENTED, "method Pids")
        with pytest.raises(RpcError) as e:
            client.call_raw("containerd.task.v3.Task", "State", b"")
        assert (e.value.code, e.value.message) == (Code.UNIMPLEMENTED,
                                                   "service containerd.task.v3.Task")


@pytest.mark.parametrize("code", [Code.NOT_FOUND, Code.ALREADY_EXISTS, Code.FAILED_PRECONDITION,
                                  Code.INVALID_ARGUMENT, Code.UNIMPLEMENTED, Code.UNAVAILABLE,
                                  Code.UNKNOWN, Code.INTERNAL, Code.DEADLINE_EXCEEDED])
def test_rpc_error_is_the_status(serve: Serve, code: int) -> None:
    def handler(req: m.KillRequest, ctx: Context) -> m.Empty:
        raise RpcError(code, f"process {req.id} already finished")

    _, addr = serve((T.Kill, handler))
    with RawPeer(addr) as peer:
        peer.request(1, T.Kill, m.KillRequest(id="p"))
        assert peer.response() == (1, m.Response(status=m.RpcStatus(
            code=code, message="process p already finished")))


def test_other_exceptions_are_unknown_and_logged(serve: Serve,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def handler(req: m.StateRequest, ctx: Context) -> m.StateResponse:
        if req.id == "boom":
            raise KeyError("no such thing")
        if req.id == "silent":
            raise RuntimeError()
        return m.StateResponse(id=req.id)

    _, addr = serve((T.State, handler))
    with Client(addr) as client, caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        with pytest.raises(RpcError) as e:
            client.call(T.State, m.StateRequest(id="boom"))
        assert (e.value.code, e.value.message) == (Code.UNKNOWN, "'no such thing'")
        with pytest.raises(RpcError, match="Unknown: RuntimeError"):
            client.call(T.State, m.StateRequest(id="silent"))
        assert client.call(T.State, m.StateRequest(id="ok")).id == "ok"   # still serving
    assert "containerd.task.v2.Task/State failed" in caplog.text
    assert caplog.records[0].exc_info is not None


@pytest.mark.parametrize("result, message", [
    (None, "unsupported response type: NoneType"),
    (m.Empty(), "unsupported response type: Empty"),
    (m.StateResponse(pid=-1), "error marshaling payload: StateResponse.pid: -1 out of range"),
])
def test_a_bad_result_is_internal(serve: Serve, caplog: pytest.LogCaptureFixture,
                                  result: Any, message: str) -> None:
    _, addr = serve((T.State, lambda req, ctx: result))
    with Client(addr) as client, caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        with pytest.raises(RpcError) as e:
            client.call(T.State, m.StateRequest())
    assert e.value.code == Code.INTERNAL and message in e.value.message


def test_a_payload_that_does_not_decode_is_internal(serve: Serve) -> None:
    _, addr = serve((T.State, state))
    with Client(addr) as client:
        with pytest.raises(RpcError) as e:
            client.call_raw(T.State.service, "State", b"\x0a\x05ab")
        assert e.value.code == Code.INTERNAL
        assert e.value.message.startswith("ttrpc: error unmarshalling payload: ")
        assert client.call(T.State, m.StateRequest(id="a")).id == "a"


def test_bad_frames_get_a_status_and_the_connection_goes_on(serve: Serve) -> None:
    _, addr = serve((T.State, state))
    with RawPeer(addr) as peer:
        peer.send(1, 1, b"\xff\xff")                          # not a Request
        sid, resp = peer.response()
        assert sid == 1 and resp.status is not None
        assert resp.status.code == Code.INVALID_ARGUMENT
        assert resp.status.message.startswith("unmarshal request error: ")
        peer.request(2, T.State, m.StateRequest())           # an even stream id
        assert peer.response() == (2, m.Response(status=m.RpcStatus(
            code=Code.INVALID_ARGUMENT,
            message="StreamID must be odd for client initiated streams")))
        peer.send(5, 3, b"data frame")                       # other types: ignored
        peer.send(7, 0x7F, b"", flags=0xFF)
        peer.request(9, T.State, m.StateRequest(id="after"))
        sid, resp = peer.response()
        assert sid == 9 and m.StateResponse.decode(resp.payload).id == "after"


def test_an_oversized_frame_is_discarded_and_answered(serve: Serve) -> None:
    _, addr = serve((T.State, lambda req, ctx: m.StateResponse(pid=len(req.id))))
    with RawPeer(addr) as peer:
        writer = threading.Thread(target=peer.send, args=(11, 1, bytes(MAX_DATA + 1)))
        writer.start()
        assert peer.response() == (11, m.Response(status=m.RpcStatus(
            code=Code.RESOURCE_EXHAUSTED,
            message=f"message length {MAX_DATA + 1} exceed maximum message size of {MAX_DATA}")))
        writer.join()
        # Exactly the limit is served, on the same connection.
        n = MAX_DATA
        while True:
            data = m.Request(service=T.State.service, method="State",
                             payload=m.StateRequest(id="x" * n).encode()).encode()
            if len(data) == MAX_DATA:
                break
            n -= len(data) - MAX_DATA
        peer.send(13, 1, data)
        sid, resp = peer.response()
        assert sid == 13 and m.StateResponse.decode(resp.payload).pid == n


def test_a_response_over_the_limit_becomes_an_error(serve: Serve,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    _, addr = serve((T.State, lambda req, ctx: m.StateResponse(id="x" * MAX_DATA)),
                    (T.Pause, lambda req, ctx: m.Empty()))
    with Client(addr) as client, caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        with pytest.raises(RpcError) as e:
            client.call(T.State, m.StateRequest())
        assert e.value.code == Code.RESOURCE_EXHAUSTED
        assert client.call(T.Pause, m.PauseRequest()) == m.Empty()


def test_a_broken_stream_closes_that_connection_only(serve: Serve) -> None:
    server, addr = serve((T.State, state))
    with Client(addr) as client:
        with RawPeer(addr) as peer:
            peer.send(1, 1, b"abc", length=100)               # then the end of the stream
            peer.sock.shutdown(socket.SHUT_WR)
            assert peer.at_eof()
        assert client.call(T.State, m.StateRequest(id="b")).id == "b"
        wait_until(lambda: server.connections == 1, "the broken connection to be forgotten")


def test_a_blocked_handler_does_not_delay_others(serve: Serve) -> None:
    release = threading.Event()
    entered = threading.Event()

    def wait(req: m.WaitRequest, ctx: Context) -> m.WaitResponse:
        entered.set()
        assert release.wait(TIMEOUT)
        return m.WaitResponse(exit_status=7)

    _, addr = serve((T.Wait, wait), (T.State, state))
    with RawPeer(addr) as peer:
        peer.request(1, T.Wait, m.WaitRequest(id="c"))
        assert entered.wait(TIMEOUT)
        for sid in (3, 5, 7):                              # answered while Wait blocks
            peer.request(sid, T.State, m.StateRequest(id=str(sid)))
        answered = {peer.response()[0] for _ in range(3)}
        assert answered == {3, 5, 7}
        release.set()
        sid, resp = peer.response()                        # the first request, answered last
        assert sid == 1 and m.WaitResponse.decode(resp.payload).exit_status == 7


def test_many_threads_many_connections(serve: Serve) -> None:
    _, addr = serve((T.State, lambda req, ctx: m.StateResponse(id=req.id)))
    clients = [Client(addr) for _ in range(3)]
    errors: List[BaseException] = []

    def worker(client: Client, n: int) -> None:
        try:
            for i in range(30):
                key = f"{n}-{i}"
                assert client.call(T.State, m.StateRequest(id=key), timeout=TIMEOUT).id == key
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(clients[n % 3], n)) for n in range(9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert errors == []


def test_closed_connection_sets_context_closed(serve: Serve) -> None:
    contexts: List[Context] = []
    entered = threading.Event()

    def wait(req: m.WaitRequest, ctx: Context) -> m.WaitResponse:
        contexts.append(ctx)
        entered.set()
        assert ctx.closed.wait(TIMEOUT)     # the client went away: give up
        return m.WaitResponse()

    server, addr = serve((T.Wait, wait))
    with RawPeer(addr) as peer:
        peer.request(1, T.Wait, m.WaitRequest())
        assert entered.wait(TIMEOUT)
    assert contexts[0].closed.wait(TIMEOUT)
    assert server.shutdown(TIMEOUT)           # the handler finished; its answer was dropped


def test_shutdown_lets_requests_finish_then_closes(serve: Serve) -> None:
    release, entered = threading.Event(), threading.Event()

    def wait(req: m.WaitRequest, ctx: Context) -> m.WaitResponse:
        entered.set()
        assert release.wait(TIMEOUT)
        return m.WaitResponse(exit_status=1)

    server, addr = serve((T.Wait, wait), (T.State, state))
    client = Client(addr)
    result: List[Any] = []
    stopped: List[bool] = []
    caller = threading.Thread(target=lambda: result.append(client.call(T.Wait, m.WaitRequest())))
    caller.start()
    assert entered.wait(TIMEOUT)
    stopper = threading.Thread(target=lambda: stopped.append(server.shutdown(TIMEOUT)))
    stopper.start()
    with pytest.raises(RpcError) as e:        # new requests meanwhile: unavailable
        while True:
            client.call(T.State, m.StateRequest(), timeout=TIMEOUT)
    assert e.value.code == Code.UNAVAILABLE
    while True:                               # and soon no new connection
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(addr)
            except ConnectionRefusedError:
                break
    release.set()
    caller.join()
    stopper.join()
    assert result == [m.WaitResponse(exit_status=1)] and stopped == [True]
    with pytest.raises(ConnectionClosedError):
        client.call(T.State, m.StateRequest())
    client.close()


def test_shutdown_gives_up_on_a_handler_that_never_returns(serve: Serve) -> None:
    release, entered = threading.Event(), threading.Event()
    server, addr = serve((T.Wait, lambda req, ctx: (entered.set(), release.wait(TIMEOUT),
                                                    m.WaitResponse())[2]))
    with Client(addr) as client:
        caller_error: List[BaseException] = []

        def call() -> None:
            try:
                client.call(T.Wait, m.WaitRequest())
            except BaseException as e:
                caller_error.append(e)

        caller = threading.Thread(target=call)
        caller.start()
        assert entered.wait(TIMEOUT)
        assert server.shutdown(timeout=0.05) is False
        caller.join()
        assert isinstance(caller_error[0], ConnectionClosedError)
    release.set()


def test_shutdown_from_a_handler_is_refused(serve: Serve) -> None:
    holder: List[Server] = []

    def shutdown(req: m.ShutdownRequest, ctx: Context) -> m.Empty:
        holder[0].shutdown()
        return m.Empty()

    server, addr = serve((T.Shutdown, shutdown))
    holder.append(server)
    with Client(addr) as client:
        with pytest.raises(RpcError, match="called from a request handler"):
            client.call(T.Shutdown, m.ShutdownRequest())


def test_a_peer_of_another_user_is_refused(serve: Serve, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_server, "peer_credentials", lambda sock: (1, 65534, 65534))
    server, addr = serve((T.State, state))
    with caplog.at_level(logging.ERROR, logger="pidsafe.shim"), RawPeer(addr) as peer:
        assert peer.at_eof()
    assert "refusing a connection from uid 65534 gid 65534" in caplog.text
    assert server.connections == 0


def test_too_many_requests_in_flight(serve: Serve) -> None:
    release, entered = threading.Event(), threading.Semaphore(0)

    def wait(req: m.WaitRequest, ctx: Context) -> m.WaitResponse:
        entered.release()
        assert release.wait(TIMEOUT)
        return m.WaitResponse()

    _, addr = serve((T.Wait, wait), max_inflight=2)
    with RawPeer(addr) as peer:
        for sid in (1, 3):
            peer.request(sid, T.Wait, m.WaitRequest())
            assert entered.acquire(timeout=TIMEOUT)
        peer.request(5, T.Wait, m.WaitRequest())
        sid, resp = peer.response()
        assert sid == 5 and resp.status is not None
        assert resp.status.code == Code.RESOURCE_EXHAUSTED
        release.set()
        assert {peer.response()[0] for _ in range(2)} == {1, 3}


def test_register_and_start_misuse() -> None:
    server = Server()
    server.register(T.State, state)
    with pytest.raises(ValueError, match="already has a handler"):
        server.register(T.State, state)
    server.start(listen(address()))
    with socket.socket(socket.AF_UNIX) as other, \
            pytest.raises(RuntimeError, match="already started"):
        server.start(other)
    assert server.shutdown() and server.shutdown()        # idempotent


class FlakyListener:
    """A listener whose accept() first fails with the given errnos."""

    def __init__(self, real: socket.socket, errnos: List[int]) -> None:
        self.real, self.errnos = real, errnos
        self.failed = 0

    def accept(self) -> Any:
        if self.errnos:
            self.failed += 1
            err = self.errnos.pop(0)
            raise OSError(err, os.strerror(err))
        return self.real.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_accept_retries_temporary_errors(caplog: pytest.LogCaptureFixture) -> None:
    addr = address()
    listener = FlakyListener(listen(addr), [errno.EMFILE, errno.ECONNABORTED])
    server = Server()
    server.register(T.State, state)
    with caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        server.start(listener)  # type: ignore[arg-type]
        with Client(addr) as client:
            assert client.call(T.State, m.StateRequest(id="x")).id == "x"
        assert server.shutdown(TIMEOUT)
    assert listener.failed == 2 and listener.real.fileno() == -1
    assert "accept failed ([Errno 24] Too many open files); retrying" in caplog.text


def test_accept_stops_on_other_errors_and_shutdown_still_works(
        caplog: pytest.LogCaptureFixture) -> None:
    listener = FlakyListener(listen(address()), [errno.EINVAL])
    server = Server()
    with caplog.at_level(logging.ERROR, logger="pidsafe.shim"):
        server.start(listener)  # type: ignore[arg-type]
        wait_until(lambda: "not serving any more" in caplog.text, "the accept loop to give up")
        assert server.shutdown(TIMEOUT)
    assert listener.real.fileno() == -1
