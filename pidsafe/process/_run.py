"""run(): ``subprocess.run`` on top of :func:`pidsafe.spawn`.

Same arguments, same result, same exceptions as the standard library's:
a ``CompletedProcess``; ``check=True`` raises
:class:`pidsafe.CalledProcessError` (a ``subprocess.CalledProcessError``);
``timeout`` raises :class:`pidsafe.TimeoutExpired` (a
``subprocess.TimeoutExpired``) carrying the output read so far.  What
differs is underneath: the child is held by its pidfd from birth, killed
through it and reaped through it.

Whatever ends a run early (a timeout, ``KeyboardInterrupt``, any exception
a signal handler raises, an error while sending input) kills the child
with ``SIGKILL`` and reaps it before the exception leaves ``run()``: no
zombie, no fd, no pipe is left behind.  That undo (:func:`discard`) runs
in one critical section, so a second signal cannot cut it short; the
child, once killed, exits at once.
"""

from __future__ import annotations

import subprocess

from .. import errors
from ._spawn import PIPE, spawn
from ._undo import discard

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Optional

    from ._process import Process



class CompletedProcess(subprocess.CompletedProcess):  # type: ignore[type-arg]
    """What :func:`pidsafe.run` returns: a ``subprocess.CompletedProcess``.

    ``args``, ``returncode`` (``-N``: killed by signal ``N``), ``stdout``
    and ``stderr`` (bytes, str in text mode, or ``None`` when not captured).
    :meth:`check_returncode` raises :class:`pidsafe.CalledProcessError`.
    """

    def check_returncode(self) -> None:
        """Raise :class:`pidsafe.CalledProcessError` if ``returncode`` is not 0."""
        if self.returncode:
            raise errors.CalledProcessError(self.returncode, self.args, self.stdout,
                                            self.stderr)


def run(args: Any, *, input: Any = None, capture_output: bool = False,
        timeout: Optional[float] = None, check: bool = False,
        **spawn_kwargs: Any) -> CompletedProcess:
    """Run a program, wait for it, return a :class:`CompletedProcess`; like ``subprocess.run``.

    Args:
        args: as :func:`pidsafe.spawn`'s.
        input: sent to the program's stdin (which becomes a pipe): bytes, or
            str in text mode.  Not with ``stdin=``.
        capture_output: ``stdout=PIPE, stderr=PIPE``.  Not with ``stdout=``
            or ``stderr=``.
        timeout: seconds for the whole run.  When it expires the child is
            killed through its pidfd and reaped, and
            :class:`pidsafe.TimeoutExpired` is raised with the output read
            so far (bytes, as ``subprocess`` gives it, even in text mode).
        check: raise :class:`pidsafe.CalledProcessError` for a non-zero
            return code.
        **spawn_kwargs: anything :func:`pidsafe.spawn` takes: ``stdin``,
            ``stdout``, ``stderr``, ``text``, ``encoding``, ``errors``,
            ``universal_newlines``, ``env``, ``cwd``, ``uidmap`` ...

    Returns:
        ``CompletedProcess(args, returncode, stdout, stderr)``.

    Raises:
        pidsafe.CalledProcessError: ``check`` and the program failed.
        pidsafe.TimeoutExpired: the program ran past ``timeout``; it has
            been killed and reaped.
        ValueError: ``input`` with ``stdin``, or ``capture_output`` with
            ``stdout``/``stderr``; nothing was started.
        OSError, ...: what :func:`pidsafe.spawn` raises.
    """
    if input is not None:
        if spawn_kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        spawn_kwargs["stdin"] = PIPE
    if capture_output:
        if spawn_kwargs.get("stdout") is not None or spawn_kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        spawn_kwargs["stdout"] = spawn_kwargs["stderr"] = PIPE
    p: Optional[Process] = None
    try:
        p = spawn(args, **spawn_kwargs)
        stdout, stderr = p.communicate(input, timeout=timeout)
        returncode = p.wait()
    except BaseException:
        if p is not None:
            discard(p)   # kill through the pidfd, reap, close; never raises
        raise
    p.close()
    if check and returncode:
        raise errors.CalledProcessError(returncode, p.args, stdout, stderr)
    return CompletedProcess(p.args, returncode, stdout, stderr)

