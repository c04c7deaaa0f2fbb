"""Running OCI hooks: processes pidsafe starts, each held by a pidfd from birth.

Every hook gets the container's state (runtime-spec runtime.md, "State")
as JSON on stdin, runs ``path`` with exactly its ``args`` and ``env``, and
is SIGKILLed through its pidfd once its ``timeout`` has passed.  Its
stdin and its output are memfds, not pipes: a hook that leaves a
background child holding stdout open cannot make the runtime wait for
ever, and nothing blocks on a hook that never reads its input.

Where each runs (config.md, "POSIX-platform Hooks"):

* in the runtime's namespaces (``prestart``, ``createRuntime``,
  ``poststart``, ``poststop``): :func:`pidsafe.spawn` from here;
* in the container's namespaces (``createContainer``, ``startContainer``):
  pidsafe-init, cloned in our pid namespace, joins every namespace of init
  and forks the hook's process into its pid namespace (as exec does,
  :mod:`._exec`: nothing of ours is visible in the container while it
  holds anything of the host's), which becomes root of the container's
  user namespace if it has one, and execs ``path``.  During create this happens before pivot_root: the container's
  mount namespace still shows the runtime's tree, so ``path`` resolves as
  it does for the runtime; at start, after pivot_root, ``path`` resolves in
  the container's root.

A hook fails when it cannot be started, exits non-zero, is killed, or
times out: :class:`pidsafe.HookError`.  Whether that fails the operation
is the caller's choice (``fatal``); a non-fatal failure is logged as a
warning on the ``pidsafe.container`` logger and the next hook runs.
"""

from __future__ import annotations

import errno
import json
import os
import time
from typing import TYPE_CHECKING, Any, List, Mapping, Optional, Sequence

from .. import _log
from .._sigsafe import critical
from ..errors import ContainerError, HookError, TimeoutExpired, hook_error
from ..process import Process, discard
from ..process import spawn
from .config import Hook, Spec
from .init import (OP_EXEC, OP_EXEC_PATH, OP_SETID_ROOT, Entry, InitPlan, Op, enter,
                   enter_deadline, entry_fds, nul_list, open_entry, read_record, start_init)

if TYPE_CHECKING:
    from ..state import StateFile
    from ._record import ContainerRecord

#: How much of a failed hook's output its error message keeps (the end of it).
OUTPUT_TAIL = 4096


def run_hooks(kind: str, hooks: Sequence[Hook], state: Mapping[str, Any], *,
              fatal: bool, init: Optional[Process] = None,
              spec: Optional[Spec] = None) -> None:
    """Run ``hooks`` (the list named ``kind``) one after the other.

    Args:
        state: what each hook reads on stdin
            (:meth:`._record.ContainerRecord.hook_state`).
        fatal: raise the first failure (the rest do not run); otherwise
            log it as a warning and go on.
        init, spec: run the hooks in ``init``'s namespaces (the container
            ``spec`` says which there are).

    Raises:
        HookError: a hook failed and ``fatal``.
    """
    if not hooks:
        return
    data = json.dumps(state).encode()
    for i, hook in enumerate(hooks):
        try:
            run_hook(kind, i, hook, data, init=init, spec=spec)
        except HookError as exc:
            if fatal:
                raise
            _log.warning("container", "%s (ignored: the lifecycle goes on)", exc.strerror)


def run_create_hooks(spec: Spec, record: ContainerRecord, init: Process) -> None:
    """prestart and createRuntime here, then createContainer in init's namespaces.

    Init waits before pivot_root meanwhile (runtime-spec lifecycle steps
    3-5).  The state they read says ``created`` (the environment is made,
    step 2) and gives init's pid.

    Raises:
        HookError: the first hook that failed (the rest do not run).
    """
    state = record.hook_state("created", init.pid)
    hooks = spec.hooks
    run_hooks("prestart", hooks.prestart, state, fatal=True)
    run_hooks("createRuntime", hooks.create_runtime, state, fatal=True)
    run_hooks("createContainer", hooks.create_container, state, fatal=True, init=init,
              spec=spec)


def run_start_hooks(spec: Spec, record: ContainerRecord, init: Process,
                    state: StateFile) -> Optional[HookError]:
    """The startContainer hooks, in the container; on failure, the container destroyed.

    Returns:
        The first hook's failure (the rest did not run), once init is gone and
        the container deleted (runtime-spec: the poststop hooks follow).
    """
    from ._records import end, undo

    try:
        run_hooks("startContainer", spec.hooks.start_container,
                  record.hook_state("created", init.pid), fatal=True, init=init, spec=spec)
    except HookError as exc:
        with critical:
            end(init)
            undo(state, record)
        return exc
    return None


def run_hook(kind: str, index: int, hook: Hook, state: bytes, *,
             init: Optional[Process] = None, spec: Optional[Spec] = None) -> None:
    """Run one hook with ``state`` on its stdin and wait for it (or its timeout).

    Raises:
        HookError: it could not be started, failed, or timed out (and was
            killed); ``output`` has the end of its stdout and stderr.
    """
    deadline = None if hook.timeout is None else time.monotonic() + hook.timeout
    fds = []
    try:
        try:
            with critical:
                stdin = os.memfd_create("pidsafe-hook-state", os.MFD_CLOEXEC)
                fds.append(stdin)
            _write_all(stdin, state)
            os.lseek(stdin, 0, os.SEEK_SET)
            with critical:
                output = os.memfd_create("pidsafe-hook-output", os.MFD_CLOEXEC)
                fds.append(output)
            if init is None:
                proc = spawn(list(hook.argv), executable=hook.path, env=hook.env_dict(),
                             stdin=stdin, stdout=output, stderr=output)
            else:
                assert spec is not None
                proc = _spawn_in(init, spec, hook, (stdin, output, output),
                                 None if deadline is None else deadline - time.monotonic())
        except OSError as exc:
            if isinstance(exc, HookError):
                raise
            raise hook_error(exc.errno or errno.EIO, kind, index, hook.path) from exc
        with proc:
            try:
                timed_out = False
                try:
                    proc.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
                except TimeoutExpired:
                    timed_out = True
                    proc.kill()
                    proc.wait()
            except BaseException:
                with critical:
                    if proc.returncode is None:
                        proc.kill()
                        proc.wait()
                raise
        code = proc.returncode
        assert code is not None
        if timed_out or code != 0:
            raise hook_error(errno.ETIMEDOUT if timed_out else errno.ECHILD, kind, index,
                             hook.path, code, _tail(output))
    finally:
        with critical:
            for fd in fds:
                os.close(fd)


def plan_hook(spec: Spec, hook: Hook, entry: Entry) -> InitPlan:
    """pidsafe-init's ops for ``hook`` in the namespaces of the init ``entry`` names.

    As an exec does (:func:`pidsafe.container.init.enter`): into every
    namespace of init, then forked into its pid namespace; the hook runs as
    root of the container's user namespace if it has one.
    """
    ops, fork = enter(spec, entry)
    if fork is not None:
        ops.append(fork)
    in_userns = spec.linux.namespace("user") is not None
    if in_userns:
        ops.append(Op(OP_SETID_ROOT, (), "linux.uidMappings"))
    ops.append(Op(OP_EXEC_PATH, (hook.path,), "", hook.path))
    ops.append(Op(OP_EXEC, (nul_list(hook.argv), nul_list(hook.env)), "", hook.path))
    return InitPlan(0, tuple(ops), root_in_userns=in_userns)


def _spawn_in(init: Process, spec: Spec, hook: Hook, stdio: Any,
              timeout: Optional[float]) -> Process:
    """``hook`` started in ``init``'s namespaces; returns once it has exec'd.

    Raises:
        OSError: joining the namespaces or the exec failed (the errno says
            why); it did not start within ``timeout`` (at most the
            container-entry limit): ETIMEDOUT.
    """
    owned: List[int] = []   # init's pidfds, the fork socket
    proc: Optional[Process] = None
    deadline = enter_deadline(f"hook {hook.path}", timeout)
    try:
        entry, fork_socket = open_entry(init, spec, owned)
        try:
            started = start_init(plan_hook(spec, hook, entry), stdio=stdio,
                                 pass_fds=entry_fds(entry), args=list(hook.argv),
                                 fork_socket=fork_socket, deadline=deadline)
        except ContainerError as exc:
            raise OSError(exc.errno or errno.EIO, exc.strerror, hook.path) from None
        proc = started.process
        with started.status:
            rec = read_record(started.status.fileno(), deadline)
        if rec is not None:   # exec failed: the program is not there, or not executable
            raise OSError(rec.err or errno.EIO, os.strerror(rec.err or errno.EIO), hook.path)
    except BaseException:
        if proc is not None:
            discard(proc)
        raise
    finally:
        with critical:
            while owned:
                os.close(owned.pop())
    return proc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _tail(fd: int) -> bytes:
    """The last :data:`OUTPUT_TAIL` bytes written to the memfd ``fd``."""
    try:
        size = os.fstat(fd).st_size
        return os.pread(fd, OUTPUT_TAIL, max(size - OUTPUT_TAIL, 0))
    except OSError:
        return b""


__all__ = ["HookError", "run_hook", "run_hooks", "run_start_hooks"]
