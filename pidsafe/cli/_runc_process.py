"""What ``pidsafe-runc`` create, run and exec share: pid files, pidfd sockets,
terminals, ``--preserve-fds``, signals in the foreground, and leaving a
process to its reaper."""

from __future__ import annotations

import os

from .. import _lite
from .._sigsafe import critical
from ..errors import note
from .runc import Args, usage_error

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List


def flag_error(exc: OSError, flag: str, path: str, step: str) -> OSError:
    """``exc`` as the flag's error: ``--pid-file /x/pid: write the pid: No such file ...``.

    The errno (and with it the ``OSError`` subclass) is kept; the message
    names the flag and the path the user gave, not a temp file of ours.
    """
    err = exc.errno or 0
    return OSError(err, f"{flag} {path}: {step}: {os.strerror(err) if err else exc}")


def undo(exc: BaseException, step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """One step of undoing what a failed command made, ``exc`` being why it
    failed.  The caller re-raises ``exc``; a failure of the step is noted
    on it (and printed with it), never raised in its place."""
    try:
        step(*args, **kwargs)
    except Exception as failed:
        note(exc, f"undoing it failed too: {failed}")


def write_pid_file(path: str, pid: int) -> None:
    """``--pid-file``: the pid, atomically (a temp file beside it, renamed over it).

    Nothing is left when it fails: the temp file goes.  One critical
    section (it waits only for the disk): a signal handler's exception
    comes out once the file is wholly there or not, and no temp file is.

    Raises:
        OSError: naming ``--pid-file`` and ``path``.
    """
    full = os.path.abspath(path)
    # Random, not our pid: a crashed writer's leftover cannot collide with it.
    tmp = f"{full}.{os.urandom(8).hex()}.tmp"
    with critical:
        fd = -1
        made = False
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            made = True
            os.write(fd, str(pid).encode())   # a few bytes to a regular file: written whole
            fd, closing = -1, fd
            os.close(closing)
            os.rename(tmp, full)
            made = False
        except OSError as exc:
            raise flag_error(exc, "--pid-file", path, "write the pid") from None
        finally:
            if fd >= 0:
                os.close(fd)
            if made:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass   # gone already: what we wanted


def remove_pid_file(path: str, pid: int) -> None:
    """Undo :func:`write_pid_file`: remove ``path`` if it holds ``pid`` (not
    a file someone else wrote there, nor one a failed write never made)."""
    full = os.path.abspath(path)
    try:
        with open(full, "rb") as f:
            if f.read() != str(pid).encode():
                return
        os.unlink(full)
    except FileNotFoundError:
        pass   # removed meanwhile


def send_pidfd(path: str, name: str, proc: Any) -> None:
    """``--pidfd-socket``: send ``proc``'s pidfd over the unix socket at
    ``path`` (SCM_RIGHTS, with ``name`` as the message), as runc >= 1.2.

    Raises:
        OSError: naming ``--pidfd-socket`` and ``path`` (nobody listens
            there: ``ECONNREFUSED``; no such socket: ``ENOENT``).
    """
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as s:
            s.connect(path)
            socket.send_fds(s, [name.encode()], [proc.fileno()])
    except OSError as exc:
        raise flag_error(exc, "--pidfd-socket", path, "send the pidfd") from None


def release(proc: Any, waited: bool) -> None:
    """Leave a process we do not wait for to whoever inherits it when we exit.

    Whatever reaps it gets its exit status: a shim (a subreaper) that ran us
    waits for exactly that, so we must never reap it ourselves, not even
    when it has already exited by the time we close its handle.
    """
    if proc is not None and not waited:
        proc.release()


def preserve_fds(args: Args) -> int:
    """``--preserve-fds N`` (0 without it); each of fds 3 .. 3+N-1 must be open."""
    text = args.get("preserve-fds")
    if text is None:
        return 0
    if not text.isdigit():
        raise usage_error(f"--preserve-fds: not a non-negative integer: {text!r}")
    count = int(text)
    for fd in range(3, 3 + count):
        try:
            os.fstat(fd)
        except OSError:
            raise usage_error(f"--preserve-fds {count}: fd {fd} is not open") from None
    return count


class Console:
    """Where the process's terminal goes: runc's rules for ``--console-socket``.

    ``terminal()`` says whether the process has one (read only if needed).
    A detached process's terminal goes to ``--console-socket`` (the library
    refuses a terminal without one); a foreground one is relayed here,
    through a socketpair whose one end the process's maker gets and whose
    other end receives the terminal.  ``with`` closes both ends::

        with Console(args, foreground, terminal) as console:
            proc = make(console_socket=console.socket)
            term = console.receive()

    Raises:
        UsageError: ``--console-socket`` in the foreground.
    """

    def __init__(self, args: Args, foreground: bool, terminal: Callable[[], Any]) -> None:
        self._pair: List[Any] = []
        #: What the maker gets as ``console_socket``.
        self.socket: Any = args.get("console-socket")
        if self.socket:
            if foreground:
                raise usage_error("--console-socket: cannot use a console socket if "
                                  "pidsafe-runc will not detach (use --detach)")
        elif foreground and terminal():
            import socket

            self._pair = list(socket.socketpair(socket.AF_UNIX,
                                                socket.SOCK_STREAM | socket.SOCK_CLOEXEC))
            self.socket = self._pair[0]

    @property
    def relayed(self) -> bool:
        """Whether we relay the terminal (a foreground process that has one)."""
        return bool(self._pair)

    def receive(self) -> Any:
        """The terminal master the process's maker sent, if we relay it; else None.

        Call once the maker has returned: our copy of its end is closed
        first, so a maker that sent nothing gives an end of file, not a hang.
        """
        if not self._pair:
            return None
        from ..container import receive_terminal

        self._pair[0].close()
        return receive_terminal(self._pair[1])

    def close(self) -> None:
        for sock in self._pair:
            sock.close()

    def __enter__(self) -> "Console":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def exit_status(status: int) -> int:
    """The command's exit status for a process's: its own, or 128 + the signal (as runc)."""
    return status if status >= 0 else 128 - status


class forwarding:
    """While in the foreground, signals that reach us go to the process (as
    ``runc run`` and ``runc exec`` do).

    Handlers, not ``except KeyboardInterrupt``: a signal that arrives at any
    point, before start included, is passed on and never raises here.
    ``Process.send_signal`` goes through the pidfd and is safe to call
    from a handler.  With a terminal, ``SIGWINCH`` is the relay's.
    """

    def __init__(self, proc: Any, *, tty: bool) -> None:
        from . import FORWARDED_SIGNALS

        self.proc = proc
        numbers = (_lite.signal_number(name) for name in FORWARDED_SIGNALS
                   if not (tty and name == "SIGWINCH"))
        self.signums = [n for n in numbers if n is not None]
        self.old: Dict[int, Any] = {}

    def _forward(self, signum: int, frame: Any) -> None:
        if self.proc is not None and self.proc.returncode is None:
            try:
                self.proc.send_signal(signum)
            except (ProcessLookupError, ValueError):
                pass   # exited (or closed) meanwhile: the wait sees it

    def __enter__(self) -> "forwarding":
        for signum in self.signums:
            self.old[signum] = _lite.setsignal(signum, self._forward)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.old.items():
            _lite.setsignal(signum, handler)
