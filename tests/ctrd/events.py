"""containerd's event stream for the tests: ``ctr events`` in the background, parsed.

One :class:`EventLog` per test containerd (daemon.py) runs for the
whole session and keeps every event; a test takes an :class:`EventView`
(``containerd.events()``), which sees the events published after it was
taken, and waits for the ones it expects.  ``ctr events`` prints a line per
event::

    2026-01-02 03:04:05.123456789 +0000 UTC <namespace> <topic> <json>

where the JSON is the event message as Go's encoding/json writes it: proto
field names (``container_id``, ``exit_status``), and fields with their zero
value left out (an exit status of 0 has no ``exit_status``: use
``event.get("exit_status", 0)``).
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional

import session_owned

_LINE = re.compile(r"^\d{4}-\d\d-\d\d \S+ \S+ \S+ (?P<ns>\S+) (?P<topic>/\S+) ?(?P<data>.*)$")


class Event:
    """One event: ``namespace``, ``topic`` (``/tasks/exit``), ``data`` (the message)."""

    def __init__(self, namespace: str, topic: str, data: Dict[str, Any], line: str) -> None:
        self.namespace = namespace
        self.topic = topic
        self.data = data
        self.line = line

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def matches(self, topic: Optional[str], namespace: Optional[str],
                fields: Dict[str, Any]) -> bool:
        return ((topic is None or self.topic == topic)
                and (namespace is None or self.namespace == namespace)
                and all(self.data.get(k, _ZERO.get(k)) == v for k, v in fields.items()))

    def __repr__(self) -> str:
        return f"Event({self.namespace} {self.topic} {json.dumps(self.data, sort_keys=True)})"


#: Zero values Go leaves out of the JSON, so that ``exit_status=0`` matches.
_ZERO: Dict[str, Any] = {"exit_status": 0, "pid": 0}


def parse(line: str) -> Optional[Event]:
    """An :class:`Event` from one line of ``ctr events``, None if it is not one."""
    m = _LINE.match(line.rstrip("\n"))
    if m is None:
        return None
    data: Dict[str, Any] = {}
    if m["data"]:
        try:
            data = json.loads(m["data"])
        except ValueError:
            data = {"unparsed": m["data"]}   # ctr could not decode the payload
    return Event(m["ns"], m["topic"], data, line.rstrip("\n"))


class EventLog:
    """Every event of one containerd, read by a ``ctr events`` child and a thread.

    ``ctr_argv`` is ctr with its ``--address``; ``stderr_path`` gets ctr's
    complaints.  :meth:`connect` again after containerd restarts.
    """

    def __init__(self, ctr_argv: List[str], stderr_path: str) -> None:
        self._argv = [*ctr_argv, "events"]
        self._stderr_path = stderr_path
        self.events: List[Event] = []
        self._cond = threading.Condition()
        self._proc: Optional[subprocess.Popen[str]] = None
        self._thread: Optional[threading.Thread] = None
        self._syncs = 0

    def connect(self, sync: Callable[[int], None], timeout: float = 30) -> None:
        """Start ``ctr events`` and return once it is subscribed.

        ``sync(n)`` makes containerd publish a ``/namespaces/update`` event
        whose labels hold ``pidsafe.sync=n``; it is repeated until one comes
        through, so nothing published after this returns can be missed.
        """
        self.close()
        with open(self._stderr_path, "a") as err:
            proc = subprocess.Popen(self._argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=err, encoding="utf-8", errors="replace")
        assert proc.stdout is not None
        session_owned.own_pid(proc.pid)
        session_owned.own_fd(proc.stdout.fileno())
        self._proc = proc
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True,
                                        name="ctr-events")
        self._thread.start()
        deadline = time.monotonic() + timeout
        start = len(self.events)
        tries = 0
        while True:
            tries += 1
            self._syncs += 1
            n = self._syncs
            sync(n)
            if self.wait_for(lambda e: e.topic == "/namespaces/update"
                             and e.get("labels", {}).get("pidsafe.sync") == str(n),
                             start, min(0.5 * tries, max(0.0, deadline - time.monotonic()))):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"`ctr events` did not subscribe within {timeout} s "
                                     f"(see {self._stderr_path})")

    def _read(self, proc: "subprocess.Popen[str]") -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            event = parse(line)
            if event is not None:
                with self._cond:
                    self.events.append(event)
                    self._cond.notify_all()

    def wait_for(self, pred: Callable[[Event], bool], start: int, timeout: float
                 ) -> Optional[Event]:
        """The first event at index ``start`` or later that ``pred`` accepts, None on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                for event in self.events[i:]:
                    if pred(event):
                        return event
                i = len(self.events)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def view(self, namespace: Optional[str]) -> "EventView":
        with self._cond:
            return EventView(self, len(self.events), namespace)

    def close(self) -> None:
        """Stop ``ctr events``; the events read so far stay."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._thread is not None:
            self._thread.join(10)
        session_owned.disown_fd(fd)
        proc.stdout.close()
        session_owned.disown_pid(proc.pid)


class EventView:
    """The events published after this view was taken (``containerd.events()``).

    ``namespace`` None: every namespace.  Field filters compare the event's
    JSON fields: ``view.wait("/tasks/exit", container_id="c1", exit_status=137)``.
    """

    def __init__(self, log: EventLog, start: int, namespace: Optional[str]) -> None:
        self._log = log
        self._start = start
        self.namespace = namespace

    def all(self, topic: Optional[str] = None, **fields: Any) -> List[Event]:
        """The events so far (in order) with this ``topic`` (any if None) and fields."""
        with self._log._cond:
            return [e for e in self._log.events[self._start:]
                    if e.matches(topic, self.namespace, fields)]

    def topics(self, **fields: Any) -> List[str]:
        """The topics so far, in order, of the events with these fields."""
        return [e.topic for e in self.all(None, **fields)]

    def wait(self, topic: str, timeout: float = 30, **fields: Any) -> Event:
        """The first such event after this view began; AssertionError after ``timeout``."""
        event = self._log.wait_for(lambda e: e.matches(topic, self.namespace, fields),
                                   self._start, timeout)
        if event is None:
            raise AssertionError(f"no {topic} event with {fields} within {timeout} s; "
                                 f"got: {self.all()}")
        return event
