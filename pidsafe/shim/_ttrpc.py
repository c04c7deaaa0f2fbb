"""ttrpc framing: the 10-byte header, frame reads and writes, status codes.

containerd talks to a shim, and a shim to containerd's event service, in
ttrpc (github.com/containerd/ttrpc v1.1.1: channel.go, server.go; PROTOCOL.md): on a
Unix stream socket, each message is a header

    uint32 length | uint32 stream id | uint8 type | uint8 flags   (big-endian)

and ``length`` bytes of data, at most 4 MiB.  A client sends a Request
frame (a ``ttrpc.Request``) on a new odd stream id and gets exactly one
Response frame (a ``ttrpc.Response``: a payload, or a ``google.rpc.Status``
error) on the same id.  There is no handshake.
"""

from __future__ import annotations

import errno
import socket
import struct

from .. import _log
from ..errors import ConnectionClosedError
from ._messages import Response, RpcStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Tuple

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size          # 10
MAX_DATA = 4 << 20                 # messageLengthMax: longer data is discarded
REQUEST, RESPONSE, DATA = 1, 2, 3  # frame types (DATA: ttrpc >= 1.2 streams, unused)
_CHUNK = 1 << 16


class Code:
    """gRPC status codes (google.golang.org/grpc/codes), as ttrpc sends them."""

    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class Frame:
    """One frame as read: ``data`` is None when it was too long and discarded."""

    __slots__ = ("stream_id", "type", "flags", "length", "data")

    def __init__(self, stream_id: int, type_: int, flags: int, length: int,
                 data: Optional[bytes]) -> None:
        self.stream_id, self.type, self.flags, self.length, self.data = \
            stream_id, type_, flags, length, data


def frame_bytes(stream_id: int, type_: int, data: bytes) -> bytes:
    """A whole frame: header and data (``data`` at most :data:`MAX_DATA`)."""
    if len(data) > MAX_DATA:
        raise ValueError(f"ttrpc message of {len(data)} bytes exceeds the maximum "
                         f"message size of {MAX_DATA}")
    return HEADER.pack(len(data), stream_id, type_, 0) + data


def error_response(code: int, message: str) -> bytes:
    """An encoded Response holding only an error status."""
    return Response(status=RpcStatus(code=code, message=message)).encode()


def send_all(sock: socket.socket, data: bytes) -> None:
    """Write ``data`` whole (the caller holds the connection's write lock).

    Raises:
        ConnectionClosedError: the peer is gone (EPIPE, ECONNRESET) or the
            socket was shut down.
    """
    try:
        sock.sendall(data, socket.MSG_NOSIGNAL)
    except (BrokenPipeError, ConnectionResetError) as e:
        raise ConnectionClosedError(f"ttrpc: closed ({e.strerror})") from None


def _recv_exact(sock: socket.socket, n: int, into: Optional[bytearray] = None) -> int:
    """Read exactly ``n`` bytes into ``into`` (or discard them if None).

    Returns the count read, less than ``n`` only at end of stream.
    """
    buf = memoryview(into) if into is not None else memoryview(bytearray(min(n, _CHUNK)))
    got = 0
    while got < n:
        if into is not None:
            k = sock.recv_into(buf[got:], n - got)
        else:
            k = sock.recv_into(buf, min(n - got, len(buf)))
        if k == 0:
            break
        got += k
    return got


def read_frame(sock: socket.socket) -> Optional[Frame]:
    """The next frame of ``sock``, or None at end of stream between frames.

    A frame longer than :data:`MAX_DATA` is read and thrown away, as ttrpc
    does, and returned with ``data`` None: the reader answers it with
    RESOURCE_EXHAUSTED on its stream and goes on.

    Raises:
        ConnectionClosedError: the stream ended inside a frame, or was reset.
    """
    header = bytearray(HEADER_SIZE)
    try:
        got = _recv_exact(sock, HEADER_SIZE, header)
        if got == 0:
            return None
        if got < HEADER_SIZE:
            raise ConnectionClosedError("ttrpc: closed inside a frame header")
        length, stream_id, type_, flags = HEADER.unpack(header)
        if length > MAX_DATA:
            if _recv_exact(sock, length) < length:
                raise ConnectionClosedError("ttrpc: closed inside an oversized frame")
            return Frame(stream_id, type_, flags, length, None)
        data = bytearray(length)
        if _recv_exact(sock, length, data) < length:
            raise ConnectionClosedError("ttrpc: closed inside a frame")
    except ConnectionResetError:
        raise ConnectionClosedError("ttrpc: closed (connection reset by peer)") from None
    except OSError as e:
        if e.errno in (errno.EBADF, errno.ENOTCONN):    # shut down and closed under us
            raise ConnectionClosedError(f"ttrpc: closed ({e.strerror})") from None
        raise
    return Frame(stream_id, type_, flags, length, bytes(data))


def oversized_message(length: int) -> str:
    """ttrpc's text for a discarded frame (channel.go)."""
    return f"message length {length} exceed maximum message size of {MAX_DATA}"


def log_error(message: str, *args: object, exc: Optional[BaseException] = None) -> None:
    """Log on the ``pidsafe.shim`` logger; ``logging`` is imported only now
    (it costs milliseconds at every shim start, and most runs log nothing)."""
    _log.error("shim", message, *args, exc=exc)


def peer_credentials(sock: socket.socket) -> Tuple[int, int, int]:
    """``(pid, uid, gid)`` of the process at the other end (SO_PEERCRED)."""
    size = struct.calcsize("3i")
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET,
                                                        socket.SO_PEERCRED, size))
    return pid, uid, gid


def unix_path(address: str) -> str:
    """A socket path from an address: a ``unix://`` prefix is dropped."""
    return address[len("unix://"):] if address.startswith("unix://") else address
