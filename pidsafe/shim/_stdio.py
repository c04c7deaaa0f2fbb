"""A process's stdio as containerd names it: fifo paths, ``binary://``, ``file://``.

containerd's client (``ctr``, CRI) makes three FIFOs and opens its own ends
first; the shim connects the container to them.  The runc
shim puts pipes between the container and the FIFOs and copies; here the
FIFOs themselves are the container's stdio, passed as fds to
``Container.create``/``exec`` (nothing to copy, no thread, no buffer), and
the shim keeps what the runc shim keeps to get the same behaviour:

- stdout/stderr: an extra ``O_RDONLY`` end of each FIFO, so that a write
  never fails with ``EPIPE`` after the client went away (the container
  then blocks once the FIFO is full, as it does behind the runc shim);
- stdin: an extra ``O_WRONLY`` end, so that the container reads EOF only
  once the client's writer *and* this one (closed by ``CloseIO``) are gone.

Every FIFO is opened with ``O_NONBLOCK`` (the keep-alive end first, so the
other never fails with ``ENXIO``), then the end the container gets is set
blocking again: an RPC never waits on a FIFO open.

``file://PATH``: stdout and stderr append to PATH (created 0644, its
directory 0755).  ``binary://PATH?k=v``: a logging program started as the
runc shim starts it (pkg/process/io.go ``NewBinaryIO``): argv ``PATH k v
...``, environment ``CONTAINER_ID``, ``CONTAINER_NAMESPACE`` only, the
container's stdout and stderr readable on its fd 3 and 4, and fd 5 a pipe
it writes to (or closes) once ready.
"""

from __future__ import annotations

import fcntl
import os
import select

from .._fd import OwnedFd
from ..process import DEVNULL
from .._sigsafe import critical

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, List, Optional, Tuple

    from ..process import Process
    from ..reaper import Reaper
    from ._task import Stdio

#: How long a logging binary may take to say it is ready, and to exit once told to.
LOGGER_READY_TIMEOUT = 10.0
LOGGER_STOP_TIMEOUT = 12.0   # the runc shim's binaryIOProcTermTimeout


def _set_blocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)


def _open(path: str, flags: int, what: str) -> OwnedFd:
    with critical:
        return OwnedFd(os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY), what)


class ProcessIO:
    """The stdio fds of one process: what it gets, and what the shim keeps.

    :attr:`child` is what ``Container.create``/``exec`` takes for stdin,
    stdout and stderr (an fd, or ``pidsafe.DEVNULL`` for an empty path).
    """

    def __init__(self) -> None:
        self.child: List[Any] = [DEVNULL, DEVNULL, DEVNULL]
        self._given: List[OwnedFd] = []       # the container's ends: closed once it has them
        self._keep: List[OwnedFd] = []        # keep-alive readers, the logger's pipes
        self._stdin_writer: Optional[OwnedFd] = None
        self._logger: Optional[Process] = None

    def _give(self, index: int, fd: OwnedFd) -> None:
        self._given.append(fd)
        self.child[index] = fd.fileno()

    def close_child_side(self) -> None:
        """The process has its copies: close ours."""
        given, self._given = self._given, []
        for fd in given:
            fd.close()
        self.child = [DEVNULL, DEVNULL, DEVNULL]

    def close_stdin(self) -> None:
        """``CloseIO``: drop the shim's stdin writer (the process may read EOF now)."""
        writer, self._stdin_writer = self._stdin_writer, None
        if writer is not None:
            writer.close()

    def close(self) -> None:
        """Everything, the logging binary included (asked to stop, then killed)."""
        self.close_child_side()
        self.close_stdin()
        keep, self._keep = self._keep, []
        for fd in keep:
            fd.close()
        logger, self._logger = self._logger, None
        if logger is not None:
            _stop_logger(logger)


def open_io(stdio: Stdio, *, container_id: str, namespace: str,
            reaper: Optional[Reaper] = None) -> ProcessIO:
    """Open the stdio of a process without a terminal; on failure nothing stays open.

    Raises:
        OSError: a FIFO or file could not be opened (its path is named), or
            the logging binary could not be started.
        ValueError: an unknown URI scheme.
    """
    io = ProcessIO()
    try:
        scheme, rest = _scheme(stdio.stdout)
        if stdio.stdin and scheme != "binary":
            r = _open(stdio.stdin, os.O_RDONLY, "stdin fifo")
            io._give(0, r)
            io._stdin_writer = _open(stdio.stdin, os.O_WRONLY, "stdin fifo writer")
            _set_blocking(r.fileno())
        if scheme == "fifo":
            _fifo_out(io, stdio.stdout, stdio.stderr)
        elif scheme == "file":
            _file_out(io, rest)
        elif scheme == "binary":
            _binary_out(io, rest, container_id, namespace, reaper)
        else:
            raise ValueError(f"unknown stdio scheme {scheme!r} in {stdio.stdout!r}")
    except BaseException:
        io.close()
        raise
    return io


def _scheme(uri: str) -> Tuple[str, str]:
    if "://" not in uri:
        return "fifo", uri
    scheme, _, rest = uri.partition("://")
    return scheme, rest


def _fifo_out(io: ProcessIO, stdout: str, stderr: str) -> None:
    for index, path in ((1, stdout), (2, stderr)):
        if not path:
            continue
        if index == 2 and path == stdout:
            io.child[2] = io.child[1]    # one FIFO for both: the same writer
            continue
        io._keep.append(_open(path, os.O_RDONLY, "fifo keep-alive reader"))
        w = _open(path, os.O_WRONLY, "fifo writer")
        io._give(index, w)
        _set_blocking(w.fileno())


def _file_out(io: ProcessIO, rest: str) -> None:
    from urllib.parse import unquote, urlsplit

    path = unquote(urlsplit("file://" + rest).path)
    os.makedirs(os.path.dirname(path) or "/", mode=0o755, exist_ok=True)
    with critical:   # given to io in the section that opens it
        f = OwnedFd(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644),
                    "log file")
        io._give(1, f)
    io.child[2] = io.child[1]


def _binary_out(io: ProcessIO, rest: str, container_id: str, namespace: str,
                reaper: Optional[Reaper]) -> None:
    from urllib.parse import parse_qsl, urlsplit

    from ..process import spawn

    parts = urlsplit("binary://" + rest)
    args: List[str] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        args += [key] + ([value] if value else [])
    pipes: List[OwnedFd] = []
    try:
        with critical:
            for _ in range(3):
                r, w = os.pipe2(os.O_CLOEXEC)
                pipes += [OwnedFd(r, "logger pipe"), OwnedFd(w, "logger pipe")]
        out_r, out_w, err_r, err_w, ready_r, ready_w = pipes
        fds = [out_r.fileno(), err_r.fileno(), ready_w.fileno()]
        # The logger reads the container's output on fds 3 and 4 and reports
        # ready on 5; spawn() passes fds at their own numbers, so a shell
        # moves them there (through numbers above all three, in case one of
        # them is 3, 4 or 5 already).
        hi = max(fds) + 1
        script = (f"exec {hi}<&{fds[0]} {hi + 1}<&{fds[1]} {hi + 2}>&{fds[2]} && "
                  f"exec 3<&{hi} 4<&{hi + 1} 5>&{hi + 2} {hi}<&- {hi + 1}<&- {hi + 2}>&- && "
                  'exec "$0" "$@"')
        proc = spawn(["/bin/sh", "-c", script, parts.path, *args], pass_fds=fds,
                     env={"CONTAINER_ID": container_id, "CONTAINER_NAMESPACE": namespace},
                     stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL)
        io._logger = proc
        if reaper is not None:
            reaper.watch(proc)
        for fd in (out_r, err_r, ready_w):
            fd.close()
        io._give(1, out_w)
        io._give(2, err_w)
        poller = select.poll()
        poller.register(ready_r.fileno(), select.POLLIN)
        poller.poll(int(LOGGER_READY_TIMEOUT * 1000))   # a byte, or EOF: ready
        ready_r.close()
    except BaseException:
        for fd in pipes:
            if fd not in io._given:
                fd.close()
        raise


def _stop_logger(proc: Process) -> None:
    import signal

    from ..errors import TimeoutExpired

    try:
        proc.send_signal(signal.SIGTERM)
        proc.wait(LOGGER_STOP_TIMEOUT)
    except TimeoutExpired:
        proc.kill()    # through its pidfd; the reaper reaps it
    finally:
        proc.close()
