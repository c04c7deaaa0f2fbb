"""Container: an OCI container created in-process, its init held by a pidfd.

The ``NewContainer`` of containerd's runc shim, with pidfds (:mod:`._create`).
A container owns its init (:class:`._init_handle.InitHandle`), its recorded
state (:class:`._recorded_state.RecordedState`), its execs
(:class:`._container_exec.Execs`) and the operations on its cgroup
(:class:`._container_cgroup.CgroupControl`); start, kill and delete are
:mod:`._lifecycle`'s steps.
"""

from __future__ import annotations

import os

from .. import _lite
from ..errors import ContainerLookupError
from ..state import StateFile
from . import _lifecycle
from ._container_cgroup import CgroupControl
from ._container_exec import Execs, container_pids, exec_spec, wait_init
from ._init_handle import InitHandle
from ._record import ContainerRecord, find_id
from ._recorded_state import RecordedState

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

    # Only for mypy: pidsafe-runc's start, state, kill and delete must not pay
    # for create's imports, nor `delete --force` of a container that is gone
    # even for the process layer (tests/cli/test_runc_imports.py).
    from .._fd import OwnedFd
    from ..process import Process
    from ..mount import Mount
    from .cgroup import Cgroup
    from .config import ProcessSpec, Spec, User
    from ._console import ConsoleSocket


class Container:
    """One container under a state directory.  See :meth:`create` and :meth:`load`.

    A handle belongs to the process that made it: in a child of
    ``os.fork()`` every method but :meth:`close` raises ``ValueError`` (as
    :class:`pidsafe.Process` does), never reading init's pidfd, which the
    child cannot use, as "init is gone".  The child loads its own handle.
    """

    def __init__(self, state_dir: str, container_id: str, record: ContainerRecord,
                 init: Optional[Process], status_fd: Optional[OwnedFd] = None,
                 reaper: Any = None, spec: Optional[Spec] = None) -> None:
        self.id = container_id
        self.state_dir = state_dir
        self._init = InitHandle(container_id, init, status_fd)
        self._recorded = RecordedState(state_dir, container_id, record, spec)
        self._reaper = reaper
        self._execs = Execs(container_id)
        self._cgroup_control = CgroupControl(self._recorded, self._init.alive)

    @classmethod
    def create(cls, container_id: str, bundle: "str | os.PathLike[str]", *, state_dir: str,
               rootfs_mounts: Optional[Sequence[Mount]] = None, stdin: Any = None,
               stdout: Any = None, stderr: Any = None, reaper: Any = None,
               on_created: Optional[Callable[["Container"], None]] = None,
               preserve_fds: int = 0,
               console_socket: Optional[ConsoleSocket] = None,
               strict: bool = False) -> "Container":
        """Create a container from the OCI bundle ``bundle``; its program waits for start().

        Args:
            rootfs_mounts: containerd's form (``CreateTaskRequest.Rootfs``):
                targets relative to the rootfs, ``""`` for the rootfs
                itself.  Mounted (idmapped where mapped) before init exists,
                unmounted by delete().  Default: the bundle's ``root.path``
                as it is.
            stdin, stdout, stderr: as for :func:`pidsafe.spawn`.  With PIPE,
                the pipes are on :meth:`process` (``.stdin``...).
            reaper: a :class:`pidsafe.Reaper`; init is watched by it, so its
                exit reaches the reaper's subscribers.
            on_created: called with the container before init is registered
                with ``reaper``: publish "created" there, and no exit of init
                can reach the reaper's subscribers before it.
            preserve_fds: this process's fds 3 .. 3+N-1 are open in the
                container's program at the same numbers (runc's
                ``--preserve-fds``); each must be open (``EBADF`` otherwise).
            console_socket: with ``process.terminal`` (and only then), where
                the pty master goes: a socket path, or a connected AF_UNIX
                stream socket (e.g. one end of ``socket.socketpair()``;
                :func:`pidsafe.receive_terminal` on the other).  It has been
                sent when create() returns; the process has the pty as its
                stdio, controlling terminal and /dev/console.  No pidsafe
                process keeps the master.
            strict: refuse a config.json with a property pidsafe would
                ignore (``ConfigError`` naming its JSON path) instead of
                issuing an :class:`pidsafe.IgnoredConfigWarning` for each:
                a misspelt ``linux.namespace`` must not run a container in
                the host's namespaces unnoticed.

        Raises:
            ConfigError, UnsupportedConfigError: config.json is bad or asks
                for what pidsafe does not do (its JSON path is named).
            ContainerStateError: a container with this id exists.
            ContainerError: a step inside the container failed (the config
                field and the path are named); nothing is left behind.
            MountError: a rootfs mount failed; nothing is left behind.
            PrivilegeError: the caller is not root (lacks ``CAP_SYS_ADMIN``);
                nothing was made.
        """
        from ._create import create_container

        return create_container(cls, container_id, bundle, state_dir, rootfs_mounts or (),
                                (stdin, stdout, stderr), reaper, on_created, preserve_fds,
                                console_socket, strict)

    @staticmethod
    def list(state_dir: str) -> List[str]:
        """The ids of the containers under ``state_dir``."""
        return StateFile.list(state_dir)

    @classmethod
    def load(cls, state_dir: str, container_id: str, *, prefix: bool = False) -> "Container":
        """The container whose id is ``container_id``.

        Init is turned back into a pidfd with open-then-prove
        (:class:`pidsafe.ProcessIdentity`); a pid from the file is never
        trusted bare.  A container whose init is gone loads as stopped.

        Args:
            prefix: also accept a prefix of exactly one id (an exact id
                still wins).  A convenience for people typing ids; a program
                that names a container passes its id, and must not reach
                ``web2`` when ``web`` is gone, so it is off by default.

        Raises:
            ContainerLookupError: no such container, or (``prefix``) the
                prefix matches several (they are named).
            StateError: ``container_id`` is not a valid id, or its state is
                malformed.
        """
        cid = find_id(state_dir, container_id) if prefix else container_id
        try:
            record = ContainerRecord.load(StateFile(state_dir, cid))
        except FileNotFoundError:
            raise ContainerLookupError(f"no container {cid!r} in {state_dir}") from None
        return cls(state_dir, cid, record, record.open_init())

    # -- state ---------------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """Init's pid while it exists (as seen from here)."""
        return self._init.pid

    def process(self) -> Optional[Process]:
        """Init's :class:`Process` (pipes included), or None if it is gone."""
        self._init.check_owner()
        return self._init.process

    def status(self) -> str:
        """``creating``, ``created``, ``running``, ``paused`` or ``stopped``.

        ``paused``: the container's cgroup is frozen (:meth:`pause`), as
        runc reports it.
        """
        self._init.check_owner()
        return self._recorded.status(self._init.alive)

    def state(self) -> Dict[str, Any]:
        """The OCI state: ociVersion, id, status, pid, bundle, annotations."""
        return self._recorded.oci_state(self.status(), self._init.pid)

    def spec(self) -> Spec:
        """The config the container was created with (later edits of the bundle do not count)."""
        return self._recorded.spec()

    def has_hooks(self, *kinds: str) -> bool:
        """Whether config.json has hooks of these kinds (``"poststop"``...), or of
        any kind if none is named; read from the state, nothing parsed."""
        return self._recorded.record.has_hooks(*kinds)

    @property
    def rootfs(self) -> str:
        """The rootfs path on the host."""
        return self._recorded.record.rootfs

    @property
    def created(self) -> float:
        """When create() began, as a Unix time."""
        return float(self._recorded.record.created)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Let the program run: open the gate, then learn whether its exec worked.

        The config's hooks run as runtime-spec's lifecycle says: the
        ``startContainer`` hooks in the container before the gate opens (a
        failure kills init, deletes the container, runs the ``poststop``
        hooks and raises); with ``poststart`` hooks, start waits until the
        program has been executed, then runs them (a failure is logged as
        a warning on the ``pidsafe.container`` logger).

        Raises:
            ContainerStateError: not in the created state.
            ContainerError: the program could not be executed (only seen by
                the process that created the container).
            HookError: a ``startContainer`` hook failed; the container is gone.
        """
        _lifecycle.start(self._init, self._recorded)

    def kill(self, sig: int = _lite.SIGTERM, all: bool = False) -> None:
        """Signal init through its pidfd (never by pid).

        Raises:
            ContainerStateError: init is gone.
        """
        _lifecycle.kill(self._init, self._recorded, sig, all)

    def wait(self, timeout: Optional[float] = None) -> int:
        """Init's exit status (minus the signal number if killed).

        The execs of this handle that exit meanwhile are reaped (their
        handles report their status): the kernel completes init's exit only
        once they are.

        Raises:
            ContainerStateError: no init to wait for.
            TimeoutExpired: ``timeout`` passed first.
        """
        return wait_init(self._init.waited(), self._execs, self._reaper, timeout)

    async def wait_async(self) -> int:
        """:meth:`wait` for asyncio."""
        return await self._init.waited().wait_async()

    def delete(self, force: bool = False) -> None:
        """Remove the container: unmount its rootfs mounts, remove its state.

        Idempotent: deleting a deleted container does nothing.

        Raises:
            ContainerStateError: it is running (or created) and not ``force``.
            ValueError: the handle came through ``os.fork()`` (load one).
        """
        _lifecycle.delete(self._init, self._recorded, self._execs, self._reaper, force)

    def close(self) -> None:
        """Close this handle's fds (the container itself is left as it is)."""
        self._init.close()

    def __repr__(self) -> str:
        if self._init.forked:
            return f"<pidsafe.Container {self.id} (the parent's handle, through fork())>"
        return f"<pidsafe.Container {self.id} {self.status()}>"

    # -- processes in the container ------------------------------------------------------

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
        process = exec_spec(self.spec, args, env, cwd, user, terminal, console_size)
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
        self._init.check_owner()
        return self._execs.start(
            exec_id, process, ready=lambda: _lifecycle.exec_ready(self._init),
            not_paused=lambda: _lifecycle.exec_not_paused(self._recorded),
            spec=self.spec, cgroup=self._recorded.exec_cgroup(), reaper=self._reaper,
            stdio=(stdin, stdout, stderr), on_started=on_started, preserve_fds=preserve_fds,
            console_socket=console_socket)

    def pids(self) -> List[int]:
        """Host pids of the container's processes (those in init's pid namespace).

        Without a pid namespace of its own, init and its descendants.
        """
        self._init.check_owner()
        init = self._init.process if self._init.alive() else None
        return container_pids(init, self.spec, self._recorded.cgroup())

    def release_exec(self, exec_id: str) -> None:
        """Forget ``exec_id``: it may be used again, and this handle no longer
        refers to its process.

        For a caller that reuses exec ids (containerd's shim: an exec id is
        free again once its process is deleted), or runs many execs over a
        long-lived container.  Call it once the process has exited (or been
        killed); a release of an unknown id does nothing.
        """
        self._init.check_owner()
        self._execs.release(exec_id)

    # -- its cgroup ----------------------------------------------------------------------

    def cgroup(self) -> Optional[Cgroup]:
        """The container's :class:`pidsafe.container.Cgroup` (its directories, usage,
        freezer), or None for a container that has none.

        A new handle on each call, loaded from the container's state: read
        its paths (``v1_paths``, ``v2_path``) and figures (``stats()``); to
        change the container's limits use :meth:`update`.
        """
        self._init.check_owner()
        return self._recorded.cgroup()

    def pause(self, timeout: float = 10.0) -> None:
        """Freeze every process of the container (its cgroup's freezer).

        Returns once the kernel reports the cgroup frozen; :meth:`status`
        then says ``paused``.  On timeout the cgroup is thawed again.

        Raises:
            ContainerStateError: not created or running (paused, stopped).
            CgroupError: no freezer, or the freeze failed or timed out.
        """
        self._init.check_owner()
        self._recorded.keep(self._cgroup_control.pause(timeout))

    def resume(self) -> None:
        """Thaw a paused container.

        Raises:
            ContainerStateError: it is not paused.
            CgroupError: the thaw failed.
        """
        self._init.check_owner()
        self._recorded.keep(self._cgroup_control.resume())

    def update(self, resources: Dict[str, Any]) -> None:
        """Change the cgroup limits of a live container (``runc update``).

        Args:
            resources: a ``linux.resources`` object as config.json spells
                it (``{"memory": {"limit": ...}, "pids": {"limit": ...}}``).
                Only the fields given change; ``devices`` are left as they
                were created (as runc does).  The new values are also kept
                in the container's recorded config.

        Raises:
            ConfigError, UnsupportedConfigError: a bad or unsupported field
                (named as ``linux.resources....``).
            ContainerStateError: the container is stopped.
            CgroupError: a write failed.  Whenever update raises, the
                cgroup files and the record are as they were.

        Warns:
            IgnoredConfigWarning: for each property of ``resources`` that
                runtime-spec does not define (ignored).
        """
        self._init.check_owner()
        from .config import check_ignored, ignored_properties

        check_ignored(ignored_properties(resources, "linux.resources"))
        self._recorded.keep(self._cgroup_control.update(resources), config_changed=True)
