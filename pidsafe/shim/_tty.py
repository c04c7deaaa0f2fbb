"""A process's terminal, relayed between its pty master and containerd's FIFOs.

With ``terminal``, pidsafe-init gives the process a pty and sends the
master over the console socket of ``Container.create``/``exec``; the shim
receives it in-process (:func:`pidsafe.receive_terminal`) and a
:class:`ConsoleRelay` copies master -> stdout FIFO and stdin FIFO -> master
(stderr is the terminal too; containerd passes no stderr path then).  As
in the runc shim (runtime/v2/runc/platform.go), the stdout FIFO gets a
keep-alive reader and the stdin FIFO a writer of the shim's own that only
``CloseIO`` closes.

One thread per terminal, in ``poll(2)`` on non-blocking fds: a client that
stops reading stalls only this terminal (the master is then not read, so
the process blocks once the pty's buffer is full, as with a real
terminal), and :meth:`ConsoleRelay.close` always gets the thread back.  A
reader that went away (``EPIPE``) costs the output, never the shim.

A master reads ``EIO`` once no process holds the slave: that is the end of
the output (Linux returns what was buffered first); the stdout writer is
then closed, which is the client's EOF.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import threading

from .._fd import OwnedFd
from .._sigsafe import critical

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Dict, List, Optional

    from ..container import Terminal

_CHUNK = 32 * 1024
_IN = select.POLLIN | select.POLLHUP | select.POLLERR


def console_pair(socks: List[socket.socket]) -> None:
    """Add to ``socks`` the socket pair whose second end is the console
    socket of a create or an exec (``socks`` owns both ends: its owner
    closes them if the start fails)."""
    with critical:
        socks.extend(socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC))


def relay_console(socks: List[socket.socket], stdin: str, stdout: str) -> ConsoleRelay:
    """The relay of the terminal that the started process's pidsafe-init sent
    over the :func:`console_pair` ``socks`` (both ends are closed here).

    Args:
        stdin, stdout: containerd's FIFOs (see :class:`ConsoleRelay`).
    """
    from ..container import receive_terminal

    socks[1].close()
    master = receive_terminal(socks[0])
    socks[0].close()
    try:
        return ConsoleRelay(master, stdin, stdout)
    except BaseException:
        master.close()
        raise


def _open(path: str, flags: int, what: str) -> OwnedFd:
    with critical:
        return OwnedFd(os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY), what)


class ConsoleRelay:
    """Copies between a pty master and the stdio FIFOs until the terminal closes.

    Args:
        master: the pty master (owned from here on).
        stdin, stdout: FIFO paths ("" for none).

    Raises:
        OSError: a FIFO could not be opened (nothing stays open then).
    """

    def __init__(self, master: Terminal, stdin: str, stdout: str) -> None:
        self._master = master
        self._owned: list[OwnedFd] = []
        self._out: Optional[OwnedFd] = None
        self._in: Optional[OwnedFd] = None
        self._in_writer: Optional[OwnedFd] = None
        self._done = threading.Event()
        try:
            os.set_blocking(master.fileno(), False)
            if stdout:
                self._owned.append(_open(stdout, os.O_RDONLY, "stdout keep-alive reader"))
                self._out = _open(stdout, os.O_WRONLY, "stdout fifo writer")
            if stdin:
                self._in = _open(stdin, os.O_RDONLY, "stdin fifo")
                self._in_writer = _open(stdin, os.O_WRONLY, "stdin fifo writer")
            with critical:
                r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
                self._wake_r, self._wake_w = OwnedFd(r, "relay wake"), OwnedFd(w, "relay wake")
        except BaseException:
            self._close_fds()
            raise
        self._thread = threading.Thread(target=self._run, name="shim-tty", daemon=True)
        self._thread.start()

    def resize(self, width: int, height: int) -> None:
        """``ResizePty``: a no-op once the terminal is closed."""
        if self._master.closed:
            return
        try:
            self._master.resize(height, width)
        except (OSError, ValueError):
            pass   # closed meanwhile, or the process is gone: nothing to resize

    def close_stdin(self) -> None:
        """``CloseIO``: the process reads EOF once the client's writer is gone too."""
        writer, self._in_writer = self._in_writer, None
        if writer is not None:
            writer.close()

    def wait(self, timeout: Optional[float]) -> bool:
        """Until the output has been copied to the end (True), or ``timeout`` passed."""
        return self._done.wait(timeout)

    def close(self) -> None:
        """Stop copying and close everything (idempotent)."""
        if not self._wake_w.closed:
            try:
                os.write(self._wake_w.fileno(), b"x")
            except (BlockingIOError, ValueError):
                pass   # a wake-up is pending already, or closed by another close()
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._master, self._out, self._in, self._in_writer, *self._owned,
                   getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if fd is not None:
                fd.close()

    # -- the thread -----------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._copy()
        finally:
            out, self._out = self._out, None
            if out is not None:
                out.close()     # the client's EOF
            self._done.set()

    def _copy(self) -> None:
        master, wake = self._master.fileno(), self._wake_r.fileno()
        out_buf = in_buf = b""
        master_open = True
        while master_open or out_buf:
            poller = select.poll()
            poller.register(wake, select.POLLIN)
            want: Dict[int, int] = {}
            if master_open:
                ev = (select.POLLIN if not out_buf else 0) | (select.POLLOUT if in_buf else 0)
                if ev:
                    want[master] = ev
            if out_buf and self._out is not None:
                want[self._out.fileno()] = select.POLLOUT
            if self._in is not None and not in_buf and master_open:
                want[self._in.fileno()] = select.POLLIN
            for fd, ev in want.items():
                poller.register(fd, ev)
            for fd, ev in poller.poll():
                if fd == wake:
                    return
                if fd == master:
                    if ev & _IN and not out_buf:
                        data = _read(master)
                        if data is None:
                            master_open = False
                        elif self._out is not None:
                            out_buf = data
                    if ev & select.POLLOUT and in_buf:
                        n = _write(master, in_buf, lost_ok=True)
                        in_buf = in_buf[n:] if n >= 0 else b""
                elif self._out is not None and fd == self._out.fileno():
                    n = _write(fd, out_buf, lost_ok=True)
                    out_buf = out_buf[n:] if n >= 0 else b""   # -1: the reader is gone
                elif self._in is not None and fd == self._in.fileno():
                    data = _read(fd)
                    if data is None:    # every writer closed (the client's and ours)
                        self._in.close()
                        self._in = None
                    else:
                        in_buf = data
            if not master_open:
                in_buf = b""


def _read(fd: int) -> Optional[bytes]:
    """Up to a chunk; b"" if nothing is there now; None at the end (EOF, EIO)."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return b""
    except OSError as exc:
        if exc.errno == errno.EIO:   # a master whose slave is closed
            return None
        raise
    return data or None


def _write(fd: int, data: bytes, *, lost_ok: bool) -> int:
    """Bytes written (0 if it would block); -1 if the other end is gone (the data is lost)."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError as exc:
        if lost_ok and exc.errno in (errno.EPIPE, errno.EIO):
            return -1
        raise
