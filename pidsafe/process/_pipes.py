"""A Process's pipes: ``communicate()``, and closing them.

Kept apart from the pidfd handling in ``_process``: nothing here touches
the pidfd; ``communicate()`` only ends with ``Process.wait()``.
"""

from __future__ import annotations

import io
import os
import select
import time

from .. import errors   # errors.TimeoutExpired: made on first use (subprocess)
from .._sigsafe import critical

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    import selectors
    from typing import IO, Any, Dict, Iterable, List, Optional, Tuple

    from ._process import Process

_PIPE_BUF = getattr(select, "PIPE_BUF", 512)


def close_pipes(files: Iterable[Optional[IO[Any]]]) -> None:
    """Close each pipe that is there; a child gone before reading its stdin is no error."""
    for f in files:
        if f is not None:
            try:
                f.close()
            except BrokenPipeError:
                pass


def _stdin_write(stdin: IO[Any], data: Any) -> None:
    try:
        if data:
            stdin.write(data)
    except BrokenPipeError:
        pass  # the child closed its stdin: what Popen does too
    try:
        stdin.close()
    except BrokenPipeError:
        pass


class Communication:
    """``Process.communicate()``: what was sent and read so far, kept across calls.

    A :class:`Process` makes one on its first ``communicate()``; after a
    :class:`pidsafe.TimeoutExpired`, or an exception a signal handler raised,
    the next call goes on where the last one stopped.  It holds no reference
    to the process (each call is given it), so a dropped handle is still
    finalised at once.
    """

    __slots__ = ("_started", "_output", "_input", "_offset")

    def __init__(self) -> None:
        self._started = False
        self._output: Dict[Any, List[bytes]] = {}
        self._input: Optional[memoryview] = None
        self._offset = 0

    def communicate(self, p: Process, input: Any,
                    timeout: Optional[float]) -> Tuple[Any, Any]:
        """Send ``input``, read stdout/stderr to EOF, wait; like ``Popen``'s.

        Returns:
            ``(stdout, stderr)``: bytes for each stream that is a pipe (str
            for a text stream, see ``_text``).
        """
        if self._started and input:
            raise ValueError("Cannot send input after starting communication")
        if (timeout is None and not self._started
                and [p.stdin, p.stdout, p.stderr].count(None) >= 2):
            out = err = None
            if p.stdin:
                _stdin_write(p.stdin, input)
            elif p.stdout:
                out = p.stdout.read()
                p.stdout.close()
            elif p.stderr:
                err = p.stderr.read()
                p.stderr.close()
            p.wait()
            return out, err
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._started:
            self._start(p, input)
        out, err = self._communicate(p, deadline, timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        p.wait(remaining)
        if type(p.stdout) is io.TextIOWrapper or type(p.stderr) is io.TextIOWrapper:
            from ._text import decode_output

            if out is not None and type(p.stdout) is io.TextIOWrapper:
                out = decode_output(p.stdout, out)
            if err is not None and type(p.stderr) is io.TextIOWrapper:
                err = decode_output(p.stderr, err)
        return out, err

    def _start(self, p: Process, input: Any) -> None:
        if input and type(p.stdin) is io.TextIOWrapper:
            from ._text import encode_input

            input = encode_input(p.stdin, input)   # as Popen: before anything is sent
        if p.stdin:
            try:
                p.stdin.flush()  # what the caller wrote itself (may block)
            except BrokenPipeError:
                pass
        # The input is taken, or stdin closed, together with marking the
        # start: a later call (after an exception) goes on from here.
        with critical:
            if self._started:
                return
            for f in (p.stdout, p.stderr):
                if f is not None:
                    self._output[f] = []
            self._offset = 0
            self._input = memoryview(input) if input and p.stdin else None
            self._started = True
            if p.stdin and not input:
                try:
                    p.stdin.close()
                except BrokenPipeError:
                    pass

    def _communicate(self, p: Process, deadline: Optional[float],
                     timeout: Optional[float]) -> Tuple[Optional[bytes], Optional[bytes]]:
        import selectors   # here: every pidsafe-runc command imports this module

        with selectors.PollSelector() as sel:
            # Input left over from a call that timed out is sent too: a
            # second call cannot pass input again, and without the rest the
            # child would wait for EOF on its stdin for ever.
            if p.stdin and self._input is not None and not p.stdin.closed:
                sel.register(p.stdin, selectors.EVENT_WRITE)
            for f in (p.stdout, p.stderr):
                if f is not None and not f.closed:
                    sel.register(f, selectors.EVENT_READ)
            while sel.get_map():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise errors.TimeoutExpired(p.args, timeout or 0,
                                                *self._partial(p, none_if_empty=True))
                for key, _ in sel.select(remaining):
                    # A write and its offset, a read and its data, are kept
                    # together: after an exception a signal handler raises,
                    # calling again goes on exactly where this call stopped.
                    with critical:
                        self._transfer(p, sel, key)
        return self._partial(p)

    def _transfer(self, p: Process, sel: selectors.BaseSelector,
                  key: selectors.SelectorKey) -> None:
        """One write of input, or one read of output, for a ready pipe."""
        if key.fileobj is p.stdin:
            assert self._input is not None and p.stdin is not None
            chunk = self._input[self._offset:self._offset + _PIPE_BUF]
            try:
                self._offset += os.write(key.fd, chunk)
            except BrokenPipeError:
                sel.unregister(key.fileobj)
                p.stdin.close()
            else:
                if self._offset >= len(self._input):
                    sel.unregister(key.fileobj)
                    p.stdin.close()
        else:
            data = os.read(key.fd, 32768)
            self._output[key.fileobj].append(data)
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    def _partial(self, p: Process, none_if_empty: bool = False
                 ) -> Tuple[Optional[bytes], Optional[bytes]]:
        """What was read so far: bytes per pipe (a ``TimeoutExpired`` gets
        ``None`` for a pipe that gave nothing yet, as ``Popen``'s does)."""
        out = err = None
        if p.stdout is not None and (any(self._output[p.stdout]) or not none_if_empty):
            out = b"".join(self._output[p.stdout])
        if p.stderr is not None and (any(self._output[p.stderr]) or not none_if_empty):
            err = b"".join(self._output[p.stderr])
        return out, err
