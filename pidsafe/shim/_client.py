"""A ttrpc client: unary calls from many threads over one connection.

Each call takes the next odd stream id (1, 3, 5 ... on every new
connection), writes its Request frame whole under the write lock and waits
for the Response with that id, which a reader thread hands over.  When the
connection ends every waiting call fails with
:class:`~pidsafe.errors.ConnectionClosedError`, and so do later ones until
:meth:`Client.reconnect` dials again (ttrpc client.go, ``ErrClosed``).
"""

from __future__ import annotations

import errno
import socket
import threading

from ..errors import ConnectionClosedError, DecodeError, RpcError
from ._messages import KeyValue, Request, Response
from ._ttrpc import (REQUEST, RESPONSE, Code, frame_bytes, log_error, oversized_message,
                     read_frame, send_all, unix_path)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, Iterable, Mapping, Optional, TypeVar, Union

    from ._codec import Message
    from ._method import Method

    Resp = TypeVar("Resp", bound=Message)
    Metadata = Mapping[str, Union[str, Iterable[str]]]

_MAX_STREAM_ID = (1 << 32) - 1


class _Call:
    __slots__ = ("done", "response", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: Optional[Response] = None
        self.error: Optional[BaseException] = None


class _Connection:
    """One dialled socket, its reader thread and the calls waiting on it."""

    def __init__(self, path: str, connect_timeout: Optional[float]) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
            sock.settimeout(None)
        except OSError as e:
            sock.close()
            raise ConnectionClosedError(f"ttrpc: cannot connect to {path}: {e.strerror or e}"
                                        ) from e
        self.sock = sock
        self.lock = threading.Lock()          # stream ids, waiters, writes; then the close
        self.guard = threading.Lock()         # shutdown(2) vs close(2)
        self.next_id = 1
        self.calls: Dict[int, _Call] = {}
        self.error: Optional[ConnectionClosedError] = None    # set once it is closed
        self.reader = threading.Thread(target=self._read, name="ttrpc-client", daemon=True)
        try:
            self.reader.start()
        except BaseException:
            sock.close()
            raise

    def call(self, request: bytes, timeout: Optional[float]) -> Response:
        call = _Call()
        with self.lock:
            if self.error is not None:
                raise ConnectionClosedError(str(self.error))
            stream_id = self.next_id
            if stream_id > _MAX_STREAM_ID:
                raise ConnectionClosedError("ttrpc: stream ids exhausted on this connection")
            self.next_id += 2
            data = frame_bytes(stream_id, REQUEST, request)    # ValueError if over 4 MiB
            self.calls[stream_id] = call
            try:
                send_all(self.sock, data)
            except (ConnectionClosedError, OSError) as e:
                del self.calls[stream_id]
                err = e if isinstance(e, ConnectionClosedError) else \
                    ConnectionClosedError(f"ttrpc: closed ({e})")
                self._fail_locked(err)
                raise err from None
        if not call.done.wait(timeout):
            with self.lock:
                if self.calls.pop(stream_id, None) is call:
                    raise RpcError(Code.DEADLINE_EXCEEDED,
                                   f"ttrpc: no response within {timeout} s")
            call.done.wait()     # the reader took it meanwhile: its result is a moment away
        if call.error is not None:
            raise call.error
        assert call.response is not None
        return call.response

    def _fail_locked(self, error: ConnectionClosedError) -> None:
        """Fail every waiting call; shut the socket down (the reader closes it)."""
        if self.error is None:
            self.error = error
        for call in self.calls.values():
            call.error = ConnectionClosedError(str(self.error))   # one per raising thread
            call.done.set()
        self.calls.clear()
        self.shutdown()

    def shutdown(self) -> None:
        with self.guard:
            if self.sock.fileno() < 0:
                return
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    log_error("ttrpc: shutdown of a client connection failed: %s", e)

    def _read(self) -> None:
        error = ConnectionClosedError()
        try:
            while True:
                frame = read_frame(self.sock)
                if frame is None:
                    break
                if frame.type != RESPONSE and frame.data is not None:
                    continue       # not for unary calls: ignored
                with self.lock:
                    call = self.calls.pop(frame.stream_id, None)
                if call is None:
                    continue       # a call that timed out, or a stray id
                if frame.data is None:
                    call.error = RpcError(Code.RESOURCE_EXHAUSTED, oversized_message(frame.length))
                else:
                    try:
                        call.response = Response.decode(frame.data)
                    except DecodeError as e:
                        call.error = e
                call.done.set()
        except ConnectionClosedError as e:
            error = e
        except Exception as e:
            log_error("ttrpc: client reader failed: %s", e, exc=e)
            error = ConnectionClosedError(f"ttrpc: closed ({e})")
        finally:
            with self.lock:
                self._fail_locked(error)
                with self.guard:
                    self.sock.close()


class Client:
    """A ttrpc client of one server.

    Args:
        address: the server's Unix socket path; a ``unix://`` prefix is
            accepted (containerd's ``TTRPC_ADDRESS`` may carry one).
        connect_timeout: seconds a connect may take, or None.

    Raises:
        ConnectionClosedError: nothing accepts connections at ``address``.
    """

    def __init__(self, address: str, *, connect_timeout: Optional[float] = 5.0) -> None:
        self.path = unix_path(address)
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: Optional[_Connection] = _Connection(self.path, connect_timeout)

    def call(self, method: Method[Message, Resp], request: Message, *,
             timeout: Optional[float] = None, metadata: Optional[Metadata] = None) -> Resp:
        """Call ``method`` with ``request``; its response message.

        Args:
            timeout: seconds to wait for the answer (also sent to the server
                as the request's ``timeout_nano``), or None for no limit.
            metadata: key -> value or values; keys are lower-cased.

        Raises:
            RpcError: the server answered an error status, or ``timeout``
                passed (DEADLINE_EXCEEDED).
            ConnectionClosedError: the connection is closed, or closed
                during the call.
            DecodeError: the answer is not a valid response.
        """
        if not isinstance(request, method.request):
            raise TypeError(f"{method.full_name} takes a {method.request.__name__}, "
                            f"not a {type(request).__name__}")
        payload = self.call_raw(method.service, method.name, request.encode(),
                                timeout=timeout, metadata=metadata)
        return method.response.decode(payload)

    def call_raw(self, service: str, method: str, payload: bytes, *,
                 timeout: Optional[float] = None, metadata: Optional[Metadata] = None) -> bytes:
        """:meth:`call` with an encoded request; the encoded response."""
        kvs = []
        for key, values in (metadata or {}).items():
            for value in ([values] if isinstance(values, str) else values):
                kvs.append(KeyValue(key=key.lower(), value=value))
        request = Request(service=service, method=method, payload=payload, metadata=kvs,
                          timeout_nano=int(timeout * 1e9) if timeout else 0)
        with self._lock:
            conn = self._conn
        if conn is None:
            raise ConnectionClosedError("ttrpc: client closed")
        response = conn.call(request.encode(), timeout)
        if response.status is not None and response.status.code != Code.OK:
            raise RpcError(response.status.code, response.status.message)
        return response.payload

    @property
    def closed(self) -> bool:
        """Whether calls fail at once (the connection ended, or :meth:`close`)."""
        with self._lock:
            conn = self._conn
        return conn is None or conn.error is not None

    def reconnect(self) -> None:
        """Dial the server again (stream ids restart at 1); the old
        connection's calls in flight fail with ConnectionClosedError.

        Raises:
            ConnectionClosedError: the server does not accept the connection
                (the client stays closed).
        """
        with self._lock:
            old, self._conn = self._conn, None
        if old is not None:
            old.shutdown()
            old.reader.join()
        conn = _Connection(self.path, self._connect_timeout)
        with self._lock:
            self._conn = conn

    def close(self) -> None:
        """Close the connection; calls in flight fail.  Idempotent."""
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.shutdown()
            conn.reader.join()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
