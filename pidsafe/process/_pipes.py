"""Pipes to a child's stdio, and communicate(), for pidsafe.Process.

Kept apart from the pidfd handling in ``_process``: nothing here touches
the pidfd; ``communicate()`` only ends with ``Process.wait()``.
"""

from __future__ import annotations

import os
import select
import time

from .. import errors   # errors.TimeoutExpired: made on first use (subprocess)
from .._sigsafe import critical

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    import selectors
    from typing import IO, Any, Dict, List, Optional, Tuple

_PIPE_BUF = getattr(select, "PIPE_BUF", 512)


class PipesMixin:
    """``stdin``/``stdout``/``stderr`` and ``communicate()``, as in ``Popen``."""

    args: Any
    stdin: Optional[IO[bytes]]
    stdout: Optional[IO[bytes]]
    stderr: Optional[IO[bytes]]

    def _init_pipes(self) -> None:
        self._communication_started = False
        self._fileobj2output: Dict[Any, List[bytes]] = {}
        self._input: Optional[memoryview] = None
        self._input_offset = 0

    def wait(self, timeout: Optional[float] = None) -> int:  # pragma: no cover
        raise NotImplementedError

    def _stdin_write(self, data: Optional[bytes]) -> None:
        assert self.stdin is not None
        try:
            if data:
                self.stdin.write(data)
        except BrokenPipeError:
            pass  # the child closed its stdin: what Popen does too
        try:
            self.stdin.close()
        except BrokenPipeError:
            pass

    def communicate(self, input: Optional[bytes] = None,
                    timeout: Optional[float] = None) -> Tuple[Optional[bytes], Optional[bytes]]:
        """Send ``input``, read stdout/stderr to EOF, wait; like ``Popen``'s.

        After a :class:`pidsafe.TimeoutExpired`, call again to go on: output
        read so far is kept.

        Returns:
            ``(stdout, stderr)``: bytes for each stream that is a pipe.
        """
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        if (timeout is None and not self._communication_started
                and [self.stdin, self.stdout, self.stderr].count(None) >= 2):
            out = err = None
            if self.stdin:
                self._stdin_write(input)
            elif self.stdout:
                out = self.stdout.read()
                self.stdout.close()
            elif self.stderr:
                err = self.stderr.read()
                self.stderr.close()
            self.wait()
            return out, err
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._communication_started:
            self._start_communication(input)
        out, err = self._communicate(deadline, timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(remaining)
        return out, err

    def _start_communication(self, input: Optional[bytes]) -> None:
        if self.stdin:
            try:
                self.stdin.flush()  # what the caller wrote itself (may block)
            except BrokenPipeError:
                pass
        # The input is taken, or stdin closed, together with marking the
        # start: a later call (after an exception) goes on from here.
        with critical:
            if self._communication_started:
                return
            for f in (self.stdout, self.stderr):
                if f is not None:
                    self._fileobj2output[f] = []
            self._input_offset = 0
            self._input = memoryview(input) if input and self.stdin else None
            self._communication_started = True
            if self.stdin and not input:
                try:
                    self.stdin.close()
                except BrokenPipeError:
                    pass

    def _communicate(self, deadline: Optional[float],
                     timeout: Optional[float]) -> Tuple[Optional[bytes], Optional[bytes]]:
        import selectors   # here: every pidsafe-runc command imports this module (issue #9)

        with selectors.PollSelector() as sel:
            # Input left over from a call that timed out is sent too: a
            # second call cannot pass input again, and without the rest the
            # child would wait for EOF on its stdin for ever.
            if self.stdin and self._input is not None and not self.stdin.closed:
                sel.register(self.stdin, selectors.EVENT_WRITE)
            for f in (self.stdout, self.stderr):
                if f is not None and not f.closed:
                    sel.register(f, selectors.EVENT_READ)
            while sel.get_map():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise errors.TimeoutExpired(self.args, timeout or 0, *self._partial())
                for key, _ in sel.select(remaining):
                    # A write and its offset, a read and its data, are kept
                    # together: after an exception a signal handler raises,
                    # calling again goes on exactly where this call stopped.
                    with critical:
                        self._transfer(sel, key)
        return self._partial()

    def _transfer(self, sel: selectors.BaseSelector, key: selectors.SelectorKey) -> None:
        """One write of input, or one read of output, for a ready pipe."""
        if key.fileobj is self.stdin:
            assert self._input is not None and self.stdin is not None
            chunk = self._input[self._input_offset:self._input_offset + _PIPE_BUF]
            try:
                self._input_offset += os.write(key.fd, chunk)
            except BrokenPipeError:
                sel.unregister(key.fileobj)
                self.stdin.close()
            else:
                if self._input_offset >= len(self._input):
                    sel.unregister(key.fileobj)
                    self.stdin.close()
        else:
            data = os.read(key.fd, 32768)
            self._fileobj2output[key.fileobj].append(data)
            if not data:
                sel.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    def _partial(self) -> Tuple[Optional[bytes], Optional[bytes]]:
        out = b"".join(self._fileobj2output[self.stdout]) if self.stdout is not None else None
        err = b"".join(self._fileobj2output[self.stderr]) if self.stderr is not None else None
        return out, err

