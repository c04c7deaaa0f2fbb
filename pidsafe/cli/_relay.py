"""``pidsafe-runc run``/``exec --tty`` in the foreground: relay our stdio to the pty.

With a terminal and no ``--console-socket``, runc itself receives the
master and copies between its own stdio and the container's terminal
(runc's tty.go); so does this.  When our stdin is a terminal too, it is put
in raw mode (every key goes to the container's line discipline, not ours)
and its window size is copied, now and on every ``SIGWINCH``.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import termios
import tty
from typing import Any, List, Optional, Tuple

from ..container import Terminal


class Relay:
    """Our stdio and ``term``, joined; as a context manager, our terminal's mode kept.

    Entering it (before the process starts, so that the process sees them
    from its first instruction) copies our terminal's window size to
    ``term`` and puts our terminal in raw mode; leaving restores the mode.
    """

    def __init__(self, term: Terminal, stdin: int = 0, stdout: int = 1) -> None:
        self.term = term
        self.stdin = stdin
        self.stdout = stdout
        self._saved: Optional[List[Any]] = None
        self._old_winch: Any = None

    def __enter__(self) -> "Relay":
        if os.isatty(self.stdin):
            self._saved = termios.tcgetattr(self.stdin)
            _copy_size(self.stdin, self.term)
            self._old_winch = signal.signal(signal.SIGWINCH,
                                            lambda s, f: _copy_size(self.stdin, self.term))
            tty.setraw(self.stdin, termios.TCSANOW)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.stdin, termios.TCSANOW, self._saved)
            signal.signal(signal.SIGWINCH, self._old_winch)
            self._saved = None

    def pump(self, pidfd: int) -> None:
        """Copy stdin to the terminal and the terminal to stdout until the process exits.

        Returns when the process (``pidfd``) has exited and its output is
        drained, or when no process holds the terminal any more.
        """
        _pump(self.term, pidfd, self.stdin, self.stdout)


def terminal_size(fd: int = 0) -> Optional[Tuple[int, int]]:
    """(rows, columns) of the terminal on ``fd``, or None if it is none."""
    try:
        cols, rows = os.get_terminal_size(fd)
    except OSError:
        return None
    return (rows, cols) if rows and cols else None


def _copy_size(fd: int, term: Terminal) -> None:
    size = terminal_size(fd)
    if size is not None and not term.closed:
        term.resize(*size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _pump(term: Terminal, pidfd: int, stdin: int, stdout: int) -> None:
    poller = select.poll()
    poller.register(term.fileno(), select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    reading_stdin = True
    try:
        poller.register(stdin, select.POLLIN)
    except (OSError, ValueError):
        reading_stdin = False   # no stdin (closed): output only
    exited = False
    while True:
        # Once the process has exited, drain what it printed, then stop.
        events = poller.poll(0 if exited else None)
        if not events and exited:
            return
        for fd, ev in events:
            if fd == pidfd:
                exited = True
                poller.unregister(pidfd)
                if reading_stdin:
                    poller.unregister(stdin)
                    reading_stdin = False
            elif fd == term.fileno():
                data = term.read()
                if not data:
                    return   # no process holds the terminal any more
                _write_all(stdout, data)
            elif reading_stdin:   # (not if unregistered earlier in this batch)
                try:
                    data = os.read(stdin, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if data:
                    _write_all(term.fileno(), data)
                else:   # our stdin ended: the process keeps its terminal
                    poller.unregister(stdin)
                    reading_stdin = False
