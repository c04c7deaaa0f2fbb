"""Sockets and servers for the ttrpc tests (tests/shim/test_*.py).

Servers listen on abstract Unix sockets (no path to clean up, no length
limit from pytest's long temp paths).  ``serve`` is a fixture: import it
into a test module to use it.
"""

from __future__ import annotations

import socket
import struct
import uuid
from typing import Any, Callable, Iterator, List, Optional, Tuple

import pytest

from pidsafe.shim import Server
from pidsafe.shim import messages as m

TIMEOUT = 30.0   # a bound for blocking reads in tests: a hang fails, never stalls CI


def address() -> str:
    return "\0pidsafe-test-" + uuid.uuid4().hex


def listen(addr: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.bind(addr)
    sock.listen()
    return sock


@pytest.fixture
def serve() -> Iterator[Callable[..., Tuple[Server, str]]]:
    """``serve(handlers..., **server_options) -> (server, address)``: a
    started Server with ``(method, handler)`` pairs, shut down after the test."""
    servers: List[Server] = []

    def start(*handlers: Tuple[Any, Any], **options: Any) -> Tuple[Server, str]:
        server = Server(**options)
        for method, handler in handlers:
            server.register(method, handler)
        addr = address()
        server.start(listen(addr))
        servers.append(server)
        return server, addr

    yield start
    for server in servers:
        server.shutdown(timeout=TIMEOUT)


class RawPeer:
    """A bare connection, to send and read frames exactly as given."""

    def __init__(self, addr: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(addr)

    def send(self, stream_id: int, type_: int, data: bytes, *, length: Optional[int] = None,
             flags: int = 0) -> None:
        n = len(data) if length is None else length
        self.sock.sendall(struct.pack(">IIBB", n, stream_id, type_, flags) + data)

    def request(self, stream_id: int, method: Any, msg: Any, **fields: Any) -> None:
        req = m.Request(service=method.service, method=method.name, payload=msg.encode(),
                        **fields)
        self.send(stream_id, 1, req.encode())

    def read(self) -> Tuple[int, int, bytes]:
        """(stream id, type, data) of the next frame."""
        header = self._exact(10)
        length, stream_id, type_, _ = struct.unpack(">IIBB", header)
        return stream_id, type_, self._exact(length)

    def response(self) -> Tuple[int, m.Response]:
        stream_id, type_, data = self.read()
        assert type_ == 2
        return stream_id, m.Response.decode(data)

    def at_eof(self) -> bool:
        return self.sock.recv(1) == b""

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "connection closed"
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
