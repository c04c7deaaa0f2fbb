"""Container: an OCI container created in-process, its init held by a pidfd.

Seed 002's ``NewContainer``, with pidfds: lock the id (StateFile, seed
001), mount the rootfs, create init held by a pidfd from birth, set it up
inside, and roll everything back on any error.  The state file records
every resource as soon as it exists, so that ``delete(force=True)`` from
any process can undo a create that was killed half-way.
"""

from __future__ import annotations

import errno
import os
import dataclasses
import select
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from .. import _sys
from .. import errors as pidsafe_errors
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import (ContainerLookupError, ContainerStateError, StaleProcessError,
                      container_error)
from ..mount._hints import note
from ..mount._mounted import Mounted
from ..mount._rootfs import mount_all
from ..mount._spec import Mount
from ..mount._unmount_all import unmount_all
from ..process._identity import ProcessIdentity
from ..process._process import Process
from ..state._statefile import StateFile
from ..userns import get_userns_fd
from ._cgroups import Cgroup
from ._config import Spec, parse_spec, read_config
from ._config_linux import DeviceRule, Resources
from ._plan import DEFAULT_DEVICES
from ._config_process import ProcessSpec, User
from ._exec import exec_into
from ._init import StartedInit, start_init
from ._plan import plan_init
from ._stdio import Stdio, make_stdio

OCI_VERSION = "1.0.2"
#: Tests: called with the name of each create step as it is reached.
_test_hook: Optional[Callable[[str], None]] = None
#: How long delete(force=True) waits for a killed init to be gone.
KILL_TIMEOUT = 10.0


def _mount_to_json(m: Mount) -> Dict[str, Any]:
    return {"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}


def _mount_from_json(d: Dict[str, Any]) -> Mount:
    return Mount(d["type"], d["source"], d["target"], d["options"])


class Container:
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
               on_created: Optional[Callable[["Container"], None]] = None) -> "Container":
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
                can reach the reaper's subscribers before it (seed 002).

        Raises:
            ConfigError, UnsupportedConfigError: config.json is bad or asks
                for what pidsafe does not do (its JSON path is named).
            ContainerStateError: a container with this id exists.
            ContainerError: a step inside the container failed (the config
                field and the path are named); nothing is left behind.
            MountError: a rootfs mount failed; nothing is left behind.
        """
        bundle = os.path.abspath(os.fspath(bundle))
        document, spec = read_config(bundle)
        rootfs = spec.rootfs(bundle)
        mounts = list(rootfs_mounts or [])
        state = StateFile(state_dir, container_id)
        state.lock()
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
                _step("recorded")
                started = cls._create_locked(state, record, spec, bundle, rootfs, mounts,
                                             stdin, stdout, stderr)
                _step("ready")
                record["status"] = "created"
                state.save(record)
                _step("saved")
                container = cls(state_dir, container_id, record, started.process,
                                started.status, reaper)
                container._spec = spec
                if on_created is not None:
                    on_created(container)
                if reaper is not None:
                    reaper.watch(started.process)
                state.unlock()
                return container
            except BaseException:
                # Whatever was interrupted, nothing stays: init, mounts, state.
                with critical:
                    if started is not None:
                        _end(started.process)
                        started.process.close()
                        started.status.close()
                    if not state.is_locked:
                        state.lock()
                    cls._undo(state, record)
                raise
        finally:
            if state.is_locked:
                state.unlock()

    @classmethod
    def _create_locked(cls, state: StateFile, record: Dict[str, Any], spec: Spec, bundle: str,
                       rootfs: str, mounts: List[Mount], stdin: Any, stdout: Any,
                       stderr: Any) -> StartedInit:
        # 1. The rootfs mounts, recorded before they are made.
        if mounts:
            parent, name = os.path.split(rootfs)
            placed = [Mount(m.type, m.source, os.path.join(name, m.target.lstrip("/")),
                            m.options) for m in mounts]
            record["mounts"] = [_mount_to_json(m) for m in placed]
            record["mountRoot"] = parent
            state.save(record)
            with critical:
                mounted = mount_all(placed, parent)
                record["mounted"] = mounted.to_dict()   # for delete: unmount by identity
            state.save(record)
            _step("mounted")
        # 2. The cgroup, recorded as soon as it exists (its paths are known then).
        with critical:
            cg = Cgroup.create(record["id"], spec.linux.cgroups_path or
                               _default_cgroup(state.root, record["id"]),
                               _with_default_devices(spec))
            record["cgroup"] = cg.to_dict()
        state.save(record)
        _step("cgroup")
        # 3. The gate: a FIFO that outlives us; init holds it read-write.
        fifo = record["fifo"]
        with critical:
            os.mkfifo(fifo, 0o600)
        _step("gate")
        fds: List[int] = []
        userns_fds: List[OwnedFd] = []   # and the cgroup fd: closed with them below
        stdio = Stdio()
        try:
            with critical:
                stdio = make_stdio(stdin, stdout, stderr)
            with critical:
                v2_fd = cg.open_v2_fd()
                if v2_fd is not None:
                    userns_fds.append(v2_fd)
            with critical:
                gate = os.open(fifo, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
                fds.append(gate)
            os.set_blocking(gate, True)
            join: Dict[str, int] = {}
            user = spec.linux.namespace("user")
            if user is not None and user.path is None:
                assert spec.linux.uid_mappings is not None
                assert spec.linux.gid_mappings is not None
                with critical:
                    userns = get_userns_fd(spec.linux.uid_mappings, spec.linux.gid_mappings,
                                           setgroups="allow")
                    userns_fds.append(userns)
                join["user"] = userns.fileno()
            for ns in spec.linux.namespaces:
                if ns.path is not None:
                    with critical:
                        fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                        fds.append(fd)
                    join[ns.type] = fd
            idmap: Dict[int, int] = {}
            for i, m in enumerate(spec.mounts):
                maps = (m.uid_mappings, m.gid_mappings)
                if maps[0] is None and ("idmap" in m.options or "ridmap" in m.options):
                    maps = (spec.linux.uid_mappings, spec.linux.gid_mappings)
                if maps[0] is not None and maps[1] is not None:
                    with critical:
                        userns = get_userns_fd(maps[0], maps[1])
                        userns_fds.append(userns)
                    idmap[i] = userns.fileno()

            def open_tree(source: str, recursive: bool, attr_set: int, attr_clr: int,
                          userns_fd: int, field: str) -> int:
                return _open_tree(fds, source, recursive, attr_set, attr_clr, userns_fd, field)

            plan = plan_init(spec, bundle, rootfs, gate_fd=gate, join_fds=join,
                             idmap_fds=idmap, open_tree=open_tree)

            def prepare(proc: Process) -> None:
                with critical:
                    record["init"] = ProcessIdentity.of(proc).to_json()
                    record["pid"] = proc.pid
                state.save(record)
                cg.add(proc, v2=v2_fd is None)   # every v1 hierarchy, before it runs
                _step("cloned")
                if spec.process.oom_score_adj is not None:
                    _write_proc(proc, "oom_score_adj", str(spec.process.oom_score_adj))

            started = start_init(plan, stdio=stdio.child,
                                 pass_fds=[*fds, *(u.fileno() for u in userns_fds)],
                                 cgroup_fd=v2_fd.fileno() if v2_fd is not None else -1,
                                 prepare=prepare,
                                 args=list(spec.process.args))
        except BaseException:
            with critical:
                stdio.close_all()   # our pipe ends too: there is no process to own them
            raise
        finally:
            with critical:
                stdio.close_child_side()
                for fd in fds:
                    os.close(fd)
                for u in userns_fds:
                    u.close()
        try:
            files = stdio.files()
            proc = started.process
            proc.stdin, proc.stdout, proc.stderr = files[0], files[1], files[2]
        except BaseException:
            with critical:
                stdio.close_all()
                _end(started.process)
                started.status.close()
            raise
        return started

    # -- lookups ---------------------------------------------------------------------

    @staticmethod
    def list(state_dir: str) -> List[str]:
        """The ids of the containers under ``state_dir``."""
        return StateFile.list(state_dir)

    @classmethod
    def load(cls, state_dir: str, id_or_prefix: str) -> "Container":
        """The container named by its id, or by a prefix of exactly one id.

        Init is turned back into a pidfd with open-then-prove
        (:class:`pidsafe.ProcessIdentity`); a pid from the file is never
        trusted bare.  A container whose init is gone loads as stopped.

        Raises:
            ContainerLookupError: no such container, or the prefix matches
                several (they are named).
        """
        ids = StateFile.list(state_dir)
        if id_or_prefix in ids:
            cid = id_or_prefix
        else:
            matches = [i for i in ids if i.startswith(id_or_prefix)] if id_or_prefix else []
            if not matches:
                raise ContainerLookupError(f"no container {id_or_prefix!r} in {state_dir}")
            if len(matches) > 1:
                raise ContainerLookupError(f"{id_or_prefix!r} is ambiguous: it matches "
                                           + ", ".join(matches))
            cid = matches[0]
        state = StateFile(state_dir, cid)
        try:
            record = state.load()
        except FileNotFoundError:
            raise ContainerLookupError(f"no container {cid!r} in {state_dir}") from None
        init = None
        if record.get("init"):
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
        """``creating``, ``created``, ``running`` or ``stopped`` (OCI's values)."""
        if self._record.get("status") == "creating":
            return "creating"
        if self._init is None or not self._alive():
            return "stopped"
        return "running" if self._record.get("started") else "created"

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
        if status in ("created", "running") and self._init is not None:
            out["pid"] = self._init.pid
        annotations = self._record.get("annotations")
        if annotations:
            out["annotations"] = dict(annotations)
        return out

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Let the program run: open the gate, then learn whether its exec worked.

        Raises:
            ContainerStateError: not in the created state.
            ContainerError: the program could not be executed (only seen by
                the process that created the container).
        """
        state = StateFile(self.state_dir, self.id)
        with state.locked():
            record = state.load()
            self._record = record
            if self.status() != "created":
                raise ContainerStateError(f"cannot start container {self.id!r}: it is "
                                          f"{self.status()}")
            try:
                w = os.open(record["fifo"], os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                if exc.errno == errno.ENXIO:   # no reader: init is gone
                    raise ContainerStateError(f"container {self.id!r} is not waiting to "
                                              "start (its init is gone)") from None
                raise
            try:
                os.write(w, b"\0")
            finally:
                os.close(w)
            record["started"] = True
            state.save(record)
            with critical:
                try:
                    os.unlink(record["fifo"])
                except FileNotFoundError:
                    pass
        self._check_exec()

    def _check_exec(self) -> None:
        status, self._status = self._status, None
        if status is None:
            return
        from ._protocol import RECORD, decode_record, OP_NAMES, STAGE_EXEC

        with status:
            data = b""
            while len(data) < RECORD.size:
                chunk = os.read(status.fileno(), RECORD.size - len(data))
                if not chunk:
                    break
                data += chunk
        rec = decode_record(data)
        if rec is not None:
            args = self._init.args if self._init is not None else None
            prog = args[0] if args else None
            raise container_error(rec.err, f"container init: {OP_NAMES.get(rec.op, 'exec')}",
                                  prog, "process.args" if rec.op == STAGE_EXEC else "")

    def spec(self) -> Spec:
        """The config the container was created with (later edits of the bundle do not count)."""
        if self._spec is None:
            self._spec = parse_spec(self._record["config"])
        return self._spec

    def exec(self, args: Sequence[str], *, exec_id: str, env: Optional[Sequence[str]] = None,
             cwd: Optional[str] = None, user: Optional[User] = None, stdin: Any = None,
             stdout: Any = None, stderr: Any = None,
             on_started: Optional[Callable[[Process], None]] = None) -> Process:
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
                strictly after (seed 002), with no lock held.

        Raises:
            ContainerStateError: the id is in use, or init is not running.
            ContainerError: the process could not be started (the field and
                path are named).
        """
        if isinstance(args, (str, bytes)) or not args:
            raise ValueError("args must be a non-empty list of strings")
        base = self.spec().process
        process = dataclasses.replace(
            base, args=tuple(args), env=tuple(env) if env is not None else base.env,
            cwd=cwd if cwd is not None else base.cwd,
            user=user if user is not None else base.user, rlimits=())
        return self.exec_process(process, exec_id=exec_id, stdin=stdin, stdout=stdout,
                                 stderr=stderr, on_started=on_started)

    def exec_process(self, process: ProcessSpec, *, exec_id: str, stdin: Any = None,
                     stdout: Any = None, stderr: Any = None,
                     on_started: Optional[Callable[[Process], None]] = None) -> Process:
        """:meth:`exec` of a whole OCI ``process`` (as ``runc exec --process`` reads it)."""
        with self._exec_lock:
            if exec_id in self._execs:
                raise ContainerStateError(f"exec id {exec_id!r} is already in use in "
                                          f"container {self.id!r}")
            self._execs[exec_id] = None
        try:
            if self._init is None or not self._alive():
                raise ContainerStateError(f"container {self.id!r} is not running")
            spec = self.spec()
            stdio = make_stdio(stdin, stdout, stderr)
            try:
                proc = exec_into(self._init, spec, process, stdio, _cgroup_of(self._record))
            except BaseException:
                with critical:
                    stdio.close_all()
                raise
            stdio.close_child_side()
            try:
                files = stdio.files()
            except BaseException:
                with critical:
                    _end(proc)
                    proc.close()
                raise
            proc.stdin, proc.stdout, proc.stderr = files[0], files[1], files[2]
            if on_started is not None:
                on_started(proc)
            if self._reaper is not None:
                self._reaper.watch(proc)
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
        cg = _cgroup_of(self._record)
        if cg is not None:
            return sorted(cg.pids())
        if self._init is None or not self._alive():
            return []
        init = self._init.pid
        try:
            own = os.stat(f"/proc/{init}/ns/pid").st_ino
            _sys.pidfd_send_signal(self._init.fileno(), 0)   # the stat was of our init
        except (FileNotFoundError, ProcessLookupError):
            return []
        has_ns = self.spec().linux.namespace("pid") is not None
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
            cg = _cgroup_of(self._record)
            if cg is not None:
                cg.kill(sig)
                return
        if self._init is None or not self._alive():
            raise ContainerStateError(f"container {self.id!r} is not running")
        try:
            self._init.send_signal(sig)
        except ValueError:
            raise ContainerStateError(f"container {self.id!r} is not running") from None

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
        with state.locked():
            if not state.exists():
                self._close()
                return
            record = state.load()
            self._record = record
            if self._init is None and record.get("init"):
                try:
                    self._init = ProcessIdentity.from_json(record["init"]).open()
                except StaleProcessError:
                    self._init = None
            if self._init is not None and self._alive():
                if not force and record.get("status") != "creating":
                    raise ContainerStateError(f"cannot delete container {self.id!r}: it is "
                                              f"{self.status()} (use force=True)")
                _end(self._init)
            with critical:
                self._undo(state, record)
        self._close()

    @staticmethod
    def _undo(state: StateFile, record: Dict[str, Any]) -> None:
        """Everything the record says exists, undone; the state destroyed last.

        Every step is tried even if an earlier one fails.  If any failed, the
        state is kept (so that a later ``delete(force=True)`` finds what is
        left) and the first error is raised, the others noted on it.
        """
        errors: List[BaseException] = []

        def step(fn: Callable[[], None]) -> None:
            try:
                fn()
            except (OSError, pidsafe_errors.Error) as exc:
                errors.append(exc)

        cg = _cgroup_of(record)
        if cg is not None:
            def remove_cgroup() -> None:
                assert cg is not None
                cg.kill(signal.SIGKILL)   # anything init left (none, with a pid namespace)
                cg.delete(timeout=KILL_TIMEOUT)

            step(remove_cgroup)
        if record.get("mounted"):
            step(lambda: unmount_all(Mounted.from_dict(record["mounted"])))
        elif record.get("mounts"):
            # Killed between recording the mounts and knowing their identity.
            step(lambda: _unmount_present([_mount_from_json(m) for m in record["mounts"]],
                                          record["mountRoot"]))
        step(lambda: _unlink_if_there(record["fifo"]))
        if errors:
            for other in errors[1:]:
                note(errors[0], f"also: {other}")
            raise errors[0]
        state.destroy()

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
                    self._init.wait(0)
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


def _unlink_if_there(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _default_cgroup(state_dir: str, container_id: str) -> str:
    """``/pidsafe/<state dir tag>-<id>`` when config.json names no cgroupsPath.

    Names on disk are identities: the same id under two state directories
    (two runtimes, two test runs) must not share a cgroup.
    """
    import hashlib

    tag = hashlib.sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]
    return f"/pidsafe/{tag}-{container_id}"


def _cgroup_of(record: Dict[str, Any]) -> Optional[Cgroup]:
    data = record.get("cgroup")
    return Cgroup.load(data) if data else None


def _with_default_devices(spec: Spec) -> Resources:
    """The device rules, plus what every container may use (as runc allows them).

    The config's rules come first; then the default devices, the config's
    own ``linux.devices``, ``/dev/pts/*`` and ``/dev/ptmx`` are allowed.
    """
    r = spec.linux.resources
    if not r.devices:
        return r
    allowed = [DeviceRule(True, "c", major, minor, "rwm") for _, major, minor in DEFAULT_DEVICES]
    allowed += [DeviceRule(True, "c", 136, None, "rwm"), DeviceRule(True, "c", 5, 2, "rwm")]
    allowed += [DeviceRule(True, "b" if d.type == "b" else "c", d.major, d.minor, "rwm")
                for d in spec.linux.devices if d.type != "p"]
    return dataclasses.replace(r, devices=r.devices + tuple(allowed))


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


def _step(name: str) -> None:
    hook = _test_hook
    if hook is not None:
        hook(name)


def _end(proc: Process) -> None:
    """SIGKILL init through its pidfd and wait until it is gone."""
    try:
        proc.kill()
    except (ProcessLookupError, ValueError):
        pass
    try:
        proc.wait(KILL_TIMEOUT)
    except ChildProcessError:  # pragma: no cover - not our child: poll its pidfd
        pass


def _open_tree(fds: List[int], source: str, recursive: bool, attr_set: int, attr_clr: int,
               userns_fd: int, field: str) -> int:
    """A detached bind of ``source`` with its attributes, for init to attach.

    Opened here, as host root in the host's mount namespace: init never
    resolves a host path (in a user namespace it could not reach root-only
    directories, and it must not be steered by the container's contents).
    """
    flags = _sys.OPEN_TREE_CLONE | _sys.OPEN_TREE_CLOEXEC
    at = _sys.AT_EMPTY_PATH
    if recursive:
        flags |= _sys.AT_RECURSIVE
        at |= _sys.AT_RECURSIVE
    try:
        with critical:
            fd = _sys.open_tree(_sys.AT_FDCWD, source, flags)
            fds.append(fd)
        if attr_set or attr_clr or userns_fd >= 0:
            _sys.mount_setattr(fd, "", at, attr_set=attr_set | (
                _sys.MOUNT_ATTR_IDMAP if userns_fd >= 0 else 0), attr_clr=attr_clr,
                userns_fd=max(userns_fd, 0), filename=source)
    except OSError as exc:
        if isinstance(exc, pidsafe_errors.ContainerError):
            raise
        raise container_error(exc.errno or errno.EIO, f"bind mount {source}", source,
                              field) from None
    return fd


def _write_proc(proc: Process, name: str, value: str) -> None:
    """Write /proc/PID/NAME of our child: open first, then prove it is ours."""
    path = f"/proc/{proc.pid}/{name}"
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        _sys.pidfd_send_signal(proc.fileno(), 0)
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _unmount_present(mounts: List[Mount], root: str) -> None:
    """unmount_all() of the rootfs mounts that are still there."""
    try:
        unmount_all(mounts, root)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
