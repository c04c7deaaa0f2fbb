"""A ttrpc server: unary requests, each in its own thread, on many connections.

containerd keeps a ``Wait`` open for a container's whole life while it
sends ``Start``, ``State``, ``Kill``... on the same connection (seen on
the wire with containerd 1.6.20), so one reader thread per connection hands every request to a thread
of its own, and each response goes back whole, under the connection's write
lock, whenever its handler returns (ttrpc server.go does the same with
goroutines).  A thread per request, not a bounded pool: a pool whose
threads all sit in ``Wait`` would starve every later request.

Errors: a handler raises :class:`pidsafe.errors.RpcError` to answer a gRPC
status; any other exception answers Unknown with its text and is logged.
A malformed request gets an error status; a broken stream closes only its
connection.  Nothing a client sends stops the server.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
import time

from ..errors import ConnectionClosedError, DecodeError, RpcError
from ._messages import Request, Response
from ._ttrpc import (MAX_DATA, REQUEST, RESPONSE, Code, error_response, frame_bytes, log_error,
                     oversized_message, peer_credentials, read_frame, send_all)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, List, Optional, Set, Tuple, TypeVar

    from ._codec import Message
    from ._method import Method

    Req = TypeVar("Req", bound=Message)
    Resp = TypeVar("Resp", bound=Message)
    Handler = Callable[[Message, "Context"], Message]

_in_handler = threading.local()


class Context:
    """What a handler knows of its request besides the message.

    Attributes:
        service: the service's full name (``containerd.task.v2.Task``).
        method: the rpc's name (``Wait``).
        stream_id: the request's stream id on its connection.
        metadata: the request's metadata, keys lower-cased, each a list of
            values in the order sent (containerd 1.6 sends none to shims).
        deadline: a ``time.monotonic()`` time by which the client stops
            waiting (its ``timeout_nano``), or None.
        closed: set once the connection is gone, or the server shuts down:
            the answer can no longer be delivered (a long handler such as
            Wait may give up then).
    """

    __slots__ = ("service", "method", "stream_id", "metadata", "deadline", "closed")

    def __init__(self, service: str, method: str, stream_id: int,
                 metadata: Dict[str, List[str]], deadline: Optional[float],
                 closed: threading.Event) -> None:
        self.service, self.method, self.stream_id = service, method, stream_id
        self.metadata, self.deadline, self.closed = metadata, deadline, closed

    def get(self, key: str) -> Optional[str]:
        """The first value of metadata ``key`` (any case), or None."""
        values = self.metadata.get(key.lower())
        return values[0] if values else None

    def remaining(self) -> Optional[float]:
        """Seconds left before the deadline (negative once past), or None."""
        return None if self.deadline is None else self.deadline - time.monotonic()


class _Connection:
    """One accepted connection: its socket, write lock and requests in flight.

    Only its reader thread closes the socket, once it stops reading, under
    the write lock (so no write is under way) and the guard (so no
    ``shutdown(2)`` is); anyone may shut it down, which wakes the reader.
    """

    def __init__(self, server: Server, sock: socket.socket, number: int) -> None:
        self.server, self.sock = server, sock
        self.wlock = threading.Lock()      # one frame at a time; then the close
        self.guard = threading.Lock()      # shutdown(2) vs close(2)
        self.open = True                   # answers are still written
        self.inflight = 0                  # guarded by the server's condition
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self.run, name=f"ttrpc-conn-{number}",
                                       daemon=True)

    def send(self, stream_id: int, response: bytes) -> None:
        if len(response) > MAX_DATA:     # the client would discard it: say so instead
            log_error("ttrpc: a response of %d bytes exceeds the limit", len(response))
            response = error_response(Code.RESOURCE_EXHAUSTED, (
                f"ttrpc: response of {len(response)} bytes exceeds the maximum message "
                f"size of {MAX_DATA}"))
        with self.wlock:
            if not self.open:
                return        # the client is gone, or we stopped: nobody to answer
            try:
                send_all(self.sock, frame_bytes(stream_id, RESPONSE, response))
                return
            except ConnectionClosedError:
                pass
            except OSError as e:
                log_error("ttrpc: cannot send the response on stream %d: %s", stream_id, e)
        self.stop()

    def stop(self) -> None:
        """Write no more answers, and wake the reader (which then closes)."""
        with self.guard:
            if not self.open:
                return
            self.open = False
            self.closed.set()
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError as e:
                if e.errno != errno.ENOTCONN:     # ENOTCONN: the peer went first
                    log_error("ttrpc: shutdown of a connection failed: %s", e)

    def run(self) -> None:
        try:
            while self.open:
                frame = read_frame(self.sock)
                if frame is None:
                    break
                if frame.data is None:
                    self.send(frame.stream_id, error_response(
                        Code.RESOURCE_EXHAUSTED, oversized_message(frame.length)))
                elif frame.type == REQUEST:
                    self.request(frame.stream_id, frame.data)
                # Other types are ignored "for future compat", as ttrpc does.
        except ConnectionClosedError:
            pass
        except Exception as e:   # a bug of ours, or an unexpected OSError: this connection only
            log_error("ttrpc: connection reader failed: %s", e, exc=e)
        finally:
            self.stop()
            with self.wlock, self.guard:
                self.sock.close()
            self.server._forget(self)

    def request(self, stream_id: int, data: bytes) -> None:
        try:
            req = Request.decode(data)
        except DecodeError as e:
            self.send(stream_id, error_response(Code.INVALID_ARGUMENT,
                                                f"unmarshal request error: {e}"))
            return
        if stream_id % 2 != 1:
            self.send(stream_id, error_response(
                Code.INVALID_ARGUMENT, "StreamID must be odd for client initiated streams"))
            return
        refusal = self.server._admit(self)
        if refusal:
            self.send(stream_id, error_response(*refusal))
            return
        try:
            threading.Thread(target=self.handle, args=(stream_id, req),
                             name=f"ttrpc-{req.method}", daemon=True).start()
        except RuntimeError as e:     # "can't start new thread"
            self.server._done(self)
            self.send(stream_id, error_response(Code.RESOURCE_EXHAUSTED, f"ttrpc: {e}"))
        except BaseException:
            self.server._done(self)
            raise

    def handle(self, stream_id: int, req: Request) -> None:
        _in_handler.active = True
        try:
            metadata: Dict[str, List[str]] = {}
            for kv in req.metadata:
                metadata.setdefault(kv.key.lower(), []).append(kv.value)
            deadline = (time.monotonic() + req.timeout_nano / 1e9) if req.timeout_nano else None
            ctx = Context(req.service, req.method, stream_id, metadata, deadline, self.closed)
            self.send(stream_id, self.server._dispatch(req, ctx))
        finally:
            self.server._done(self)


class Server:
    """A ttrpc server.

    Register a handler per method, then :meth:`start` on a listening Unix
    socket, and :meth:`shutdown` at the end::

        server = Server()
        server.register(TaskService.State, lambda req, ctx: StateResponse(id=req.id))
        server.start(listener)

    Args:
        require_same_user: refuse (close) a connection whose peer does not
            run with our effective uid and gid (SO_PEERCRED), as the Go shim
            does.
        max_inflight: requests one connection may have in flight; more
            answer RESOURCE_EXHAUSTED (a bound on threads, far above what
            containerd needs).
    """

    def __init__(self, *, require_same_user: bool = True, max_inflight: int = 1024) -> None:
        self._handlers: Dict[str, Dict[str, Tuple[Method[Message, Message], Handler]]] = {}
        self._require_same_user = require_same_user
        self._max_inflight = max_inflight
        self._cond = threading.Condition()
        self._conns: Set[_Connection] = set()
        self._accepted = 0
        self._listener: Optional[socket.socket] = None
        self._acceptor: Optional[threading.Thread] = None
        self._stopping = False
        self._wakeup = threading.Event()

    def register(self, method: Method[Req, Resp], handler: Callable[[Req, Context], Resp]
                 ) -> None:
        """Answer ``method`` with ``handler(request, context)``.

        The handler gets the decoded request and returns the response
        message; it runs in a thread of its own and may block.  A method
        nobody registered answers UNIMPLEMENTED (``service X`` or ``method X``).

        Raises:
            ValueError: ``method`` already has a handler.
        """
        methods = self._handlers.setdefault(method.service, {})
        if method.name in methods:
            raise ValueError(f"{method.full_name} already has a handler")
        methods[method.name] = (method, handler)  # type: ignore[assignment]

    # -- serving -------------------------------------------------------------

    def start(self, listener: socket.socket) -> None:
        """Serve connections of ``listener`` (a listening Unix stream socket,
        e.g. ``socket.socket(fileno=3)`` inherited from ``start``) from a
        thread.  The server owns the socket from now on and closes it at
        :meth:`shutdown`.

        Raises:
            RuntimeError: already started.
        """
        with self._cond:
            if self._listener is not None or self._stopping:
                raise RuntimeError("ttrpc server already started")
            listener.setblocking(True)
            self._listener = listener
            self._acceptor = threading.Thread(target=self._accept_loop, args=(listener,),
                                              name="ttrpc-accept", daemon=True)
        self._acceptor.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        backoff = 0.0
        while not self._stopping:
            try:
                sock, _ = listener.accept()
            except OSError as e:
                if self._stopping:
                    break
                if e.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM,
                                   errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    log_error("ttrpc: accept failed, not serving any more: %s", e, exc=e)
                    break
                backoff = min(max(backoff * 2, 0.001), 1.0)   # as ttrpc: temporary errors
                log_error("ttrpc: accept failed (%s); retrying in %.3fs", e, backoff)
                self._wakeup.wait(backoff)
                continue
            backoff = 0.0
            self._serve_connection(sock)

    def _serve_connection(self, sock: socket.socket) -> None:
        if self._require_same_user:
            try:
                _, uid, gid = peer_credentials(sock)
            except OSError as e:
                log_error("ttrpc: cannot check the peer of a connection: %s", e)
                uid = gid = -1
            if (uid, gid) != (os.geteuid(), os.getegid()):
                log_error("ttrpc: refusing a connection from uid %d gid %d", uid, gid)
                sock.close()
                return
        with self._cond:
            if self._stopping:
                sock.close()
                return
            self._accepted += 1
            conn = _Connection(self, sock, self._accepted)
            self._conns.add(conn)
        try:
            conn.reader.start()
        except BaseException:
            with self._cond:
                self._conns.discard(conn)
            sock.close()
            raise

    # -- bookkeeping (called by connections) --------------------------------

    def _admit(self, conn: _Connection) -> Optional[Tuple[int, str]]:
        with self._cond:
            if self._stopping:
                return Code.UNAVAILABLE, "ttrpc: server shutting down"
            if conn.inflight >= self._max_inflight:
                return Code.RESOURCE_EXHAUSTED, f"ttrpc: over {self._max_inflight} requests in flight"
            conn.inflight += 1
            return None

    def _done(self, conn: _Connection) -> None:
        with self._cond:
            conn.inflight -= 1
            self._cond.notify_all()

    def _forget(self, conn: _Connection) -> None:
        with self._cond:
            self._conns.discard(conn)
            self._cond.notify_all()

    def _dispatch(self, req: Request, ctx: Context) -> bytes:
        """The encoded Response to ``req``: the handler's result, or an error status."""
        methods = self._handlers.get(req.service)
        if methods is None:
            return error_response(Code.UNIMPLEMENTED, f"service {req.service}")
        entry = methods.get(req.method)
        if entry is None:
            return error_response(Code.UNIMPLEMENTED, f"method {req.method}")
        method, handler = entry
        try:
            request = method.request.decode(req.payload)
        except DecodeError as e:
            return error_response(Code.INTERNAL, f"ttrpc: error unmarshalling payload: {e}")
        try:
            result = handler(request, ctx)
        except RpcError as e:
            return error_response(e.code, e.message)
        except Exception as e:
            log_error("ttrpc: %s failed: %s", method.full_name, e, exc=e)
            return error_response(Code.UNKNOWN, str(e) or type(e).__name__)
        if not isinstance(result, method.response):
            log_error("ttrpc: %s returned %r, not a %s", method.full_name, result,
                      method.response.__name__)
            return error_response(Code.INTERNAL, f"ttrpc: error unsupported response type: "
                                                 f"{type(result).__name__}")
        try:
            return Response(payload=result.encode()).encode()
        except (TypeError, ValueError) as e:
            log_error("ttrpc: %s: cannot encode the response: %s", method.full_name, e)
            return error_response(Code.INTERNAL, f"ttrpc: error marshaling payload: {e}")

    # -- stopping ------------------------------------------------------------

    @property
    def connections(self) -> int:
        """How many connections are open."""
        with self._cond:
            return len(self._conns)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop: accept no more connections, answer new requests UNAVAILABLE,
        let the requests in flight finish for up to ``timeout`` seconds, then
        close every connection (a handler still running may finish later; its
        answer is dropped).  Idempotent.

        Returns:
            True if no request was still in flight when the connections closed.

        Raises:
            RuntimeError: called from a handler (it would wait for itself).
        """
        if getattr(_in_handler, "active", False):
            raise RuntimeError("ttrpc: shutdown() called from a request handler; call it "
                               "from another thread (e.g. the one that started the server)")
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._wakeup.set()
            listener, acceptor = self._listener, self._acceptor
        if listener is not None and acceptor is not None:
            if listener.fileno() >= 0:
                try:     # wakes accept() with EINVAL (Linux); the acceptor never closes it
                    listener.shutdown(socket.SHUT_RDWR)
                except OSError as e:
                    if e.errno != errno.ENOTCONN:
                        log_error("ttrpc: shutdown of the listener failed: %s", e)
            acceptor.join()
            listener.close()
        with self._cond:
            idle = self._cond.wait_for(
                lambda: all(c.inflight == 0 for c in self._conns),
                max(0.0, deadline - time.monotonic()))
            conns = list(self._conns)
        for conn in conns:
            conn.stop()
        for conn in conns:
            conn.reader.join()
        return idle

    def close(self) -> None:
        """Stop at once: :meth:`shutdown` without waiting for requests."""
        self.shutdown(0)
