"""What ``pidsafe-runc`` create, run and exec share: pid files, terminals,
``--preserve-fds``, and leaving a process to its reaper."""

from __future__ import annotations

import os
import time
from typing import Any, List

from ..errors import UsageError
from .runc import Args


def write_pid_file(path: str, pid: int) -> None:
    """The pid file, atomically: a temp file renamed over it."""
    path = os.path.abspath(path)
    tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.rename(tmp, path)


def release(proc: Any, waited: bool) -> None:
    """Leave a process we do not wait for to whoever inherits it when we exit.

    Whatever reaps it gets its exit status: a shim (a subreaper) that ran us
    waits for exactly that, so we must never reap it ourselves, not even
    when it has already exited by the time we close its handle.
    """
    if proc is not None and not waited:
        proc.release()


def preserve_fds(args: Args) -> int:
    """``--preserve-fds N`` (0 without it)."""
    text = args.get("preserve-fds")
    if text is None:
        return 0
    if not text.isdigit():
        raise UsageError(f"--preserve-fds: not a non-negative integer: {text!r}")
    return int(text)


def console_target(args: Args, foreground: bool, terminal: Any) -> List[Any]:
    """runc's rules for ``--console-socket``; a socketpair when we relay the terminal.

    ``terminal()`` says whether the process has one (read only if needed).
    A detached process's terminal goes to ``--console-socket`` (the library
    refuses a terminal without one); a foreground one is relayed here
    through a socketpair: [our end for init, our end to receive].
    """
    if args.get("console-socket"):
        if foreground:
            raise UsageError("--console-socket: cannot use a console socket if pidsafe-runc "
                             "will not detach (use --detach)")
        return []
    if foreground and terminal():
        import socket

        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        return [a, b]
    return []


def receive(sock: Any) -> Any:
    """The terminal master init sends over ``sock``."""
    from ..container import receive_terminal

    return receive_terminal(sock)
