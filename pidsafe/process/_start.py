"""The one child-start path: a :class:`pidsafe._sys.ChildSpec` -> a :class:`Process`.

:func:`start_process` is how pidsafe starts every child: ``spawn()``, a
container's init and the pidsafe-init an exec clones.  It makes the
child's error pipe if the child needs one, clones (:func:`start_child`,
the only caller of ``_sys.spawn``), decodes the child's ``{stage, errno}``
record (from our memory, which the spawn child shares, or from the pipe),
reaps a child that failed and raises its error, or hands the child out as
a :class:`Process`.

A spec with a helper (a credential change) runs the helper's protocol
(:mod:`._child`, loaded only then: a container's init never needs it).
If anything fails after the clone (or a signal handler raises), the child
is killed and reaped through its pidfd before the error propagates.
"""

from __future__ import annotations

import errno
import fcntl
import os

from .. import _sys
from .._sigsafe import critical
from ..errors import UnsupportedError
from ._process import Process
from ._undo import end_child

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple
    from ..userns import IDMap


def start_child(spec: _sys.ChildSpec, maps: Optional[Tuple["IDMap", "IDMap"]] = None,
                failed: Optional[List[Tuple[int, int]]] = None) -> Tuple[int, int]:
    """Clone the child ``spec`` describes; returns ``(pid, pidfd)``.

    ``maps`` (uid, gid) are written for a child made with CLONE_NEWUSER.
    On return the child has exec'd the program or exited, its error record
    (if any) in ``failed`` (see :func:`pidsafe._sys.spawn`) and, if ``spec``
    has one, in the error pipe (with a helper, only there).

    Raises:
        OSError: clone3 failed (nothing was created).
        HelperDiedError: the child was killed and reaped before the maps of
            its new user namespace could be written.
        PermissionError, OSError: a map was refused.
    """
    helper = None
    if spec.helper is not None:
        from ._child import HelperRun   # the socket module and the helper's protocol

        helper = HelperRun()
    pidfd = -1
    try:
        with critical:
            if helper is not None:
                spec = helper.prepare(spec)
            pid, pidfd = _sys.spawn(spec, failed)
        # A signal handler that raised inside the section raises here, with
        # pidfd recorded: the except below ends the child.
        if helper is not None:
            helper.run(spec, pid, pidfd, maps)
        return pid, pidfd
    except BaseException:
        if pidfd >= 0:
            with critical:
                _sys.end_child(pidfd)
        raise
    finally:
        if helper is not None:
            with critical:
                helper.close()


def start_process(spec: _sys.ChildSpec, *, maps: Optional[Tuple["IDMap", "IDMap"]] = None,
                  args: Any = None, who: str = "", unsupported: str = "",
                  filenames: Optional[Dict[int, Any]] = None,
                  stage_errors: Optional[Dict[int, Callable[[int], BaseException]]] = None
                  ) -> Process:
    """Start the child ``spec`` describes, owned by a :class:`Process` once it has exec'd.

    Call it inside a critical section (pidsafe/_sigsafe.py): a signal
    handler's exception then comes out when the caller owns the
    :class:`Process` (or nothing is left, on failure).

    Args:
        spec: what the child does; its ``errpipe_write`` is set here when
            the child needs an error pipe (a helper; ``pdeathsig`` for pid
            1 of a new pid namespace), else the spawn child reports in our
            memory.
        maps: (uid, gid) maps of a child made with ``CLONE_NEWUSER``.
        args: the ``args`` of the :class:`Process`.
        who: names the child in a failure's message (``"container init"``).
        unsupported: without clone3 (``ENOSYS``), raise
            :class:`~pidsafe.UnsupportedError` with this detail.
        filenames: stage -> the ``filename`` of that stage's error.
        stage_errors: stage -> the error to raise, given the errno, instead
            of the stage's own ``OSError``.

    Raises:
        OSError: clone3 failed (nothing was created), or the child failed
            before its exec (the errno's own subclass, naming the stage;
            the child is reaped).
        UnsupportedError: ``ENOSYS`` from clone3, with ``unsupported``.
        HelperDiedError: see :func:`start_child`.
    """
    err_r = err_w = pidfd = pid = -1
    failures: List[Tuple[int, int]] = []
    try:
        if spec.helper is not None or (spec.pdeathsig and spec.clone_flags & _sys.CLONE_NEWPID):
            # Non-blocking read end: see _sys.read_child_error.  The write
            # end is above stdio, which the child replaces.
            err_r, err_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            if err_w <= 2:
                fd, err_w = err_w, fcntl.fcntl(err_w, fcntl.F_DUPFD_CLOEXEC, 3)
                os.close(fd)
            spec = spec.replace(errpipe_write=err_w,
                                keep_fds=tuple(sorted({*spec.keep_fds, err_w})))
        try:
            pid, pidfd = start_child(spec, maps, failures)
        except OSError as exc:
            if exc.errno == errno.ENOSYS and unsupported:
                raise UnsupportedError("clone3", unsupported) from None
            raise
        # CLONE_VFORK (and the helper's EOF): the child has exec'd, or
        # exited after storing its failure record.
        failed = failures[0] if failures else None
        if err_r >= 0:
            fd, err_w = err_w, -1
            os.close(fd)
            if failed is None:
                failed = _sys.read_child_error(err_r)
        if failed is not None:
            stage, err = failed
            # The child has exited (status 127): reap it, then raise its
            # error (a failure to reap leaves the pidfd to reap_abandoned()).
            fd, pidfd = pidfd, -1
            end_child(fd, pid)
            make = stage_errors.get(stage) if stage_errors is not None else None
            if make is not None:
                raise make(err)
            raise _sys.child_error(stage, err, filenames.get(stage) if filenames else None,
                                   who=who)
        proc = Process(pid, pidfd, args=args, child=True)
        pidfd = -1
        return proc
    except BaseException:
        if pidfd >= 0:
            # Created, but we cannot hand it out: kill and reap through the
            # pidfd, so no zombie and no fd is left behind.
            end_child(pidfd, pid)
        raise
    finally:
        if err_r >= 0:
            os.close(err_r)
        if err_w >= 0:
            os.close(err_w)
