"""Processes in a running container: ``exec`` and ``pids``, as :class:`Container` methods.

Kept apart from the lifecycle in :mod:`._container`: the exec path loads
the config, the planner and pidsafe-init's protocol, which ``start``,
``state``, ``kill`` and ``delete`` never need (tests/cli/test_runc_imports.py).
"""

from __future__ import annotations

import os
import threading

from .._sigsafe import critical
from ..errors import ContainerStateError

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    from .._fd import OwnedFd
    from ..process import Process
    from .config import ProcessSpec, Spec, User
    from ._console import ConsoleSocket


class ExecMixin:
    """:meth:`exec`, :meth:`exec_process` and :meth:`pids` of :class:`pidsafe.Container`."""

    # The container's, set by Container.__init__.
    id: str
    _record: Dict[str, Any]
    _init: Optional[Process]
    _reaper: Any
    _exec_lock: threading.Lock
    _execs: Dict[str, Optional[Process]]

    def spec(self) -> Spec:
        raise NotImplementedError   # Container's

    def _alive(self) -> bool:
        raise NotImplementedError   # Container's

    def _frozen(self) -> bool:
        raise NotImplementedError   # Container's

    def exec(self, args: Sequence[str], *, exec_id: str, env: Optional[Sequence[str]] = None,
             cwd: Optional[str] = None, user: Optional[User] = None, stdin: Any = None,
             stdout: Any = None, stderr: Any = None,
             on_started: Optional[Callable[[Process], None]] = None,
             terminal: bool = False, console_size: Optional[Tuple[int, int]] = None,
             console_socket: Optional[ConsoleSocket] = None) -> Process:
        """Run ``args`` in the container: all of init's namespaces and cgroups.

        The process takes the container's ``process`` settings (capabilities,
        no_new_privileges, env, cwd, user) unless overridden.  Its exit
        reaches the container's reaper, if it has one.

        Args:
            exec_id: reserved atomically for the container's lifetime in
                this handle; a duplicate raises.
            env: ``NAME=VALUE`` strings (default: the container's).
            on_started: called with the process once it has exec'd and before
                it is registered with the container's reaper: publish
                "started" there, and its exit reaches the reaper's subscribers
                strictly after, with no lock held.
            terminal: give the process a pty (as ``runc exec --tty``), sent
                to ``console_socket`` (see :meth:`create`), sized
                ``console_size`` (rows, columns) if given.

        Raises:
            ConfigError: an ``env`` entry is not ``NAME=VALUE`` (nothing is started).
            ContainerStateError: the id is in use, init is not running, or the
                container is paused.
            ContainerError: the process could not be started (the field and
                path are named).
        """
        if isinstance(args, (str, bytes)) or not args:
            raise ValueError("args must be a non-empty list of strings")
        base = self.spec().process
        process = base.replace(
            args=tuple(args), env=tuple(env) if env is not None else base.env,
            cwd=cwd if cwd is not None else base.cwd,
            user=user if user is not None else base.user, rlimits=(), terminal=terminal,
            console_size=console_size)
        return self.exec_process(process, exec_id=exec_id, stdin=stdin, stdout=stdout,
                                 stderr=stderr, on_started=on_started,
                                 console_socket=console_socket)

    def exec_process(self, process: ProcessSpec, *, exec_id: str, stdin: Any = None,
                     stdout: Any = None, stderr: Any = None,
                     on_started: Optional[Callable[[Process], None]] = None,
                     preserve_fds: int = 0,
                     console_socket: Optional[ConsoleSocket] = None) -> Process:
        """:meth:`exec` of a whole OCI ``process`` (as ``runc exec --process`` reads it).

        ``preserve_fds`` as for :meth:`create`.  With ``process.terminal``, the
        pty master is sent to ``console_socket`` (see :meth:`create`).  If
        anything fails once the process exists (``on_started`` raising
        included), it is killed and reaped before the error propagates.

        Raises:
            ConfigError: a ``process.env`` entry is not ``NAME=VALUE``.
            ContainerStateError, ContainerError: as for :meth:`exec`.
        """
        from .config import check_env

        for i, item in enumerate(process.env):   # bad input before anything exists
            check_env(item, f"process.env[{i}]")
        consoles: List[OwnedFd] = []
        try:
            console_fd = _console_fd(process, console_socket, (stdin, stdout, stderr), consoles)
            return self._exec_process(process, exec_id, stdin, stdout, stderr, on_started,
                                      preserve_fds, console_fd)
        finally:
            with critical:
                for sock in consoles:
                    sock.close()

    def _exec_process(self, process: ProcessSpec, exec_id: str, stdin: Any, stdout: Any,
                      stderr: Any, on_started: Optional[Callable[[Process], None]],
                      preserve_fds: int, console_fd: int) -> Process:
        from ._exec import exec_into
        from ._records import cgroup_of, end
        from ._stdio import make_stdio

        with self._exec_lock:
            if exec_id in self._execs:
                raise ContainerStateError(f"exec id {exec_id!r} is already in use in "
                                          f"container {self.id!r}")
            self._execs[exec_id] = None
        try:
            if self._init is None or not self._alive():
                raise ContainerStateError(f"container {self.id!r} is not running")
            if self._frozen():
                # Born into the frozen cgroup, the process could never report back.
                raise ContainerStateError(f"cannot exec in container {self.id!r}: it is "
                                          "paused")
            spec = self.spec()
            stdio = make_stdio(stdin, stdout, stderr)
            try:
                proc = exec_into(self._init, spec, process, stdio, cgroup_of(self._record),
                                 preserve_fds, console_fd)
            except BaseException:
                with critical:
                    stdio.close_all()
                raise
            stdio.close_child_side()
            try:
                files = stdio.files()
            except BaseException:
                with critical:
                    end(proc)
                    proc.close()
                raise
            proc.stdin, proc.stdout, proc.stderr = files[0], files[1], files[2]
            try:
                if on_started is not None:
                    on_started(proc)
                if self._reaper is not None:
                    self._reaper.watch(proc)
            except BaseException:
                # The caller gets no handle: the process must not outlive this.
                with critical:
                    end(proc)
                    proc.close()
                raise
        except BaseException:
            with self._exec_lock:
                del self._execs[exec_id]
            raise
        with self._exec_lock:
            self._execs[exec_id] = proc
        return proc

    def pids(self) -> List[int]:
        """Host pids of the container's processes (those in init's pid namespace).

        Without a pid namespace of its own, init and its descendants.
        """
        from ._records import cgroup_of

        cg = cgroup_of(self._record)
        if cg is not None:
            return sorted(cg.pids())
        if self._init is None or not self._alive():
            return []
        from .. import _sys

        init = self._init.pid
        try:
            own = os.stat(f"/proc/{init}/ns/pid").st_ino
            _sys.pidfd_send_signal(self._init.fileno(), 0)   # the stat was of our init
        except (FileNotFoundError, ProcessLookupError):
            return []
        pid_ns = self.spec().linux.namespace("pid")
        has_ns = pid_ns is not None and pid_ns.path is None   # one of its own
        out = []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if has_ns:
                    if os.stat(f"/proc/{name}/ns/pid").st_ino == own:
                        out.append(int(name))
                elif int(name) == init or _descends(int(name), init):
                    out.append(int(name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
        return sorted(out)



def _console_fd(process: ProcessSpec, console_socket: Optional[ConsoleSocket],
                stdio: Sequence[Any], into: List[OwnedFd]) -> int:
    """:func:`._console.console_for`, whose module (and ``socket``) loads only for a terminal."""
    if not process.terminal and console_socket is None:
        return -1
    from ._console import console_for

    return console_for(process, console_socket, stdio, into)


def _descends(pid: int, ancestor: int) -> bool:
    """Whether ``pid``'s parent chain (read now from /proc) reaches ``ancestor``."""
    seen = 0
    while pid > 1 and seen < 4096:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        pid = int(stat[stat.rindex(b")") + 2:].split()[1])
        if pid == ancestor:
            return True
        seen += 1
    return False
