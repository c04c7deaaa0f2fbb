"""asyncio: ``create_subprocess_exec()`` on a pidfd, with no thread and no child watcher.

The API of :mod:`asyncio.subprocess`: ``await create_subprocess_exec(...)``
returns an :class:`AsyncProcess` with ``pid``, ``returncode``, ``stdin`` (a
``StreamWriter``), ``stdout``/``stderr`` (``StreamReader``\\ s), ``await
wait()``, ``await communicate(input)``, ``send_signal()``, ``terminate()``
and ``kill()``.  Underneath:

* the child is a :func:`pidsafe.spawn` child, held by its pidfd from birth;
* its exit is watched by the event loop itself: a small task awaits
  :meth:`Process.wait_async`, which registers (a duplicate of) the pidfd
  with ``loop.add_reader()`` (a pidfd polls readable once the process has
  exited) and reaps through it.  No thread, no ``SIGCHLD`` handler, no
  child watcher, no ``waitpid``: any loop with ``add_reader`` works
  (``SelectorEventLoop``, uvloop), in the main thread or any other;
* the pipes go to the loop with ``connect_read_pipe()`` and
  ``connect_write_pipe()``, as asyncio's own transports do;
* signals go through the pidfd, never ``kill(pid)``.

Differences from :mod:`asyncio.subprocess`, on purpose:

* ``wait()`` returns once the process has exited, whatever its pipes do (a
  grandchild holding stdout open does not hold ``wait()`` up); Popen,
  trio and uvloop do the same, and CPython's asyncio is moving there.
* ``communicate()`` closes stdin even without ``input`` (as Popen, and
  asyncio from 3.12), and is resumable: after a cancellation, calling it
  again (without ``input``) goes on, and no byte read so far is lost.

Cancellation never loses the child.  Cancelling ``wait()`` or
``communicate()`` cancels only that await: the child keeps running and is
still owned (``kill()`` and ``wait()`` work as before), and the watcher
reaps it whenever it exits.  A process whose loop ends before it exits is
still held by its pidfd: when the handle is dropped it is reaped by a later
``spawn()`` (with a ``ResourceWarning``), as a dropped :class:`Process` is.
"""

from __future__ import annotations

import asyncio
import errno

from ._spawn import spawn
from ._undo import discard

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple, Union

    from ._process import Process

#: asyncio's default buffer limit of a StreamReader (asyncio.streams._DEFAULT_LIMIT).
DEFAULT_LIMIT = 2 ** 16


class AsyncProcess:
    """A child for asyncio, like ``asyncio.subprocess.Process``; see the module docstring.

    Attributes:
        pid: the child's pid (for display: it is never used to signal or wait).
        args: the program and its arguments, as given.
        stdin: a ``StreamWriter`` when ``stdin=PIPE``, else ``None``.
        stdout, stderr: ``StreamReader``\\ s when ``PIPE``, else ``None``.
    """

    def __init__(self, process: Process, loop: asyncio.AbstractEventLoop,
                 stdin: Optional[asyncio.StreamWriter], stdout: Optional[asyncio.StreamReader],
                 stderr: Optional[asyncio.StreamReader], limit: int = DEFAULT_LIMIT) -> None:
        # The transports own the pipe files now (and close them at EOF): the
        # handle must not close an fd the loop still watches.
        process.stdin = process.stdout = process.stderr = None
        self._process = process
        self._loop = loop
        self.pid = process.pid
        self.args = process.args
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._limit = limit
        self._communicating = False
        self._output: Dict[int, List[bytes]] = {1: [], 2: []}
        self._watcher = loop.create_task(self._watch())
        self._watcher.add_done_callback(_retrieve)

    def __repr__(self) -> str:
        return f"<pidsafe.AsyncProcess pid={self.pid} returncode={self.returncode}>"

    async def _watch(self) -> int:
        """Await the exit through the pidfd, reap, then close the pidfd."""
        code = await self._process.wait_async()
        self._process.close()   # reaped: the pidfd holds nothing any more
        return code

    @property
    def returncode(self) -> Optional[int]:
        """The return code (``-N``: killed by signal ``N``) once the process has
        exited, else ``None``."""
        p = self._process
        if p.returncode is None and not p.closed and p.poll() is not None:
            p.close()   # reaped here: the pidfd holds nothing any more
        return p.returncode

    async def wait(self) -> int:
        """Wait for the process to exit; its return code.

        Cancelling the ``wait()`` leaves the process running, still owned.

        Raises:
            pidsafe.UnsupportedError: another waiter reaped the process and
                the kernel keeps no status (before Linux 6.15).
        """
        return await asyncio.shield(self._watcher)

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` through the pidfd (``pidfd_send_signal(2)``).

        Raises:
            ProcessLookupError: the process has exited (as asyncio's).
        """
        if self.returncode is not None:
            raise ProcessLookupError(errno.ESRCH, f"process {self.pid} has exited")
        self._process.send_signal(sig)

    def terminate(self) -> None:
        """Send ``SIGTERM`` through the pidfd."""
        import signal

        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send ``SIGKILL`` through the pidfd."""
        import signal

        self.send_signal(signal.SIGKILL)

    async def communicate(self, input: Optional[bytes] = None
                          ) -> Tuple[Optional[bytes], Optional[bytes]]:
        """Send ``input``, read stdout and stderr to EOF, wait for the exit.

        stdin is closed once ``input`` is sent (or at once without it).  If
        the call is cancelled, the process keeps running; call again
        (without ``input``) to go on: nothing sent or read so far is lost.

        Returns:
            ``(stdout, stderr)``: bytes for each stream that is a pipe.

        Raises:
            ValueError: ``input`` after communication began.
        """
        if self._communicating and input:
            raise ValueError("Cannot send input after starting communication")
        first, self._communicating = not self._communicating, True
        stdin = self._feed_stdin(input if first else None)
        stdout = self._read_all(1, self.stdout)
        stderr = self._read_all(2, self.stderr)
        _, out, err = await asyncio.gather(stdin, stdout, stderr)
        await self.wait()
        return out, err

    async def _feed_stdin(self, input: Optional[bytes]) -> None:
        w = self.stdin
        if w is None:
            return
        if input:
            w.write(input)   # into the transport's buffer at once: never sent twice
        try:
            await w.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass   # the child closed its stdin: what asyncio and Popen do too
        w.close()

    async def _read_all(self, fd: int, stream: Optional[asyncio.StreamReader]) -> Optional[bytes]:
        if stream is None:
            return None
        sink = self._output[fd]
        while True:
            # read() takes data off the buffer only as it returns, and the
            # append follows at once: a cancellation loses no chunk.
            chunk = await stream.read(self._limit)
            if not chunk:
                return b"".join(sink)
            sink.append(chunk)


def _retrieve(task: asyncio.Task[int]) -> None:
    """Mark a watcher's exception retrieved: whoever awaits ``wait()`` gets it."""
    if not task.cancelled():
        task.exception()


async def create_subprocess_exec(program: Any, *args: Any, stdin: Any = None,
                                 stdout: Any = None, stderr: Any = None,
                                 limit: int = DEFAULT_LIMIT,
                                 **spawn_kwargs: Any) -> AsyncProcess:
    """Start ``program`` with ``args`` for asyncio; like ``asyncio.create_subprocess_exec``.

    Args:
        program, *args: the program and its arguments.
        stdin, stdout, stderr: ``PIPE`` (a stream), ``DEVNULL``, ``STDOUT``
            (stderr only), an fd, a file object, or ``None`` (inherit).
        limit: the buffer limit of the ``StreamReader``\\ s.
        **spawn_kwargs: what :func:`pidsafe.spawn` takes (``env``, ``cwd``,
            ``pass_fds``, ``uidmap`` ...), but no text mode, as asyncio.

    Returns:
        An :class:`AsyncProcess`.

    Raises:
        ValueError: text mode, or a ``bufsize`` other than 0.
        OSError, ...: what :func:`pidsafe.spawn` raises.
    """
    loop = asyncio.get_running_loop()
    _no_text(spawn_kwargs)
    p = spawn([program, *args], stdin=stdin, stdout=stdout, stderr=stderr, bufsize=0,
              **spawn_kwargs)
    return await _connect(p, loop, limit)


async def create_subprocess_shell(cmd: Union[str, bytes], stdin: Any = None,
                                  stdout: Any = None, stderr: Any = None,
                                  limit: int = DEFAULT_LIMIT,
                                  **spawn_kwargs: Any) -> AsyncProcess:
    """Run ``cmd`` with ``/bin/sh -c``; like ``asyncio.create_subprocess_shell``.

    See :func:`create_subprocess_exec`.  The shell is the child (its pid,
    its return code).
    """
    if not isinstance(cmd, (str, bytes)):
        raise TypeError(f"cmd must be a str or bytes, not {type(cmd).__name__}")
    return await create_subprocess_exec("/bin/sh", "-c", cmd, stdin=stdin, stdout=stdout,
                                        stderr=stderr, limit=limit, **spawn_kwargs)


def _no_text(kwargs: Dict[str, Any]) -> None:
    """asyncio's checks: its streams carry bytes."""
    if kwargs.pop("universal_newlines", None):
        raise ValueError("universal_newlines must be False")
    if kwargs.pop("text", None):
        raise ValueError("text must be False")
    for name in ("encoding", "errors"):
        if kwargs.pop(name, None) is not None:
            raise ValueError(f"{name} must be None")
    if kwargs.pop("bufsize", 0) != 0:
        raise ValueError("bufsize must be 0")


async def _connect(p: Process, loop: asyncio.AbstractEventLoop, limit: int) -> AsyncProcess:
    """Hand ``p``'s pipes to the loop; on any failure (cancellation included)
    close what was made, kill and reap ``p``."""
    transports: List[asyncio.BaseTransport] = []
    try:
        readers: List[Optional[asyncio.StreamReader]] = []
        for f in (p.stdout, p.stderr):
            reader = None
            if f is not None:
                reader = asyncio.StreamReader(limit=limit, loop=loop)
                rp = asyncio.StreamReaderProtocol(reader, loop=loop)
                rt, _ = await loop.connect_read_pipe(lambda: rp, f)
                transports.append(rt)
            readers.append(reader)
        writer = None
        if p.stdin is not None:
            # A protocol without a reader: drain() and wait_closed() only.
            wp = asyncio.StreamReaderProtocol(None, loop=loop)  # type: ignore[arg-type]
            wt, _ = await loop.connect_write_pipe(lambda: wp, p.stdin)
            transports.append(wt)
            writer = asyncio.StreamWriter(wt, wp, None, loop)
        proc = AsyncProcess(p, loop, writer, readers[0], readers[1], limit)
    except BaseException:
        for t in transports:
            t.close()   # takes its fd off the loop now; the pipe file closes below
        discard(p)
        raise
    return proc


__all__ = ["AsyncProcess", "create_subprocess_exec", "create_subprocess_shell"]
