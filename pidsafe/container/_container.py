"""Container: an OCI container created in-process, its init held by a pidfd.

The ``NewContainer`` of containerd's runc shim, with pidfds: lock the id
(StateFile), mount the rootfs, create init held by a pidfd from birth, set it up
inside, and roll everything back on any error (:mod:`._create`).  The state
file records every resource as soon as it exists
(:class:`._record.ContainerRecord`), so that ``delete(force=True)`` from
any process can undo a create that was killed half-way.  A container owns
its execs (:class:`._container_exec.Execs`) and the operations on its
cgroup (:class:`._container_cgroup.CgroupControl`).
"""

from __future__ import annotations

import os
import select
import signal

from .. import _log
from .._sigsafe import critical
from ..errors import ContainerLookupError, ContainerStateError, HookError
from ..state import StateFile
from ._container_cgroup import CgroupControl
from ._container_exec import Execs
from ._record import ContainerRecord, find_id

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# What only create, exec and undo need (the config parser and planner, the
# mount and cgroup layers, pidsafe-init's protocol) is imported where it is
# used: pidsafe-runc runs once per command, and start, state, kill and
# delete of a container must not pay for create's imports
# (tests/cli/test_runc_imports.py).  Even the process layer (and with it
# the compiled module) loads only once a recorded init is to be opened:
# `delete --force` of a container that is gone, which containerd runs
# after every delete, needs none of it.
if TYPE_CHECKING:
    from .._fd import OwnedFd
    from ..process import Process
    from ..mount import Mount
    from .cgroup import Cgroup
    from .config import ProcessSpec, Spec, User
    from ._console import ConsoleSocket


#: Bumped in a child of os.fork(): a handle from before belongs to the parent.
_generation = 0


def _after_fork_in_child() -> None:
    global _generation
    _generation += 1


os.register_at_fork(after_in_child=_after_fork_in_child)


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
        self._record = record
        self._init = init
        self._status = status_fd
        self._reaper = reaper
        self._spec = spec
        self._execs = Execs(container_id)
        self._cgroup_control = CgroupControl(state_dir, container_id, self._status_of)
        self._generation = _generation

    def _check_owner(self) -> None:
        """Raise ``ValueError`` in a child of fork(): the handle is the parent's."""
        if self._generation != _generation:
            raise ValueError(
                f"pidsafe.Container {self.id!r} came through fork() from the parent process, "
                f"whose handle it is: it cannot be used in the child (pid {os.getpid()}); "
                f"only close() works here: use Container.load() in the child")

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

    # -- state -----------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """Init's pid while it exists (as seen from here)."""
        return self._init.pid if self._init is not None else None

    def process(self) -> Optional[Process]:
        """Init's :class:`Process` (pipes included), or None if it is gone."""
        self._check_owner()
        return self._init

    def status(self) -> str:
        """``creating``, ``created``, ``running``, ``paused`` or ``stopped``.

        ``paused``: the container's cgroup is frozen (:meth:`pause`), as
        runc reports it.
        """
        self._check_owner()
        return self._status_of(self._record)

    def _status_of(self, record: ContainerRecord) -> str:
        if record.status == "creating":
            return "creating"
        if self._init is None or not self._alive():
            return "stopped"
        if record.frozen():
            return "paused"
        return "running" if record.started else "created"

    def _alive(self) -> bool:
        """Whether init still runs: its pidfd turns readable when it exits.

        A zombie init (exited, not yet reaped by its parent: a shim, or our
        subreaper) is not alive: nothing in the container runs any more.
        """
        assert self._init is not None
        self._check_owner()   # the child's ValueError below is not "closed"
        if self._init.returncode is not None:
            return False
        try:
            fd = self._init.fileno()
        except ValueError:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(0)

    def state(self) -> Dict[str, Any]:
        """The OCI state: ociVersion, id, status, pid, bundle, annotations."""
        status = self.status()
        out: Dict[str, Any] = {"ociVersion": self._record.oci_version, "id": self.id,
                               "status": status, "bundle": self._record.bundle}
        if status in ("created", "running", "paused") and self._init is not None:
            out["pid"] = self._init.pid
        if self._record.annotations:
            out["annotations"] = dict(self._record.annotations)
        return out

    def spec(self) -> Spec:
        """The config the container was created with (later edits of the bundle do not count)."""
        if self._spec is None:
            from .config import parse_spec

            self._spec = parse_spec(self._record.config)
        return self._spec

    def has_hooks(self, *kinds: str) -> bool:
        """Whether config.json has hooks of these kinds (``"poststop"``...), or of
        any kind if none is named; read from the state, nothing parsed."""
        return self._record.has_hooks(*kinds)

    @property
    def rootfs(self) -> str:
        """The rootfs path on the host."""
        return self._record.rootfs

    @property
    def created(self) -> float:
        """When create() began, as a Unix time."""
        return float(self._record.created)

    # -- lifecycle -------------------------------------------------------------------

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
        from ._gate import check_exec, open_gate

        self._check_owner()
        failed: Optional[HookError] = None
        state = StateFile(self.state_dir, self.id)   # one per call: one per thread
        with state.locked():
            record = self._record = ContainerRecord.load(state)
            if self.status() != "created":
                raise ContainerStateError(f"cannot start container {self.id!r}: it is "
                                          f"{self.status()}")
            if record.has_hooks("startContainer") and self._init is not None:
                from ._hooks import run_start_hooks

                failed = run_start_hooks(self.spec(), record, self._init, state)
            if failed is None:
                open_gate(record.fifo, self._init, self.id,
                          wait_exec=record.has_hooks("poststart"))
                record.started = True
                record.save(state)
                with critical:
                    _unlink(record.fifo)
                    _log.debug("container", "container %s started: init pid %s", self.id,
                               self.pid)
        if failed is not None:
            self._close()
            self._run_hooks("poststop", record.hook_state("stopped", None))
            raise failed
        status, self._status = self._status, None
        if status is not None:
            check_exec(status, self._init)
        self._run_hooks("poststart", record.hook_state("running", self.pid))

    def _run_hooks(self, kind: str, state: Dict[str, Any]) -> None:
        """The hooks of ``kind`` that run in the runtime after the fact (poststart,
        poststop): a failure is a warning and the other hooks still run."""
        if self._record.has_hooks(kind):
            from ._hooks import run_hooks

            run_hooks(kind, getattr(self.spec().hooks, kind), state, fatal=False)

    def kill(self, sig: int = signal.SIGTERM, all: bool = False) -> None:
        """Signal init through its pidfd (never by pid).

        Raises:
            ContainerStateError: init is gone.
        """
        self._check_owner()
        if all:
            cg = self._recorded_cgroup()
            if cg is not None:
                cg.kill(sig)
                return
        if self._init is None or not self._alive():
            raise ContainerStateError(f"container {self.id!r} is not running")
        try:
            self._init.send_signal(sig)
        except ValueError:
            raise ContainerStateError(f"container {self.id!r} is not running") from None
        if sig == signal.SIGKILL and self._record.frozen():
            # In a frozen v1 cgroup even SIGKILL waits for a thaw (runc thaws too).
            cg = self._recorded_cgroup()
            if cg is not None:
                cg.thaw()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Init's exit status (minus the signal number if killed).

        The execs of this handle that exit meanwhile are reaped (their
        handles report their status): the kernel completes init's exit only
        once they are.

        Raises:
            ContainerStateError: no init to wait for.
            TimeoutExpired: ``timeout`` passed first.
        """
        self._check_owner()
        if self._init is None:
            raise ContainerStateError(f"container {self.id!r} has no init to wait for")
        from ._container_exec import wait_init

        return wait_init(self._init, self._execs, self._reaper, timeout)

    async def wait_async(self) -> int:
        """:meth:`wait` for asyncio."""
        self._check_owner()
        if self._init is None:
            raise ContainerStateError(f"container {self.id!r} has no init to wait for")
        return await self._init.wait_async()

    def delete(self, force: bool = False) -> None:
        """Remove the container: unmount its rootfs mounts, remove its state.

        Idempotent: deleting a deleted container does nothing.

        Raises:
            ContainerStateError: it is running (or created) and not ``force``.
            ValueError: the handle came through ``os.fork()`` (load one).
        """
        self._check_owner()
        state = StateFile(self.state_dir, self.id)
        if not state.exists():   # deleted already: do not even create a lock file
            self._close()
            return
        from ._records import end, undo

        with state.locked():
            if not state.exists():
                self._close()
                return
            record = self._record = ContainerRecord.load(state)
            if self._init is None:
                self._init = record.open_init()
            if self._init is not None and self._alive():
                if not force and record.status != "creating":
                    raise ContainerStateError(f"cannot delete container {self.id!r}: it is "
                                              f"{self.status()} (use force=True)")
                cg = self._recorded_cgroup() if record.frozen() else None
                if cg is not None:
                    self._init.kill()   # a frozen v1 init dies only once thawed
                    cg.thaw()
                self._end_execs()
                end(self._init)
            with critical:
                undo(state, record)
                _log.debug("container", "container %s deleted from %s", self.id,
                           self.state_dir)
        self._close()
        self._run_hooks("poststop", record.hook_state("stopped", None))

    def _end_execs(self) -> None:
        """Kill init, and reap the execs of this handle as they die with it:
        until they are reaped, init's exit cannot complete."""
        assert self._init is not None
        if self._reaper is not None or not self._execs.unreaped():
            return
        from ._container_exec import wait_init
        from ._records import KILL_TIMEOUT

        try:
            self._init.kill()
        except ProcessLookupError:
            return
        wait_init(self._init, self._execs, None, KILL_TIMEOUT)

    def _close(self) -> None:
        if self._status is not None:
            self._status.close()
            self._status = None
        if self._init is not None:
            for f in (self._init.stdin, self._init.stdout, self._init.stderr):
                if f is not None:
                    f.close()
            if self._init.returncode is None and self._alive():
                return   # still running: keep the handle (delete refused or not forced)
            if self._init.returncode is None:
                try:
                    self._init.poll()
                except Exception:   # not ours to reap: the pidfd still closes below
                    pass
            self._init.close()

    def close(self) -> None:
        """Close this handle's fds (the container itself is left as it is)."""
        if self._status is not None:
            self._status.close()
            self._status = None
        if self._init is not None:
            self._init.close()

    def __repr__(self) -> str:
        if self._generation != _generation:
            return f"<pidsafe.Container {self.id} (the parent's handle, through fork())>"
        return f"<pidsafe.Container {self.id} {self.status()}>"

    # -- processes in the container --------------------------------------------------

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
        self._check_owner()
        return self._execs.start(
            exec_id, process, ready=self._running_init, spec=self.spec, cgroup=self._recorded_cgroup(),
            reaper=self._reaper, stdio=(stdin, stdout, stderr), on_started=on_started,
            preserve_fds=preserve_fds, console_socket=console_socket)

    def _running_init(self) -> Process:
        if self._init is None or not self._alive():
            raise ContainerStateError(f"container {self.id!r} is not running")
        if self._record.frozen():
            # Moved into the frozen cgroup, the process could never report back.
            raise ContainerStateError(f"cannot exec in container {self.id!r}: it is paused")
        return self._init

    def pids(self) -> List[int]:
        """Host pids of the container's processes (those in init's pid namespace).

        Without a pid namespace of its own, init and its descendants.
        """
        from ._container_exec import container_pids

        self._check_owner()
        alive = self._init is not None and self._alive()
        return container_pids(self._init if alive else None, self.spec, self._recorded_cgroup())

    def release_exec(self, exec_id: str) -> None:
        """Forget ``exec_id``: it may be used again, and this handle no longer
        refers to its process.

        For a caller that reuses exec ids (containerd's shim: an exec id is
        free again once its process is deleted), or runs many execs over a
        long-lived container.  Call it once the process has exited (or been
        killed); a release of an unknown id does nothing.
        """
        self._check_owner()
        self._execs.release(exec_id)

    # -- its cgroup ------------------------------------------------------------------

    def cgroup(self) -> Optional[Cgroup]:
        """The container's :class:`pidsafe.container.Cgroup` (its directories, usage,
        freezer), or None for a container that has none.

        A new handle on each call, loaded from the container's state: read
        its paths (``v1_paths``, ``v2_path``) and figures (``stats()``); to
        change the container's limits use :meth:`update`.
        """
        self._check_owner()
        return self._recorded_cgroup()

    def _recorded_cgroup(self) -> Optional[Cgroup]:
        from ._records import cgroup_of

        return cgroup_of(self._record)

    def pause(self, timeout: float = 10.0) -> None:
        """Freeze every process of the container (its cgroup's freezer).

        Returns once the kernel reports the cgroup frozen; :meth:`status`
        then says ``paused``.  On timeout the cgroup is thawed again.

        Raises:
            ContainerStateError: not created or running (paused, stopped).
            CgroupError: no freezer, or the freeze failed or timed out.
        """
        self._check_owner()
        self._record = self._cgroup_control.pause(timeout)

    def resume(self) -> None:
        """Thaw a paused container.

        Raises:
            ContainerStateError: it is not paused.
            CgroupError: the thaw failed.
        """
        self._check_owner()
        self._record = self._cgroup_control.resume()

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
        self._check_owner()
        from .config import check_ignored, ignored_properties

        check_ignored(ignored_properties(resources, "linux.resources"))
        self._record = self._cgroup_control.update(resources)
        self._spec = None


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
