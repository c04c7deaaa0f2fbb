"""Creating a container, step by step, each resource recorded before it exists.

The sequence of :meth:`pidsafe.Container.create` once the id is locked and
the state saved: the rootfs mounts, the cgroup, the FIFO gate, the fds
init needs (user namespace, namespaces to join, idmapped binds, the cgroup
directory), the plan, and init itself (:mod:`.init`).  Every resource is
written into the state record as soon as it exists, so that
``delete(force=True)`` from any process can undo a create that was killed
at any step (:func:`._records.undo`).
"""

from __future__ import annotations

import errno
import importlib
import os
from typing import Any, Callable, Dict, List, Optional

from .. import _sys
from .. import errors as pidsafe_errors
from .._fd import OwnedFd
from .._sigsafe import critical
from ..errors import container_error
from ..mount import Mount
from ..process import ProcessIdentity
from ..process import Process
from ..state import StateFile
from .cgroup import Cgroup, CgroupLayout
from .config import DeviceRule, Resources, Spec
from .init import (CLONE_FLAGS, DEFAULT_DEVICES, StartedInit, plan_init, preserved_fds,
                   start_init, with_preserved)
from ._records import end
from ._stdio import Stdio, make_stdio

#: Tests: called with the name of each create step as it is reached.
_test_hook: Optional[Callable[[str], None]] = None


def _step(name: str) -> None:
    hook = _test_hook
    if hook is not None:
        hook(name)


def _mount_to_json(m: Mount) -> Dict[str, Any]:
    return {"type": m.type, "source": m.source, "target": m.target, "options": list(m.options)}



def create_locked(state: StateFile, record: Dict[str, Any], spec: Spec, bundle: str,
                   rootfs: str, mounts: List[Mount], stdin: Any, stdout: Any,
                   stderr: Any, preserve_fds: int = 0, console_fd: int = -1) -> StartedInit:
    # 1. The rootfs mounts, recorded before they are made.
    if mounts:
        parent, name = os.path.split(rootfs)
        placed = [Mount(m.type, m.source, os.path.join(name, m.target.lstrip("/")),
                        m.options) for m in mounts]
        record["mounts"] = [_mount_to_json(m) for m in placed]
        record["mountRoot"] = parent
        state.save(record)
        from ..mount import mount_all   # only for rootfs mounts (containerd's)

        with critical:
            mounted = mount_all(placed, parent)
            record["mounted"] = mounted.to_dict()   # for delete: unmount by identity
        state.save(record)
        _step("mounted")
    # 2. The cgroup, recorded as soon as it exists (its paths are known then).
    layout = CgroupLayout.detect()   # the host's hierarchies: for the cgroup mount too
    with critical:
        cg = Cgroup.create(record["id"], spec.linux.cgroups_path or
                           _default_cgroup(state.root, record["id"]),
                           _with_default_devices(spec), layout=layout)
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
    hooks_go: List[int] = []   # the write end of init's hooks pipe: never passed to init
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
            from ..userns import get_userns_fd   # its helper: only for user namespaces

            with critical:
                userns = get_userns_fd(spec.linux.uid_mappings, spec.linux.gid_mappings,
                                       setgroups="allow")
                userns_fds.append(userns)
            join["user"] = userns.fileno()
        for i, ns in enumerate(spec.linux.namespaces):
            if ns.path is not None:
                with critical:
                    fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
                    fds.append(fd)
                _check_namespace(fd, ns.type, ns.path, f"linux.namespaces[{i}].path")
                join[ns.type] = fd
        idmap: Dict[int, int] = {}
        for i, m in enumerate(spec.mounts):
            maps = (m.uid_mappings, m.gid_mappings)
            if maps[0] is None and ("idmap" in m.options or "ridmap" in m.options):
                maps = (spec.linux.uid_mappings, spec.linux.gid_mappings)
            if maps[0] is not None and maps[1] is not None:
                from ..userns import get_userns_fd

                with critical:
                    userns = get_userns_fd(maps[0], maps[1])
                    userns_fds.append(userns)
                idmap[i] = userns.fileno()

        def open_tree(source: str, recursive: bool, attr_set: int, attr_clr: int,
                      userns_fd: int, field: str) -> int:
            return _open_tree(fds, source, recursive, attr_set, attr_clr, userns_fd, field)

        hooks_fd = -1
        if spec.hooks.during_create:
            with critical:
                hooks_fd, go = os.pipe2(os.O_CLOEXEC)
                fds.append(hooks_fd)
                hooks_go.append(go)
        plan = plan_init(spec, bundle, rootfs, gate_fd=gate, join_fds=join,
                         idmap_fds=idmap, open_tree=open_tree, layout=layout,
                         hooks_fd=hooks_fd, console_fd=console_fd)
        if spec.linux.namespace("mount") is None:
            # init mounts in our namespace: what is under the root now stays.
            from ._shared_mounts import record as shared_mounts

            record["sharedMounts"] = shared_mounts(rootfs)
            state.save(record)
        kept = preserved_fds(preserve_fds)
        plan = with_preserved(plan, preserve_fds)

        def prepare(proc: Process) -> None:
            with critical:
                record["init"] = ProcessIdentity.of(proc).to_json()
                record["pid"] = proc.pid
            state.save(record)
            cg.add(proc, v2=v2_fd is None)   # every v1 hierarchy, before it runs
            _step("cloned")
            if spec.process.oom_score_adj is not None:
                _write_proc(proc, "oom_score_adj", str(spec.process.oom_score_adj))

        def on_hooks(proc: Process) -> None:
            _step("hooks")
            run_create_hooks(spec, record, proc)
            os.write(hooks_go[0], b"\1")

        started = start_init(plan, stdio=stdio.child,
                             pass_fds=[*fds, *(u.fileno() for u in userns_fds), *kept,
                                       *([console_fd] if console_fd >= 0 else [])],
                             cgroup_fd=v2_fd.fileno() if v2_fd is not None else -1,
                             prepare=prepare,
                             args=list(spec.process.args),
                             on_hooks=on_hooks if hooks_fd >= 0 else None,
                             pid_namespace=join.get("pid"),
                             pid_namespace_field=_field_of(spec, "pid"))
    except BaseException:
        with critical:
            stdio.close_all()   # our pipe ends too: there is no process to own them
        raise
    finally:
        with critical:
            stdio.close_child_side()
            for fd in fds + hooks_go:
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
            end(started.process)
            started.status.close()
        raise
    return started


def _sha256(data: bytes) -> Any:
    """``hashlib.sha256(data)``, from CPython's own SHA-256 where it has one.

    ``import hashlib`` loads OpenSSL's libcrypto (3 ms or more at every
    pidsafe-runc create); the built-in module gives the same digest.  It is
    ``_sha256`` up to Python 3.11 and ``_sha2`` from 3.12; hashlib otherwise.
    """
    for name in ("_sha2", "_sha256"):
        try:
            return importlib.import_module(name).sha256(data)
        except (ImportError, AttributeError):
            continue
    import hashlib

    return hashlib.sha256(data)


def run_create_hooks(spec: Spec, record: Dict[str, Any], init: Process) -> None:
    """prestart and createRuntime here, then createContainer in init's namespaces.

    Init waits before pivot_root meanwhile (runtime-spec lifecycle steps
    3-5).  The state they read says ``created`` (the environment is made,
    step 2) and gives init's pid.

    Raises:
        HookError: the first hook that failed (the rest do not run).
    """
    from ._hooks import hook_state, run_hooks

    state = hook_state(record, "created", init.pid)
    hooks = spec.hooks
    run_hooks("prestart", hooks.prestart, state, fatal=True)
    run_hooks("createRuntime", hooks.create_runtime, state, fatal=True)
    run_hooks("createContainer", hooks.create_container, state, fatal=True, init=init,
              spec=spec)


def _check_namespace(fd: int, kind: str, path: str, field: str) -> None:
    """Check that ``fd`` (opened from ``path``) is a namespace of type ``kind``.

    The fd itself is what init (or, for a pid namespace, our thread) joins,
    so the file checked is the one joined, whatever ``path`` names later.
    """
    try:
        nstype: Optional[int] = _sys.ns_type(fd)
    except OSError as exc:
        if exc.errno != errno.ENOTTY:
            raise container_error(exc.errno or errno.EIO, f"join {kind} namespace", path,
                                  field) from None
        nstype = None
    if nstype != CLONE_FLAGS[kind]:
        what = next((k for k, v in CLONE_FLAGS.items() if v == nstype), None)
        raise container_error(errno.EINVAL, f"join {kind} namespace", path, field,
                              message=f"join {kind} namespace ({field}): {path} is "
                              + (f"a {what} namespace" if what else "not a namespace file"))


def _field_of(spec: Spec, kind: str) -> str:
    for i, ns in enumerate(spec.linux.namespaces):
        if ns.type == kind:
            return f"linux.namespaces[{i}].path"
    return ""


def _default_cgroup(state_dir: str, container_id: str) -> str:
    """``/pidsafe/<state dir tag>-<id>`` when config.json names no cgroupsPath.

    Names on disk are identities: the same id under two state directories
    (two runtimes, two test runs) must not share a cgroup.
    """
    tag = _sha256(os.path.abspath(state_dir).encode()).hexdigest()[:12]
    return f"/pidsafe/{tag}-{container_id}"


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
    return r.replace(devices=r.devices + tuple(allowed))


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
