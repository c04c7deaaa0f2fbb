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

from ..errors import DecodeError, RpcError
from ._connection import Context, _Connection, _in_handler
from ._messages import Request, Response
from ._ttrpc import Code, error_response, log_error, peer_credentials

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional, Set, Tuple, TypeVar

    from ._codec import Message
    from ._method import Method

    Req = TypeVar("Req", bound=Message)
    Resp = TypeVar("Resp", bound=Message)
    Handler = Callable[[Message, "Context"], Message]

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
