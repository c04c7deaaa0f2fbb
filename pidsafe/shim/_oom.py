"""TaskOOM: the kernel's OOM kills in a container's cgroup, as events.

One thread and one epoll instance for every container of the shim,
registered at init's start as the runc shim does (pkg/oom/v1, pkg/oom/v2).
An OOM between the start and the registration (a program that fills its
limit at once, on a loaded machine) is not lost, as it is in the runc shim:
the cgroup's ``oom_kill`` count is read before the start (:func:`oom_kills`)
and the watch publishes every kill counted since:

- cgroup v1 (and hybrid, where ``memory`` is a v1 controller): an eventfd
  registered with ``cgroup.event_control`` against ``memory.oom_control``;
  the kernel signals it on each OOM in the cgroup, and once more when the
  cgroup is removed (the watch then ends).  The ``oom_kill`` count of
  ``memory.oom_control`` is read once, when the watch is added.
- cgroup v2: ``memory.events`` polled for ``EPOLLPRI`` (kernfs notifies a
  change of the file that way, and with inotify); after each wake-up the
  file is read again, which also re-arms it, and an event is published when
  ``oom_kill`` went up.  A read that fails means the cgroup is gone.
"""

from __future__ import annotations

import os
import select
import threading

from .._fd import OwnedFd
from .._sigsafe import critical

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional, Tuple

    from ..container import Cgroup, Container


class _Watch:
    __slots__ = ("cid", "fd", "aux", "v2", "count", "path", "lock", "closed")

    def __init__(self, cid: str, fd: OwnedFd, aux: Optional[OwnedFd], v2: bool,
                 path: str, count: int) -> None:
        self.cid, self.fd, self.aux, self.v2, self.path = cid, fd, aux, v2, path
        self.count = count      # the kills published (or counted before the watch)
        self.lock = threading.Lock()   # one check at a time, never with the close
        self.closed = False

    def kills(self) -> Optional[int]:
        """The cgroup's ``oom_kill`` count now; None once it is unreadable."""
        counter = self.fd if self.v2 or self.aux is None else self.aux
        return _oom_kills(counter.fileno())

    def close(self) -> None:
        # Under the lock: the watcher thread may be checking it right now
        # (the removal of a v1 cgroup signals the eventfd as Delete removes
        # the watch), and must never read an fd closed, or reused, meanwhile.
        with self.lock:
            self.closed = True
            self.fd.close()
            if self.aux is not None:
                self.aux.close()


def _oom_kills(fd: int) -> Optional[int]:
    """``oom_kill`` of a memory.events (v2) or memory.oom_control (v1) fd (read
    again from 0); None once unreadable."""
    try:
        data = os.pread(fd, 4096, 0)
    except OSError:
        return None
    for line in data.decode("ascii", "replace").splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value or 0)
    return 0


def _memory_dir(cg: Cgroup) -> Optional[Tuple[str, bool]]:
    """The directory that has ``cg``'s memory controller, and whether it is v2."""
    mem = next((d for k, d in cg.v1_paths.items() if "memory" in k.split(",")), None)
    if mem is not None:
        return mem, False
    if cg.v2_path is not None and os.path.exists(f"{cg.v2_path}/memory.events"):
        return cg.v2_path, True
    return None


def oom_kills(cg: Cgroup) -> int:
    """How many OOM kills ``cg`` has seen (0 if it has no memory controller or
    the count is unreadable): read before init starts, and passed to
    :meth:`OomWatcher.add`."""
    found = _memory_dir(cg)
    if found is None:
        return 0
    d, v2 = found
    try:
        with critical:
            fd = os.open(f"{d}/{'memory.events' if v2 else 'memory.oom_control'}",
                         os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return _oom_kills(fd) or 0
    finally:
        os.close(fd)


class OomWatcher:
    """Watches containers' cgroups and calls ``publish(container_id)`` on each OOM."""

    def __init__(self, publish: Callable[[str], None]) -> None:
        self._publish = publish
        self._lock = threading.Lock()
        self._watches: Dict[int, _Watch] = {}
        self._by_id: Dict[str, int] = {}
        with critical:
            self._epoll = select.epoll()
        with critical:
            self._wake = OwnedFd(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK), "oom wake")
        self._epoll.register(self._wake.fileno(), select.EPOLLIN)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="shim-oom", daemon=True)
        self._thread.start()

    def add(self, cid: str, cg: Cgroup, since: int = 0) -> bool:
        """Watch ``cg`` for container ``cid``; False if it has no memory controller.

        ``since``: the cgroup's :func:`oom_kills` before its processes could
        run; kills counted after it and before this call are published now.
        """
        found = _memory_dir(cg)
        if found is None:
            return False
        d, v2 = found
        # Made and stored as one step: a handler raising as a section ends
        # never drops a watch's fds (short: an open, a write to a cgroup file).
        with critical:
            w = self._add_v2(cid, d, since) if v2 else self._add_v1(cid, d, since)
            with self._lock:
                if self._closed:
                    w.close()
                    return False
                self._watches[w.fd.fileno()] = w
                self._by_id[cid] = w.fd.fileno()
                self._epoll.register(w.fd.fileno(),
                                     select.EPOLLPRI if w.v2 else select.EPOLLIN)
        self._check_count(w)    # what came before the watch
        return True

    def _add_v1(self, cid: str, d: str, since: int) -> _Watch:
        with critical:
            efd = OwnedFd(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK), "oom eventfd")
        try:
            with critical:
                ctl = OwnedFd(os.open(f"{d}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC),
                              "memory.oom_control")
            try:
                with open(f"{d}/cgroup.event_control", "w") as f:
                    f.write(f"{efd.fileno()} {ctl.fileno()}")
            except BaseException:
                ctl.close()
                raise
        except BaseException:
            efd.close()
            raise
        return _Watch(cid, efd, ctl, False, d, since)

    def _add_v2(self, cid: str, d: str, since: int) -> _Watch:
        with critical:
            fd = OwnedFd(os.open(f"{d}/memory.events", os.O_RDONLY | os.O_CLOEXEC),
                         "memory.events")
        return _Watch(cid, fd, None, True, d, since)

    def remove(self, cid: str) -> None:
        """Stop watching container ``cid`` (nothing if it is not watched)."""
        with self._lock:
            fd = self._by_id.pop(cid, None)
            w = self._watches.pop(fd, None) if fd is not None else None
            if w is not None:
                self._epoll.unregister(w.fd.fileno())
        if w is not None:
            w.close()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        os.eventfd_write(self._wake.fileno(), 1)
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            watches, self._watches, self._by_id = list(self._watches.values()), {}, {}
        for w in watches:
            w.close()
        self._epoll.close()
        self._wake.close()

    def _run(self) -> None:
        while True:
            for fd, _ in self._epoll.poll():
                if fd == self._wake.fileno():
                    return
                with self._lock:
                    w = self._watches.get(fd)
                if w is None:
                    continue
                if not self._check(w):
                    self.remove(w.cid)

    def _check(self, w: _Watch) -> bool:
        """Publish what happened to ``w``; False once its cgroup is gone."""
        if w.v2:
            return self._check_count(w)
        with w.lock:
            if w.closed:
                return True       # removed meanwhile
            try:
                os.eventfd_read(w.fd.fileno())
            except BlockingIOError:
                return True
        if not os.path.exists(w.path):
            return False      # the removal's wake-up, not an OOM
        # The wake-up is the OOM itself: the kernel signals it before the
        # kill that ``oom_kill`` counts (so that count may not have moved yet).
        self._publish(w.cid)
        return True

    def _check_count(self, w: _Watch) -> bool:
        """Publish the kills counted since the last check; False once unreadable.

        v2's wake-ups, and for v1 only the catch-up when the watch is added
        (one that coincides with an OOM right after the registration can
        publish that OOM twice; none is lost).
        """
        with w.lock:
            if w.closed:
                return True       # removed meanwhile
            count = w.kills()
            if count is None:
                return False
            new, w.count = count > w.count, max(count, w.count)
        if new:
            self._publish(w.cid)
        return True


class ContainerOoms:
    """The OOM watching of a shim's containers: each one's count before its
    init starts (:meth:`baseline`: a kill between the start and the watch is
    published too), then its watch (:meth:`watch`).  The one
    :class:`OomWatcher` (a thread) is made at the first watch.

    Args:
        publish: called with a container's id on each OOM kill in it.
    """

    def __init__(self, publish: Callable[[str], None]) -> None:
        self._publish = publish
        self._lock = threading.Lock()
        self._watcher: Optional[OomWatcher] = None

    @staticmethod
    def baseline(container: Container) -> Tuple[Optional[Cgroup], int]:
        """The container's cgroup and its OOM kills so far, read before init starts."""
        cg = container.cgroup()
        if cg is None:
            return None, 0
        return cg, oom_kills(cg)

    def watch(self, cid: str, cg: Cgroup, since: int) -> bool:
        """Watch container ``cid``'s cgroup (see :meth:`OomWatcher.add`)."""
        with self._lock:
            if self._watcher is None:
                self._watcher = OomWatcher(self._publish)
            watcher = self._watcher
        return watcher.add(cid, cg, since)

    def remove(self, cid: str) -> None:
        """Stop watching container ``cid`` (nothing if it is not watched)."""
        if self._watcher is not None:
            self._watcher.remove(cid)

    def close(self) -> None:
        """Stop the watcher's thread, if one was made."""
        if self._watcher is not None:
            self._watcher.close()
