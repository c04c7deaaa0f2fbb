"""Container: an OCI container created in-process, its init held by a pidfd.

The ``NewContainer`` of containerd's runc shim, with pidfds: lock the id
(StateFile), mount the rootfs, create init held by a pidfd from birth, set it up
inside, and roll everything back on any error.  The state file records
every resource as soon as it exists, so that ``delete(force=True)`` from
any process can undo a create that was killed half-way.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import threading
import time

from .._sigsafe import critical
from ..errors import (ContainerLookupError, ContainerStateError, HookError,
                      StaleProcessError, container_error)
from ..state import StateFile
from ._container_cgroup import CgroupMixin
from ._container_exec import ExecMixin, _console_fd

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence

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
    from .config import Spec
    from ._console import ConsoleSocket
    from .init import StartedInit

OCI_VERSION = "1.0.2"


class Container(ExecMixin, CgroupMixin):
    """One container under a state directory.  See :meth:`create` and :meth:`load`."""

    def __init__(self, state_dir: str, container_id: str, record: Dict[str, Any],
                 init: Optional[Process], status_fd: Optional[OwnedFd] = None,
                 reaper: Any = None) -> None:
        self.id = container_id
        self.state_dir = state_dir
        self._record = record
        self._init = init
        self._status = status_fd
        self._reaper = reaper
        self._spec: Optional[Spec] = None
        self._exec_lock = threading.Lock()
        self._execs: Dict[str, Optional[Process]] = {}

    # -- create ----------------------------------------------------------------

    @classmethod
    def create(cls, container_id: str, bundle: "str | os.PathLike[str]", *, state_dir: str,
               rootfs_mounts: Optional[Sequence[Mount]] = None, stdin: Any = None,
               stdout: Any = None, stderr: Any = None, reaper: Any = None,
               on_created: Optional[Callable[["Container"], None]] = None,
               preserve_fds: int = 0,
               console_socket: Optional[ConsoleSocket] = None) -> "Container":
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

        Raises:
            ConfigError, UnsupportedConfigError: config.json is bad or asks
                for what pidsafe does not do (its JSON path is named).
            ContainerStateError: a container with this id exists.
            ContainerError: a step inside the container failed (the config
                field and the path are named); nothing is left behind.
            MountError: a rootfs mount failed; nothing is left behind.
        """
        from . import _create
        from .config import read_config
        from .init import preserved_fds
        from ._records import end, undo

        preserved_fds(preserve_fds)   # bad input before anything exists
        bundle = os.path.abspath(os.fspath(bundle))
        document, spec = read_config(bundle)
        rootfs = spec.rootfs(bundle)
        mounts = list(rootfs_mounts or [])
        state = StateFile(state_dir, container_id)
        consoles: List[OwnedFd] = []
        try:
            console_fd = _console_fd(spec.process, console_socket, (stdin, stdout, stderr),
                                     consoles)
            state.lock()
        except BaseException:
            with critical:
                for sock in consoles:
                    sock.close()
            raise
        started: Optional[StartedInit] = None
        try:
            if state.exists():
                raise ContainerStateError(f"container {container_id!r} already exists in "
                                          f"{state_dir}")
            record: Dict[str, Any] = {
                "ociVersion": OCI_VERSION, "id": container_id, "bundle": bundle,
                "rootfs": rootfs, "status": "creating", "created": time.time(),
                "annotations": spec.annotation_dict(), "started": False,
                "mounts": [], "fifo": os.path.join(state_dir, f"{container_id}.fifo"),
                "init": None, "config": document,
            }
            try:
                state.save(record)
                _create._step("recorded")
                started = _create.create_locked(state, record, spec, bundle, rootfs, mounts,
                                                stdin, stdout, stderr, preserve_fds, console_fd)
                with critical:   # init has sent the master, or failed
                    for sock in consoles:
                        sock.close()
                _create._step("ready")
                record["status"] = "created"
                state.save(record)
                _create._step("saved")
                container = cls(state_dir, container_id, record, started.process,
                                started.status, reaper)
                container._spec = spec
                if on_created is not None:
                    on_created(container)
                if reaper is not None:
                    reaper.watch(started.process)
                state.unlock()
                return container
            except BaseException as exc:
                # Whatever was interrupted, nothing stays: init, mounts, state.
                with critical:
                    if started is not None:
                        end(started.process)
                        started.process.close()
                        started.status.close()
                    if not state.is_locked:
                        state.lock()
                    undo(state, record)
                if isinstance(exc, HookError):
                    # runtime-spec lifecycle: a failed create hook stops the
                    # container and continues at "destroy" (done above), then
                    # the poststop hooks.
                    from ._hooks import hook_state, run_hooks

                    run_hooks("poststop", spec.hooks.poststop,
                              hook_state(record, "stopped", None), fatal=False)
                raise
        finally:
            with critical:
                for sock in consoles:
                    sock.close()
            if state.is_locked:
                state.unlock()

    # -- lookups ---------------------------------------------------------------------

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
            StateError: ``container_id`` is not a valid id.
        """
        cid = container_id
        if prefix:
            ids = StateFile.list(state_dir)
            if container_id not in ids:
                matches = [i for i in ids if i.startswith(container_id)] if container_id else []
                if not matches:
                    raise ContainerLookupError(f"no container {container_id!r} in {state_dir}")
                if len(matches) > 1:
                    raise ContainerLookupError(f"{container_id!r} is ambiguous: it matches "
                                               + ", ".join(matches))
                cid = matches[0]
        state = StateFile(state_dir, cid)
        try:
            record = state.load()
        except FileNotFoundError:
            raise ContainerLookupError(f"no container {cid!r} in {state_dir}") from None
        init = None
        if record.get("init"):
            from ..process import ProcessIdentity

            try:
                init = ProcessIdentity.from_json(record["init"]).open()
            except StaleProcessError:
                init = None
        return cls(state_dir, cid, record, init)

    # -- state -----------------------------------------------------------------------

    @property
    def pid(self) -> Optional[int]:
        """Init's pid while it exists (as seen from here)."""
        return self._init.pid if self._init is not None else None

    def process(self) -> Optional[Process]:
        """Init's :class:`Process` (pipes included), or None if it is gone."""
        return self._init

    def status(self) -> str:
        """``creating``, ``created``, ``running``, ``paused`` or ``stopped``.

        ``paused``: the container's cgroup is frozen (:meth:`pause`), as
        runc reports it.
        """
        if self._record.get("status") == "creating":
            return "creating"
        if self._init is None or not self._alive():
            return "stopped"
        if self._frozen():
            return "paused"
        return "running" if self._record.get("started") else "created"

    def _frozen(self) -> bool:
        from .cgroup import is_paused

        return is_paused(self._record)

    def _alive(self) -> bool:
        """Whether init still runs: its pidfd turns readable when it exits.

        A zombie init (exited, not yet reaped by its parent: a shim, or our
        subreaper) is not alive: nothing in the container runs any more.
        """
        assert self._init is not None
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
        out: Dict[str, Any] = {"ociVersion": self._record.get("ociVersion", OCI_VERSION),
                               "id": self.id, "status": status,
                               "bundle": self._record.get("bundle", "")}
        if status in ("created", "running", "paused") and self._init is not None:
            out["pid"] = self._init.pid
        annotations = self._record.get("annotations")
        if annotations:
            out["annotations"] = dict(annotations)
        return out

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
        state = StateFile(self.state_dir, self.id)
        failed: Optional[HookError] = None
        with state.locked():
            record = state.load()
            self._record = record
            if self.status() != "created":
                raise ContainerStateError(f"cannot start container {self.id!r}: it is "
                                          f"{self.status()}")
            if self.has_hooks("startContainer"):
                failed = self._run_start_hooks(state, record)
            if failed is None:
                self._open_gate(record, wait_exec=self.has_hooks("poststart"))
                record["started"] = True
                state.save(record)
                with critical:
                    try:
                        os.unlink(record["fifo"])
                    except FileNotFoundError:
                        pass
        if failed is not None:
            self._close()
            self._run_poststop(record)
            raise failed
        self._check_exec()
        if self.has_hooks("poststart"):
            from ._hooks import hook_state, run_hooks

            run_hooks("poststart", self.spec().hooks.poststart,
                      hook_state(record, "running", self.pid), fatal=False)

    def has_hooks(self, *kinds: str) -> bool:
        """Whether config.json has hooks of these kinds (``"poststop"``...), or of
        any kind if none is named; read from the state, nothing parsed."""
        config = self._record.get("config")
        hooks = config.get("hooks") if isinstance(config, dict) else None
        if not isinstance(hooks, dict):
            return False
        return any(hooks.get(k) for k in (kinds or tuple(hooks)))

    def _run_start_hooks(self, state: StateFile, record: Dict[str, Any]) -> Optional[HookError]:
        """The startContainer hooks, in the container; on failure, the container destroyed."""
        from ._hooks import hook_state, run_hooks
        from ._records import end, undo

        assert self._init is not None
        try:
            run_hooks("startContainer", self.spec().hooks.start_container,
                      hook_state(record, "created", self._init.pid), fatal=True,
                      init=self._init, spec=self.spec())
        except HookError as exc:
            with critical:
                end(self._init)
                undo(state, record)
            return exc
        return None

    def _run_poststop(self, record: Dict[str, Any]) -> None:
        """runtime-spec: after the container is deleted, before delete returns; a
        failure is a warning and the other hooks still run."""
        if self.has_hooks("poststop"):
            from ._hooks import hook_state, run_hooks

            run_hooks("poststop", self.spec().hooks.poststop,
                      hook_state(record, "stopped", None), fatal=False)

    def _open_gate(self, record: Dict[str, Any], wait_exec: bool) -> None:
        """Write the byte init waits for; with ``wait_exec``, return once it has exec'd.

        Init holds the FIFO open (close-on-exec) until its execve commits,
        so the FIFO losing its last reader (POLLERR on our write end) means
        the program runs, or init is gone.
        """
        w = -1
        try:
            try:
                with critical:   # owned by the finally below before a handler can raise
                    w = os.open(record["fifo"], os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ENXIO:   # no reader: init is gone
                    raise ContainerStateError(f"container {self.id!r} is not waiting to "
                                              "start (its init is gone)") from None
                raise
            os.write(w, b"\0")
            if wait_exec and self._init is not None:
                poller = select.poll()
                poller.register(w, 0)   # POLLERR: no reader left
                poller.register(self._init.fileno(), select.POLLIN)   # init exited
                poller.poll()
        finally:
            if w >= 0:
                with critical:
                    os.close(w)

    def _check_exec(self) -> None:
        status, self._status = self._status, None
        if status is None:
            return
        from .init import OP_NAMES, OP_SECCOMP, STAGE_EXEC, read_record

        with status:
            rec = read_record(status.fileno())
        if rec is not None:
            args = self._init.args if self._init is not None else None
            prog = args[0] if args else None
            field = {STAGE_EXEC: "process.args", OP_SECCOMP: "linux.seccomp"}.get(rec.op, "")
            raise container_error(rec.err, f"container init: {OP_NAMES.get(rec.op, 'exec')}",
                                  prog, field)

    def spec(self) -> Spec:
        """The config the container was created with (later edits of the bundle do not count)."""
        if self._spec is None:
            from .config import parse_spec

            self._spec = parse_spec(self._record["config"])
        return self._spec

    @property
    def rootfs(self) -> str:
        """The rootfs path on the host."""
        return str(self._record.get("rootfs", ""))

    @property
    def created(self) -> float:
        """When create() began, as a Unix time."""
        return float(self._record.get("created", 0.0))

    def kill(self, sig: int = signal.SIGTERM, all: bool = False) -> None:
        """Signal init through its pidfd (never by pid).

        Raises:
            ContainerStateError: init is gone.
        """
        if all:
            from ._records import cgroup_of

            cg = cgroup_of(self._record)
            if cg is not None:
                cg.kill(sig)
                return
        if self._init is None or not self._alive():
            raise ContainerStateError(f"container {self.id!r} is not running")
        try:
            self._init.send_signal(sig)
        except ValueError:
            raise ContainerStateError(f"container {self.id!r} is not running") from None
        if sig == signal.SIGKILL and self._frozen():
            # In a frozen v1 cgroup even SIGKILL waits for a thaw (runc thaws too).
            from ._records import cgroup_of

            cg = cgroup_of(self._record)
            if cg is not None:
                cg.thaw()

    def wait(self, timeout: Optional[float] = None) -> int:
        """Init's exit status (minus the signal number if killed).

        Raises:
            ContainerStateError: no init to wait for.
            TimeoutExpired: ``timeout`` passed first.
        """
        if self._init is None:
            raise ContainerStateError(f"container {self.id!r} has no init to wait for")
        return self._init.wait(timeout)

    async def wait_async(self) -> int:
        """:meth:`wait` for asyncio."""
        if self._init is None:
            raise ContainerStateError(f"container {self.id!r} has no init to wait for")
        return await self._init.wait_async()

    def delete(self, force: bool = False) -> None:
        """Remove the container: unmount its rootfs mounts, remove its state.

        Idempotent: deleting a deleted container does nothing.

        Raises:
            ContainerStateError: it is running (or created) and not ``force``.
        """
        state = StateFile(self.state_dir, self.id)
        if not state.exists():   # deleted already: do not even create a lock file
            self._close()
            return
        from ._records import end, undo

        with state.locked():
            if not state.exists():
                self._close()
                return
            record = state.load()
            self._record = record
            if self._init is None and record.get("init"):
                from ..process import ProcessIdentity

                try:
                    self._init = ProcessIdentity.from_json(record["init"]).open()
                except StaleProcessError:
                    self._init = None
            if self._init is not None and self._alive():
                if not force and record.get("status") != "creating":
                    raise ContainerStateError(f"cannot delete container {self.id!r}: it is "
                                              f"{self.status()} (use force=True)")
                if self._frozen():
                    from ._records import cgroup_of

                    self._init.kill()           # a frozen v1 init dies only once thawed
                    cgroup_of(record).thaw()    # type: ignore[union-attr]
                end(self._init)
            with critical:
                undo(state, record)
        self._close()
        self._run_poststop(record)

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
        return f"<pidsafe.Container {self.id} {self.status()}>"
