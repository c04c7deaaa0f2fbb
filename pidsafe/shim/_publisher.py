"""The events publisher: a shim's events to containerd, in order, never blocking.

A containerd 1.6 shim publishes by calling ``Forward`` on
``containerd.services.events.ttrpc.v1.Events`` at the ttrpc socket named by
``TTRPC_ADDRESS`` (containerd v1.6.20 runtime/v2/shim/publisher.go; the
runc shim does, and containerd's log shows it): an Envelope with the time, the namespace, the topic and the
event packed in an Any under its bare type name, and the namespace again in
the ``containerd-namespace-ttrpc`` metadata.

:meth:`Publisher.publish` encodes the event and queues it; one thread
forwards the queue in order, 5 s per call.  A connection found closed is
dialled again and the event sent again at once; other failures are retried
after 1 s, 2 s ... (``retries`` times), then the event is logged and
dropped.  Unlike Go's publisher, a retried event keeps its place: events
are never reordered.
"""

from __future__ import annotations

import collections
import os
import threading

from ..errors import ConnectionClosedError, DecodeError, RpcError
from ._client import Client
from ._messages import Any, Envelope, EventsService, ForwardRequest, Timestamp
from ._ttrpc import log_error

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Deque, Mapping, Optional, Tuple

    from ._codec import Message

#: The metadata key containerd reads a ttrpc request's namespace from.
NAMESPACE_HEADER = "containerd-namespace-ttrpc"
_IDENTIFIER_MAX = 76
_SEPARATORS = "._-"


def validate_identifier(s: str) -> None:
    """Refuse what containerd's ``identifiers.Validate`` refuses: ``s`` must be
    1-76 ASCII letters and digits, single ``.``, ``_`` or ``-`` between them.

    Raises:
        ValueError: naming the identifier and the rule.
    """
    if not s:
        raise ValueError("identifier must not be empty")
    if len(s) > _IDENTIFIER_MAX:
        raise ValueError(f"identifier {s!r} greater than maximum length "
                         f"({_IDENTIFIER_MAX} characters)")
    after_separator = True
    for ch in s:
        if ch.isascii() and ch.isalnum():
            after_separator = False
        elif ch in _SEPARATORS and not after_separator:
            after_separator = True
        else:
            break
    else:
        if not after_separator:
            return
    raise ValueError(f"identifier {s!r} must be letters and digits joined by single "
                     f"'.', '_' or '-'")


def validate_topic(topic: str) -> None:
    """Refuse a topic containerd's event exchange refuses (``/tasks/exit``:
    a ``/`` then identifiers joined by ``/``).

    Raises:
        ValueError: saying what is wrong.
    """
    if not topic.startswith("/") or len(topic) == 1:
        raise ValueError(f"event topic {topic!r} must start with '/' and have a component")
    for component in topic[1:].split("/"):
        try:
            validate_identifier(component)
        except ValueError as e:
            raise ValueError(f"event topic {topic!r}: {e}") from None


class Publisher:
    """Forwards events to containerd, in order, from a thread of its own.

    Args:
        address: containerd's ttrpc socket (``TTRPC_ADDRESS``; a
            ``unix://`` prefix is dropped).  Dialled on the first event.
        namespace: the containerd namespace of every event.
        queue_size: events that may wait; when full, new ones are dropped
            (logged, counted in :attr:`dropped`) rather than block.
        timeout: seconds per Forward call.
        retries: failed attempts after the first before an event is dropped.
        retry_delay: the n-th retry waits n times this many seconds.

    Raises:
        ValueError: ``namespace`` is not a valid containerd identifier.
    """

    def __init__(self, address: str, namespace: str, *, queue_size: int = 2048,
                 timeout: float = 5.0, retries: int = 5, retry_delay: float = 1.0) -> None:
        validate_identifier(namespace)
        self.address, self.namespace = address, namespace
        self._queue_size, self._timeout = queue_size, timeout
        self._retries, self._retry_delay = retries, retry_delay
        self._metadata: Mapping[str, str] = {NAMESPACE_HEADER: namespace}
        self._cond = threading.Condition()
        self._queue: Deque[Tuple[str, bytes]] = collections.deque()
        self._thread: Optional[threading.Thread] = None
        self._client: Optional[Client] = None
        self._closing = False
        self._abort = threading.Event()
        self.dropped = 0

    @classmethod
    def from_env(cls, namespace: str, environ: Optional[Mapping[str, str]] = None
                 ) -> Publisher:
        """A publisher to ``$TTRPC_ADDRESS``, which containerd sets for its shims.

        Raises:
            ValueError: the variable is unset or empty, or ``namespace`` is invalid.
        """
        address = (os.environ if environ is None else environ).get("TTRPC_ADDRESS", "")
        if not address:
            raise ValueError("TTRPC_ADDRESS is not set: containerd sets it for a shim")
        return cls(address, namespace)

    def publish(self, topic: str, event: Message) -> bool:
        """Queue ``event`` under ``topic``; never blocks.

        The event is encoded now (later changes to it are not sent) and
        stamped with the current time.

        Returns:
            True if queued; False if dropped: the queue is full, or the
            publisher is closed.

        Raises:
            ValueError: ``topic`` is not one containerd accepts.
            TypeError: ``event`` does not encode (a field of the wrong type).
        """
        validate_topic(topic)
        envelope = Envelope(timestamp=Timestamp.now(), namespace=self.namespace, topic=topic,
                            event=Any.pack(event))
        data = ForwardRequest(envelope=envelope).encode()
        with self._cond:
            if self._closing or len(self._queue) >= self._queue_size:
                self.dropped += 1
                why = "the publisher is closed" if self._closing else "the queue is full"
                log_error("dropping event %s (%s): %s", topic, event.FULL_NAME, why)
                return False
            self._queue.append((topic, data))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="shim-events",
                                                daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return True

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered (or dropped)."""
        with self._cond:
            return len(self._queue)

    def close(self, timeout: float = 5.0) -> bool:
        """Stop taking events, and forward those queued for up to ``timeout``
        seconds; then give up on the rest and close the connection.

        Returns:
            True if every queued event was delivered or dropped in time.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            drained = self._cond.wait_for(lambda: not self._queue, timeout)
            thread = self._thread
            self._abort.set()                 # stops retries and backoff waits
            client = self._client
        if client is not None:
            client.close()                    # interrupts a call in flight
        if thread is not None:
            thread.join()
        return drained

    # -- the forwarding thread ----------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._queue or self._closing)
                    if self._abort.is_set() and self._queue:
                        self.dropped += len(self._queue)
                        log_error("dropping %d events: the publisher closed before they "
                                  "were sent", len(self._queue))
                        self._queue.clear()
                    if not self._queue:
                        return
                    topic, data = self._queue[0]
                self._deliver(topic, data)
                with self._cond:
                    self._queue.popleft()
                    self._cond.notify_all()
        finally:
            with self._cond:
                client, self._client = self._client, None
            if client is not None:
                client.close()

    def _connected(self) -> Tuple[Client, bool]:
        """The client, dialling if needed; and whether it was just dialled."""
        with self._cond:
            client = self._client
        if client is not None and not client.closed:
            return client, False
        if client is not None:
            client.close()
        client = Client(self.address, connect_timeout=self._timeout)
        with self._cond:
            if self._abort.is_set():
                client.close()
                raise ConnectionClosedError("ttrpc: publisher closed")
            self._client = client
        return client, True

    def _deliver(self, topic: str, data: bytes) -> None:
        attempt = 0
        while not self._abort.is_set():
            fresh = True
            try:
                client, fresh = self._connected()
                client.call_raw(EventsService.NAME, EventsService.Forward.name, data,
                                timeout=self._timeout, metadata=self._metadata)
                return
            except ConnectionClosedError as e:
                error: Exception = e
                if not fresh:
                    continue          # a connection that went stale: dial again at once
            except (RpcError, DecodeError, OSError) as e:
                error = e
            attempt += 1
            if attempt > self._retries:
                break
            self._abort.wait(self._retry_delay * attempt)
        else:
            error = ConnectionClosedError("ttrpc: publisher closed")
        with self._cond:
            self.dropped += 1
        log_error("dropping event %s after %d attempts: %s", topic, attempt, error)
