"""One connection of the ttrpc server: its reader, its writes, a request's Context.

Each accepted connection has a reader thread that hands every request to a
thread of its own (see :mod:`._server` for why), and a write lock under
which each response goes back whole.  :class:`Context` is what a handler
knows of its request besides the message.
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from ..errors import ConnectionClosedError, DecodeError
from ._messages import Request
from ._ttrpc import (MAX_DATA, REQUEST, RESPONSE, Code, error_response, frame_bytes, log_error,
                     oversized_message, read_frame, send_all)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

    from ._server import Server

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
