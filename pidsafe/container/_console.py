"""A container process's terminal: the console socket, and the master a receiver gets.

runc's protocol (``--console-socket``), which containerd's shim speaks:
the runtime connects to a unix stream socket and the container's side
sends ONE message whose data is ``/dev/ptmx`` and whose ``SCM_RIGHTS``
carries the pty master.  pidsafe-init allocates the pty in the container's
own devpts and sends the master itself (csrc/init/terminal.c explains
why); here the parent only connects (:func:`open_console_socket`) and
passes the connected socket to init, so no long-lived pidsafe process ever
holds the master.  :func:`receive_terminal` is the other side, for a
caller that wants the master in-process (a socketpair; ``pidsafe-runc
run`` in the foreground; tests).
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import struct
import termios
from typing import Any, List, Optional, Sequence, Tuple, Union

from .. import _sys
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import ConfigError
from .config import ProcessSpec

#: Where to send a terminal: a socket path, or a connected AF_UNIX stream socket.
ConsoleSocket = Union[str, "os.PathLike[str]", socket.socket]

_WINSIZE = struct.Struct("HHHH")
_MAX_NAME = 4096   # runc's limit on the message's data
_SUN_PATH_MAX = 107   # sizeof(sun_path) - 1


class Terminal(OwnedFd):
    """The master side of a container process's pty (from :func:`receive_terminal`).

    What is written is the process's input; what it prints is read back.
    """

    __slots__ = ()

    def resize(self, rows: int, cols: int) -> None:
        """Set the window size (the process gets ``SIGWINCH``).

        Raises:
            OSError: ``ioctl(TIOCSWINSZ)`` failed.
        """
        fcntl.ioctl(self.fileno(), termios.TIOCSWINSZ, _WINSIZE.pack(rows, cols, 0, 0))

    def size(self) -> Tuple[int, int]:
        """The window size as (rows, columns)."""
        rows, cols, _, _ = _WINSIZE.unpack(
            fcntl.ioctl(self.fileno(), termios.TIOCGWINSZ, bytes(_WINSIZE.size)))
        return rows, cols

    def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes of output; ``b""`` once no process holds the terminal.

        (A master reads ``EIO`` when its last peer is closed: that is EOF.)
        """
        try:
            return os.read(self.fileno(), n)
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes) -> int:
        """Write input for the process; the number of bytes written."""
        return os.write(self.fileno(), data)


def console_for(process: ProcessSpec, target: Optional[ConsoleSocket],
                stdio: Sequence[Any], into: List[OwnedFd]) -> int:
    """The console socket for ``process``: an fd for init, or -1 without a terminal.

    runc's rules: a terminal needs a console socket to go to, and a console
    socket needs a terminal.  The socket is appended to ``into`` the moment
    it exists (the caller closes it once init has sent the master).

    Raises:
        ConfigError: ``process.terminal`` and ``target`` disagree.
        ValueError: stdio was given for a process whose stdio is its terminal.
        OSError: see :func:`open_console_socket`.
    """
    if not process.terminal:
        if target is not None:
            raise ConfigError("process.terminal", "is false: a console socket is only for "
                              "a terminal")
        return -1
    if target is None:
        raise ConfigError("process.terminal", "needs a console socket to send the terminal "
                          "to (console_socket=, or --console-socket)")
    if any(s is not None for s in stdio):
        raise ValueError("a process with a terminal has it as stdin, stdout and stderr: "
                         "pass none of them")
    return open_console_socket(target, into)


def open_console_socket(target: ConsoleSocket, into: List[OwnedFd]) -> int:
    """A connected socket for init to send the master over, appended to ``into``.

    ``target`` is a path (connected here, as ``runc --console-socket``
    does), or a connected ``AF_UNIX`` stream socket (duplicated: the caller
    keeps its own).

    Raises:
        FileNotFoundError: no such path.
        OSError: ``ENOTSOCK`` (the path is not a socket), ``ECONNREFUSED``
            (nobody listens), ... with the step and the path.
        ValueError: a socket object of the wrong kind.
    """
    if isinstance(target, socket.socket):
        if target.family != socket.AF_UNIX or target.type != socket.SOCK_STREAM:
            raise ValueError("console_socket must be an AF_UNIX stream socket")
        with critical:
            dup = OwnedFd(fcntl.fcntl(target.fileno(), fcntl.F_DUPFD_CLOEXEC, 3),
                          "console socket")
            into.append(dup)
        return dup.fileno()
    path = os.fspath(target)
    if not isinstance(path, str) or not path:
        raise ValueError(f"console_socket must be a socket path, not {target!r}")
    with critical:
        sock = OwnedFd(socket.socket(socket.AF_UNIX,
                                     socket.SOCK_STREAM | socket.SOCK_CLOEXEC).detach(),
                       "console socket")
        into.append(sock)
    _connect(sock.fileno(), path)
    return sock.fileno()


def _connect(fd: int, path: str) -> None:
    s = socket.socket(fileno=fd)   # borrowed: detached again below, never closed here
    try:
        if len(os.fsencode(path)) <= _SUN_PATH_MAX:
            s.connect(path)
            return
        # Too long for sun_path: reach the socket through its directory's fd.
        head, name = os.path.split(path)
        d = os.open(head or ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            s.connect(f"/proc/self/fd/{d}/{name}")
        finally:
            os.close(d)
    except OSError as exc:
        err = exc.errno or errno.EIO
        if err == errno.ECONNREFUSED:
            try:
                if not stat.S_ISSOCK(os.stat(path).st_mode):
                    err = errno.ENOTSOCK
            except OSError:
                pass   # gone meanwhile: keep ECONNREFUSED
        raise _sys.make_oserror(err, "connect to the console socket", path) from None
    finally:
        s.detach()


def receive_terminal(sock: socket.socket) -> Terminal:
    """Receive the pty master a container's process was given (runc's message).

    Call it on the other end of the ``console_socket`` given to
    :meth:`pidsafe.Container.create` or :meth:`~pidsafe.Container.exec`;
    the master was sent before that call returned.

    Raises:
        EOFError: the socket was closed with no terminal sent (the process
            was never created).
        OSError: ``EPROTO`` for a message that is not one fd of a pty
            master; ``recvmsg`` errors.
    """
    owned: List[Terminal] = []
    try:
        # (An interrupt deferred by ``critical`` is raised on leaving it: in the try.)
        with critical:
            data, fds, flags, _ = socket.recv_fds(sock, _MAX_NAME, 1, socket.MSG_CMSG_CLOEXEC)
            owned.extend(Terminal(fd, "terminal") for fd in fds)
        if not data and not owned:
            raise EOFError("the console socket was closed with no terminal sent")
        if len(owned) != 1 or flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC):
            raise _sys.make_oserror(errno.EPROTO, "receive the terminal: expected one fd "
                                    f"(got {len(owned)}, flags {flags:#x})")
        term = owned[0]
        try:
            _sys.pty_number(term.fileno())   # a pty master?
        except OSError as exc:
            raise _sys.make_oserror(errno.EPROTO, "receive the terminal: the fd is not a "
                                    f"pty master ({os.strerror(exc.errno or 0)})") from None
    except BaseException:
        with critical:
            for t in owned:
                t.close()
        raise
    return term
