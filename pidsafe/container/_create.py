"""Creating a container, step by step, each resource recorded before it exists.

:meth:`pidsafe.Container.create`: the config read and checked, the id
locked, the record saved (:class:`._record.ContainerRecord`); then the
container's user namespace (an fd, which idmapped mounts with its maps
share), the rootfs mounts, the cgroup, the FIFO gate, the fds init needs
(namespaces to join, idmapped binds, the cgroup directory), the plan, and
init itself (:mod:`.init`).  Every resource is written into the
record as soon as it exists, so that ``delete(force=True)`` from any
process can undo a create that was killed at any step
(:func:`._records.undo`); a create that fails undoes it all itself.
"""

from __future__ import annotations

import os
import time

from .. import _lite, _log
from .._fd import OwnedFd
from .._sigsafe import critical, undoing
from ..errors import ContainerStateError, HookError
from ..mount import Mount
from ..process import ProcessIdentity
from ..process import Process
from ..state import StateFile
from .cgroup import Cgroup, CgroupLayout
from .config import Spec
from .init import (StartedInit, enter_deadline, plan_init, preserved_fds,
                   start_init, with_preserved)
from ._cgroup_defaults import default_cgroup, with_default_devices
from ._container_exec import console_for
from ._init_fds import check_namespace, open_namespace, open_tree as open_tree_fd, write_proc
from ._record import ContainerRecord
from ._records import end, undo
from ._stdio import Stdio, make_stdio

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type
    from ..userns import IDMap, NewUserns
    from ._console import ConsoleSocket
    from ._container import Container

#: Tests: called with the name of each create step as it is reached.
_test_hook: Optional[Callable[[str], None]] = None


def _step(name: str) -> None:
    hook = _test_hook
    if hook is not None:
        hook(name)


def _mount_to_json(m: Mount) -> Dict[str, Any]:
    return {"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}


def _place_mounts(record: ContainerRecord, mounts: List[Mount], rootfs: str) -> List[Mount]:
    """The rootfs mounts with targets under the rootfs's parent, recorded in ``record``."""
    if not mounts:
        return []
    parent, name = os.path.split(rootfs)
    placed = [Mount(m.type, m.source, os.path.join(name, m.target.lstrip("/")), m.options)
              for m in mounts]
    record.mounts = [_mount_to_json(m) for m in placed]
    record.mount_root = parent
    return placed


def create_container(cls: Type[Container], container_id: str,
                     bundle: "str | os.PathLike[str]", state_dir: str,
                     rootfs_mounts: Sequence[Mount], stdio: Sequence[Any], reaper: Any,
                     on_created: Optional[Callable[[Container], None]], preserve_fds: int,
                     console_socket: Optional[ConsoleSocket], strict: bool = False) -> Container:
    """:meth:`pidsafe.Container.create` (see there)."""
    from .config import check_ignored, read_config
    from ._privilege import require_root

    preserved_fds(preserve_fds)   # bad input before anything exists
    require_root("create a container")   # before the bundle is even read
    path = os.path.abspath(os.fspath(bundle))
    document, spec = read_config(path)
    check_ignored(spec.ignored, strict, stacklevel=3)
    rootfs = spec.rootfs(path)
    mounts = list(rootfs_mounts)
    state = StateFile(state_dir, container_id)
    consoles: List[OwnedFd] = []
    record: Optional[ContainerRecord] = None   # once set: something may exist
    started: Optional[StartedInit] = None
    rolled_back: List[bool] = []

    def roll_back(exc: BaseException) -> None:
        """Undo the create: init, mounts, cgroup, state (inside a section;
        once, however often it is called)."""
        if rolled_back:
            return
        rolled_back.append(True)
        for sock in consoles:
            sock.close()
        if record is not None:
            _log.debug("container", "container %s: create failed (%r): killing init, "
                       "undoing what was made", container_id, exc)
            if started is not None:
                _end_init(started)
            if not state.is_locked:
                state.lock()
            undo(state, record)
        if state.is_locked:
            state.unlock()

    try:
        # One section from the start, whose undo is the roll-back: whatever
        # fails (a handler raising included), the roll-back runs before any
        # handler can, so none can cut it short.  Its waits (the id's lock,
        # init, the hooks) are safe points where Ctrl-C is let through
        # (_sigsafe.interruptibly).
        with undoing(roll_back, interruptible=True):
            console_fd = console_for(spec.process, console_socket, stdio, consoles)
            state.lock()
            if state.exists():
                raise ContainerStateError(f"container {container_id!r} already exists in "
                                          f"{state_dir}")
            record = ContainerRecord(container_id, path, rootfs,
                                     os.path.join(state_dir, f"{container_id}.fifo"),
                                     document, created=time.time(),
                                     annotations=spec.annotation_dict())
            # The config is most of each of the four saves, and create
            # changes nothing in it: encoded once.
            config_json = _lite.dumps(document, sort_keys=True, compact=True)
            # The rootfs mounts are in the first save already: recorded
            # before they are made.
            placed = _place_mounts(record, mounts, rootfs)
            record.save(state, config_json)
            _step("recorded")
            started = create_locked(state, record, spec, path, rootfs, placed, stdio[0],
                                    stdio[1], stdio[2], preserve_fds, console_fd, config_json)
            for sock in consoles:   # init has sent the master, or failed
                sock.close()
            _step("ready")
            record.status = "created"
            record.save(state, config_json)
            _step("saved")
            _log.debug("container", "container %s created in %s: init pid %d",
                       container_id, state_dir, started.process.pid)
            container = cls(state_dir, container_id, record, started.process, started.status,
                            reaper, spec)
            container._recorded.remember_cgroup()   # for its execs: no file read
            if on_created is not None:
                on_created(container)
            # The handover: a handler raising at the section's end undoes
            # the whole create, and the caller, who never gets the handle,
            # is left nothing.
            if reaper is not None:
                reaper.watch(started.process)
            state.unlock()
            return container
    except BaseException as exc:
        # Rolled back in the section already, or by _sigsafe for a handler
        # raising as the section's handlers were put back; a handler that
        # ran as __exit__ returned (see _sigsafe.undoing), the container
        # made and the caller never to get it, lands here: rolled back now
        # (roll_back runs once).
        with critical:
            roll_back(exc)
        if isinstance(exc, HookError) and record is not None:
            # runtime-spec lifecycle: a failed create hook stops the
            # container and continues at "destroy" (done above), then
            # the poststop hooks.
            from ._hooks import run_hooks

            run_hooks("poststop", spec.hooks.poststop, record.hook_state("stopped", None),
                      fatal=False)
        raise


def create_locked(state: StateFile, record: ContainerRecord, spec: Spec, bundle: str,
                  rootfs: str, mounts: List[Mount], stdin: Any, stdout: Any,
                  stderr: Any, preserve_fds: int = 0, console_fd: int = -1,
                  config_json: Optional[str] = None) -> StartedInit:
    # 0. The container's own user namespace (an fd; nothing to record),
    # first: the idmapped mounts with its maps use it too, containerd's
    # rootfs among them, instead of a namespace (a helper process) each.
    # Its helper, killed once the maps are written, is reaped when init is
    # ready: dead by then, where a reap at once waits for it to die.
    made: Optional[NewUserns] = None
    user = spec.linux.namespace("user")
    if user is not None and user.path is None:
        assert spec.linux.uid_mappings is not None
        assert spec.linux.gid_mappings is not None
        from ..userns import make_userns   # its helper: only for user namespaces

        with critical:
            made = make_userns(spec.linux.uid_mappings, spec.linux.gid_mappings,
                               setgroups="allow")
    try:
        return _create_steps(state, record, spec, bundle, rootfs, mounts, stdin, stdout,
                             stderr, preserve_fds, console_fd,
                             made.userns if made is not None else None, config_json)
    finally:
        if made is not None:
            with critical:
                made.close()


def _create_steps(state: StateFile, record: ContainerRecord, spec: Spec, bundle: str,
                  rootfs: str, mounts: List[Mount], stdin: Any, stdout: Any, stderr: Any,
                  preserve_fds: int, console_fd: int, userns: Optional[OwnedFd],
                  config_json: Optional[str]) -> StartedInit:
    own_maps: Dict[Tuple[IDMap, IDMap], OwnedFd] = {}
    if userns is not None:
        assert spec.linux.uid_mappings is not None
        assert spec.linux.gid_mappings is not None
        own_maps[(spec.linux.uid_mappings, spec.linux.gid_mappings)] = userns
    # 1. The rootfs mounts (``_place_mounts``: recorded before they are
    # made).  Their identities, for delete to unmount by, are saved with
    # the cgroup: a creator killed before that leaves mounts that delete
    # finds by their recorded paths (no container process has run yet).
    if mounts:
        from ..mount import mount_all   # only for rootfs mounts (containerd's)

        assert record.mount_root is not None
        with critical:
            mounted = mount_all(mounts, record.mount_root, namespaces=own_maps)
            record.mounted = mounted.to_dict()   # for delete: unmount by identity
        _step("mounted")
    # 2. The cgroup, recorded as soon as it exists (its paths are known then).
    layout = CgroupLayout.detect()   # the host's hierarchies: for the cgroup mount too
    with critical:
        cg = Cgroup.create(record.id, spec.linux.cgroups_path or
                           default_cgroup(state.root, record.id),
                           with_default_devices(spec), layout=layout)
        record.cgroup = cg.to_dict()
    record.save(state, config_json)
    _step("cgroup")
    # 3. The gate: a FIFO that outlives us; init holds it read-write.
    fifo = record.fifo
    with critical:
        os.mkfifo(fifo, 0o600)
    _step("gate")
    fds: List[int] = []
    userns_fds: List[OwnedFd] = []   # closed below
    cgroup_fds: List[OwnedFd] = []   # for clone3 and the spawn child alone, not init
    stdio = Stdio()
    started: Optional[StartedInit] = None
    ours: List[int] = []   # never passed to init: the hooks pipe's write end, a fork socket
    try:
        with critical:
            stdio = make_stdio(stdin, stdout, stderr)
        with critical:
            v2_fd = cg.open_v2_fd()
            if v2_fd is not None:
                cgroup_fds.append(v2_fd)
        # Init joins every v1 hierarchy itself, before it execs (the
        # cheapest way in: no pid written to cgroup.procs by us).  Only the
        # spawn child writes them: they are not passed to init.  The cgroup
        # holds nobody (Cgroup.create refuses one that does), so nobody in
        # it can freeze it; one left frozen empty (a cgroupsPath named by
        # the config) is thawed first: a spawn child born frozen, which
        # shares our memory until it execs, would hold our thread.
        if cg.frozen:
            cg.thaw()
        with critical:
            tasks = cg.open_tasks_fds()
            cgroup_fds += tasks
        with critical:
            gate = os.open(fifo, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
            fds.append(gate)
        os.set_blocking(gate, True)
        join: Dict[str, int] = {}
        if userns is not None:
            join["user"] = userns.fileno()
        for i, ns in enumerate(spec.linux.namespaces):
            if ns.path is not None:
                field = f"linux.namespaces[{i}].path"
                with critical:
                    fd = open_namespace(ns.type, ns.path, field)
                    fds.append(fd)
                check_namespace(fd, ns.type, ns.path, field)
                join[ns.type] = fd
        idmap: Dict[int, int] = {}
        for i, m in enumerate(spec.mounts):
            maps = (m.uid_mappings, m.gid_mappings)
            if maps[0] is None and ("idmap" in m.options or "ridmap" in m.options):
                maps = (spec.linux.uid_mappings, spec.linux.gid_mappings)
            if maps[0] is not None and maps[1] is not None:
                mapped = own_maps.get((maps[0], maps[1]))
                if mapped is None:
                    from ..userns import get_userns_fd

                    with critical:
                        mapped = get_userns_fd(maps[0], maps[1])
                        userns_fds.append(mapped)
                idmap[i] = mapped.fileno()

        def open_tree(source: str, recursive: bool, attr_set: int, attr_clr: int,
                      userns_fd: int, field: str) -> int:
            return open_tree_fd(fds, source, recursive, attr_set, attr_clr, userns_fd, field)

        hooks_fd = hooks_go = -1
        if spec.hooks.during_create:
            with critical:
                hooks_fd, hooks_go = os.pipe2(os.O_CLOEXEC)
                fds.append(hooks_fd)
                ours.append(hooks_go)
        fork_socket = fork_fd = -1
        if "pid" in join:
            # init is forked into a pid namespace given by path (plan_init).
            import socket

            with critical:
                mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                fork_socket = mine.detach()
                ours.append(fork_socket)
                fork_fd = theirs.detach()
                fds.append(fork_fd)
        plan = plan_init(spec, bundle, rootfs, gate_fd=gate, join_fds=join,
                         idmap_fds=idmap, open_tree=open_tree, layout=layout,
                         hooks_fd=hooks_fd, console_fd=console_fd, fork_fd=fork_fd)
        if spec.linux.namespace("mount") is None:
            # init mounts in our namespace: what is under the root now stays.
            from ._shared_mounts import record as shared_mounts

            record.shared_mounts = shared_mounts(rootfs)
            record.save(state, config_json)
        kept = preserved_fds(preserve_fds)
        plan = with_preserved(plan, preserve_fds)

        def record_init(proc: Process) -> None:
            with critical:
                record.init = ProcessIdentity.of(proc).to_json()
                record.pid = proc.pid
            record.save(state, config_json)

        def prepare(proc: Process) -> None:
            # While init works through its ops; it waits at the gate before
            # anything of the container runs.
            record_init(proc)   # it joined its cgroups itself (tasks_fds), before it ran
            _step("cloned")
            if spec.process.oom_score_adj is not None:
                write_proc(proc, "oom_score_adj", str(spec.process.oom_score_adj))
            # Init has its copies of what it was passed: ours go now, while
            # it works (the hooks pipe's write end and a fork socket stay).
            with critical:
                _close_setup(stdio, fds, [], userns_fds, cgroup_fds)

        def on_hooks(proc: Process) -> None:
            from ._hooks import run_create_hooks   # only a config with hooks loads spawn()

            _step("hooks")
            run_create_hooks(spec, record, proc)
            os.write(hooks_go, b"\1")

        started = start_init(plan, stdio=stdio.child,
                             pass_fds=[*fds, *(u.fileno() for u in userns_fds),
                                       *(u.fileno() for u in own_maps.values()), *kept,
                                       *([console_fd] if console_fd >= 0 else [])],
                             cgroup_fd=v2_fd.fileno() if v2_fd is not None else -1,
                             tasks_fds=[t.fileno() for t in tasks], join_error=cg.join_error,
                             meanwhile=prepare,
                             args=list(spec.process.args),
                             on_hooks=on_hooks if hooks_fd >= 0 else None,
                             fork_socket=fork_socket,
                             on_forked=record_init if fork_socket >= 0 else None,
                             # Forked into a pod's pid namespace, init is seen
                             # by the pod's processes, which may stop it.
                             deadline=enter_deadline("create") if fork_socket >= 0 else None)
        # The handover: init's pipe ends become its handle's files, ours
        # and its fds are closed.  In the try (a finally's section could be
        # cut short as it began): a handler raising at its end lands below.
        with critical:
            _close_setup(stdio, fds, ours, userns_fds, cgroup_fds)
            files = stdio.files()
            proc = started.process
            proc.stdin, proc.stdout, proc.stderr = files[0], files[1], files[2]
    except BaseException:
        with critical:
            stdio.close_all()   # our pipe ends too: there is no process to own them
            _close_setup(stdio, fds, ours, userns_fds, cgroup_fds)
            if started is not None:
                _end_init(started)
        raise
    return started


def _end_init(started: StartedInit) -> None:
    """Kill and reap init, close its handle, its pipes' files and its status
    fd (inside a section; again does nothing more)."""
    proc = started.process
    if not proc.closed:
        end(proc)
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            f.close()
    proc.close()
    started.status.close()


def _close_setup(stdio: Stdio, fds: List[int], ours: List[int], userns_fds: List[OwnedFd],
                 cgroup_fds: List[OwnedFd]) -> None:
    """Close what only init's set-up needed (inside a section; each once)."""
    stdio.close_child_side()
    while fds:
        os.close(fds.pop())
    while ours:
        os.close(ours.pop())
    for u in userns_fds + cgroup_fds:
        u.close()

