"""From a checked :class:`Spec` to what pidsafe-init must do, in order.

Everything that can be decided before the container exists is decided
here, in Python: clone flags, mount attributes, the device list, the
capability masks.  The result is a list of :class:`Op` for pidsafe-init
(csrc/init/), each remembering the config field it implements so that a
failure inside the container names it.

The order follows runc's (libcontainer/rootfs_linux.go,
standard_init_linux.go): namespaces joined and the user namespace's root
first; then every mount made a slave, the root bound onto itself, the
config's mounts in order, devices and /dev links, pivot_root, hostname and
sysctls, masked and read-only paths, the read-only root, the root's
propagation; then, still privileged, rlimits and the bounding set; then the
user and the other capability sets, no_new_privs and the working
directory; the gate; exec.  The seccomp filter is loaded before the
bounding set, or, with no_new_privs, right before exec.
"""

from __future__ import annotations

import os
import posixpath
import stat
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

from ... import _sys
from ..._value import Record, field
from ...errors import ConfigError, InvalidMountError
from ...mount import Mount, MountPlan, plan_mount
from ..cgroup import CgroupLayout
from ..config import NAMESPACE_TYPES, Device, MountSpec, ProcessSpec, Spec
from ._protocol import (KIND_DIR, KIND_FILE, OP_CAPS, OP_CAP_BOUNDING, OP_CHDIR, OP_CHROOT,
                        OP_DOMAINNAME, OP_EXEC, OP_GATE, OP_HOSTNAME, OP_LOOPBACK_UP, OP_MASK,
                        OP_MKNOD,
                        OP_MOUNT_FS, OP_MOUNT_TREE, OP_NO_NEW_PRIVS, OP_PIVOT, OP_PROPAGATION,
                        OP_READONLY, OP_RLIMIT, OP_ROOT, OP_ROOT_READONLY, OP_SECCOMP,
                        OP_SETID_ROOT, OP_SETNS, OP_SYMLINK, OP_SYSCTL, OP_UNSHARE, OP_USER, Op,
                        nul_list)
from ._protocol import OP_FORK, OP_HOOKS
from ._protocol import OP_CONSOLE, OP_TERMINAL, OP_TERMINAL_SEND, OP_TERMINAL_STDIO

#: OCI namespace type -> clone flag.
CLONE_FLAGS: Dict[str, int] = {
    "pid": _sys.CLONE_NEWPID, "network": _sys.CLONE_NEWNET, "mount": _sys.CLONE_NEWNS,
    "ipc": _sys.CLONE_NEWIPC, "uts": _sys.CLONE_NEWUTS, "user": _sys.CLONE_NEWUSER,
    "cgroup": _sys.CLONE_NEWCGROUP, "time": _sys.CLONE_NEWTIME}

_ROOT_PROPAGATION = {
    "private": _sys.MS_PRIVATE, "rprivate": _sys.MS_PRIVATE | _sys.MS_REC,
    "slave": _sys.MS_SLAVE, "rslave": _sys.MS_SLAVE | _sys.MS_REC,
    "shared": _sys.MS_SHARED, "rshared": _sys.MS_SHARED | _sys.MS_REC,
    "unbindable": _sys.MS_UNBINDABLE, "runbindable": _sys.MS_UNBINDABLE | _sys.MS_REC}

#: runtime-spec config-linux.md, "Default Devices" (major, minor).
DEFAULT_DEVICES: Tuple[Tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7), ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0))
DEV_LINKS: Tuple[Tuple[str, str], ...] = (
    ("/proc/self/fd", "/dev/fd"), ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"), ("/proc/self/fd/2", "/dev/stderr"))


#: Where a host mounts its cgroup hierarchies, and a container sees them.
CGROUP_ROOT = "/sys/fs/cgroup"


class InitPlan(Record):
    """What creating the container takes: clone flags, fds to open, ops."""

    clone_flags: int
    ops: Tuple[Op, ...]
    root_in_userns: bool = False


#: open_tree(source, recursive, attr_set, attr_clr, idmap_userns_fd or -1, field) -> a
#: detached bind's fd, which init gets at the same number and attaches.
OpenTree = Callable[[str, bool, int, int, int, str], int]


class _Builder(Record, frozen=False):
    spec: Spec
    open_tree: OpenTree
    ops: List[Op] = field(default_factory=list)

    def add(self, code: int, *args: object, field_: str = "", what: str = "") -> None:
        self.ops.append(Op(code, tuple(args), field_, what))  # type: ignore[arg-type]


def _attr_and_params(index: int, m: MountSpec, have_userns: bool) -> Tuple[MountPlan, str]:
    """Validate one config mount with the mount layer's own option rules.

    Filesystem options on a bind (``mode=755`` ...) are ignored, as runc
    and crun ignore them: they pass them to mount(2) with ``MS_BIND``,
    which takes no data.
    """
    try:
        p = plan_mount(index, Mount(m.type or "bind", m.source, m.destination, m.options),
                       have_userns, bind_ignores_fs_options=True)
    except InvalidMountError as exc:
        raise ConfigError(f"mounts[{index}]", str(exc).split(": ", 1)[-1]) from None
    return p, m.destination


def plan_init(spec: Spec, bundle: str, rootfs: str, *, gate_fd: int, join_fds: Dict[str, int],
              idmap_fds: Dict[int, int], open_tree: OpenTree,
              layout: Optional[CgroupLayout] = None, hooks_fd: int = -1,
              console_fd: int = -1, fork_fd: int = -1) -> InitPlan:
    """The plan for ``spec`` with the root at ``rootfs`` (absolute, on the host).

    Args:
        join_fds: OCI namespace type -> an fd (open in the caller, passed to
            init at the same number) for each namespace given by path.
        fork_fd: with a pid namespace given by path, the socket pidsafe-init
            sends the pidfd of the init it forks into it over (see below).
        idmap_fds: mount index -> a user-namespace fd for idmapped binds.
        open_tree: makes each bind (host paths are opened by the caller, as
            host root in the host's mount namespace, never by init).
        gate_fd: the exec FIFO, open read-write, passed to init.
        layout: the host's cgroup hierarchies, for ``cgroup`` mounts (read
            from /proc when None).
        hooks_fd: a pipe's read end: init stops before pivot_root, reports,
            and waits for a byte on it while the caller runs the create hooks.
        console_fd: with ``process.terminal``, the connected console socket
            (passed to init at the same number) the pty master is sent over.

    Raises:
        ConfigError: what cannot be done, named by its JSON path.
    """
    b = _Builder(spec, open_tree)
    linux = spec.linux
    user = linux.namespace("user")
    shared_mounts = linux.namespace("mount") is None
    if shared_mounts:
        _check_shared_mount_namespace(spec)
    new = {ns.type for ns in linux.namespaces if ns.path is None}
    in_userns = user is not None
    if in_userns and "user" not in join_fds:
        raise ValueError("a container in a user namespace needs join_fds['user']")

    def joined(kind: str) -> None:
        idx = next(i for i, ns in enumerate(linux.namespaces) if ns.type == kind)
        b.add(OP_SETNS, join_fds[kind], CLONE_FLAGS[kind], field_=f"linux.namespaces[{idx}]",
              what=linux.namespaces[idx].path or "")

    # 0. A pid namespace given by path is another's (a pod's): its processes
    # see whatever is born in it.  pidsafe-init is cloned in ours, chooses it
    # for its children (setns changes only theirs) and forks the container's
    # init into it at once (OP_FORK, as an exec enters a container, see
    # enter()): that init is not dumpable and runs from the sealed binary.
    # (It must be in the pid namespace before its /proc is mounted.)
    if "pid" in join_fds:
        if fork_fd < 0:
            raise ValueError("joining a pid namespace by path needs fork_fd")
        joined("pid")
        idx = next(i for i, ns in enumerate(linux.namespaces) if ns.type == "pid")
        b.add(OP_FORK, fork_fd, field_=f"linux.namespaces[{idx}]",
              what=linux.namespaces[idx].path or "")

    # 1. Namespaces.  Without a user namespace, every new one comes from
    # clone3 (the cgroup namespace from an unshare once init is in its
    # cgroups).  With one, no credential may change before exec, and a
    # program exec'd in a user namespace whose maps did not yet make it root
    # there keeps no capability in it: so init is cloned as host root in new
    # pid and mount namespaces only, mounts /proc for its pid namespace,
    # then joins the user namespace (made beforehand, maps written, by
    # get_userns_fd) and unshares the rest, which that namespace then owns.
    # (The pid namespace is owned by the host's user namespace: root in the
    # container cannot mount another /proc for it.)
    if not in_userns:
        flags = sum(CLONE_FLAGS[k] for k in new if k != "cgroup")
        for kind in sorted(join_fds):
            if kind != "pid":
                joined(kind)
        if "cgroup" in new:
            b.add(OP_UNSHARE, CLONE_FLAGS["cgroup"], field_="linux.namespaces")
    else:
        flags = sum(CLONE_FLAGS[k] for k in new if k in ("pid", "time")) | _sys.CLONE_NEWNS
        for kind in sorted(join_fds):
            if kind not in ("user", "pid"):
                joined(kind)
    # Before the root is bound: every mount a slave (rslave), so that nothing
    # done in this namespace propagates back to the host.  The config's
    # rootfsPropagation is for the container's own "/", so it is applied
    # after pivot_root (step 4): pivot_root refuses a shared new root or
    # parent (EINVAL), and an unbindable host "/" cannot be bound at all.
    # (Without a mount namespace of its own, nothing may change the runtime's
    # mounts: no propagation, no bind of the root, chroot for pivot_root.)
    if not shared_mounts:
        b.add(OP_PROPAGATION, "/", _sys.MS_SLAVE | _sys.MS_REC, field_="linux.rootfsPropagation",
              what="/")
    early = set()
    if not in_userns:
        b.add(OP_ROOT, rootfs, int(not shared_mounts), field_="root.path", what=rootfs)
    else:
        # /proc of the new pid namespace, mounted while init is host root.
        b.add(OP_ROOT, rootfs, 0, field_="root.path", what=rootfs)
        for i, m in enumerate(spec.mounts):
            if m.type == "proc" and not m.is_bind:
                _mount(b, spec, bundle, i, m, idmap_fds, layout, in_userns)
                early.add(i)
        # Joining the namespace gives every capability in it; host root stays
        # our fsuid until the root is bound (reachable through root-only
        # directories).  The bind is made in the new mount namespace, so
        # that it is not a locked copy (pivot_root refuses those).  Binds of
        # host paths come from the parent as detached trees.
        joined("user")
        later = sum(CLONE_FLAGS[k] for k in new if k not in ("pid", "time", "user", "mount"))
        b.add(OP_UNSHARE, later | _sys.CLONE_NEWNS, field_="linux.namespaces")
        b.add(OP_ROOT, rootfs, 1, field_="root.path", what=rootfs)
        # From here on files are made as the container's root, so that they
        # are owned by an id mapped into the namespace (else EOVERFLOW).
        b.add(OP_SETID_ROOT, field_="linux.uidMappings")

    # 2. The config's mounts, in order.
    devpts_at_dev_pts = any(m.type == "devpts" and posixpath.normpath(m.destination)
                            == "/dev/pts" for m in spec.mounts)
    for i, m in enumerate(spec.mounts):
        if i not in early:
            _mount(b, spec, bundle, i, m, idmap_fds, layout, in_userns)

    # 3. Devices and the /dev links.
    listed = {d.path for d in linux.devices}
    for path, major, minor in DEFAULT_DEVICES:
        if path not in listed:
            _device(b, Device(path, "c", major, minor, 0o666, 0, 0), in_userns, "linux.devices")
    for i, d in enumerate(linux.devices):
        _device(b, d, in_userns, f"linux.devices[{i}]")
    for target, link in DEV_LINKS:
        b.add(OP_SYMLINK, target, link, field_="linux.devices", what=link)
    if devpts_at_dev_pts:
        b.add(OP_SYMLINK, "pts/ptmx", "/dev/ptmx", field_="linux.devices", what="/dev/ptmx")

    # 4. The create hooks (runtime-spec: environment made, not yet pivoted),
    # then into the root; what is done by container paths from here on.
    if hooks_fd >= 0:
        b.add(OP_HOOKS, hooks_fd, field_="hooks", what="")
    # The terminal comes from the container's devpts, once every mount is
    # made and before the masks and the read-only root (as runc orders it).
    # Without a mount namespace of our own, /dev/console is not bound: that
    # mount would be made in the runtime's namespace.
    b.add(OP_CHROOT if shared_mounts else OP_PIVOT, field_="root.path", what=rootfs)
    _terminal(b, spec.process, console_fd, console=not shared_mounts)
    # The container's own settings, as runc orders them: before the masked
    # and read-only paths (a sysctl is written into /proc/sys, which
    # readonlyPaths usually makes read-only).
    if spec.hostname:
        b.add(OP_HOSTNAME, spec.hostname, field_="hostname", what=spec.hostname)
    if spec.domainname:
        b.add(OP_DOMAINNAME, spec.domainname, field_="domainname", what=spec.domainname)
    net = linux.namespace("network")
    if net is not None and net.path is None:
        b.add(OP_LOOPBACK_UP, field_="linux.namespaces", what="lo")
    for key, value in linux.sysctl:
        b.add(OP_SYSCTL, key, value, field_=f"linux.sysctl.{key}", what=key)
    for i, path in enumerate(linux.masked_paths):
        b.add(OP_MASK, path, field_=f"linux.maskedPaths[{i}]", what=path)
    for i, path in enumerate(linux.readonly_paths):
        b.add(OP_READONLY, path, field_=f"linux.readonlyPaths[{i}]", what=path)
    if spec.root.readonly:
        b.add(OP_ROOT_READONLY, field_="root.readonly", what="/")
    if linux.rootfs_propagation is not None:
        # Last of the mount changes (an unbindable tree cannot be cloned
        # for a read-only path).  "shared" gives the new root a peer group
        # of its own: its mounts are slaves of the host's, never peers.
        b.add(OP_PROPAGATION, "/", _ROOT_PROPAGATION[linux.rootfs_propagation],
              field_="linux.rootfsPropagation", what="/")

    # 5. The process: limits and the bounding set while privileged, then the user.
    proc = spec.process
    for i, r in enumerate(proc.rlimits):
        b.add(OP_RLIMIT, r.resource, _rlim(r.soft), _rlim(r.hard),
              field_=f"process.rlimits[{i}]", what=r.type)
    _take_process_identity(b, proc)
    b.add(OP_GATE, gate_fd, field_="", what="")
    b.add(OP_EXEC, nul_list(proc.args), nul_list(proc.env), field_="process.args",
          what=proc.args[0])
    return InitPlan(flags, tuple(b.ops), root_in_userns=in_userns)


def _terminal(b: _Builder, proc: ProcessSpec, console_fd: int, *, console: bool,
              stdio: bool = True) -> None:
    """The ops of ``process.terminal``: allocate, [bind on /dev/console], send, [take]."""
    if not proc.terminal:
        if console_fd >= 0:
            raise ValueError("a console socket without process.terminal")
        return
    if console_fd < 0:
        raise ValueError("process.terminal needs a console socket fd")
    rows, cols = proc.console_size or (0, 0)
    b.add(OP_TERMINAL, rows, cols, proc.user.uid, field_="process.terminal",
          what="/dev/pts/ptmx")
    if console:
        b.add(OP_CONSOLE, field_="process.terminal", what="/dev/console")
    b.add(OP_TERMINAL_SEND, console_fd, field_="process.terminal")
    if stdio:
        b.add(OP_TERMINAL_STDIO, field_="process.terminal")


def _check_shared_mount_namespace(spec: Spec) -> None:
    """What a container without a mount namespace of its own cannot have.

    It shares the runtime's mount namespace (runtime-spec: inherits it).
    Its mounts, masked and read-only paths are made there, under the root,
    and undone by delete; anything that would change the runtime's own
    mounts is refused.
    """
    linux = spec.linux
    if linux.namespace("user") is not None:
        raise ConfigError("linux.namespaces", "a user namespace needs a mount namespace of "
                                              "its own")
    if linux.rootfs_propagation is not None:
        raise ConfigError("linux.rootfsPropagation", "needs a mount namespace of its own "
                                                     "(it would change the runtime's)")
    if spec.root.readonly:
        raise ConfigError("root.readonly", "needs a mount namespace of its own (the root "
                                           "would be remounted for everyone)")


def _take_process_identity(b: _Builder, proc: ProcessSpec) -> None:
    """The ops that make the process who ``proc`` says, for create and exec
    alike: the bounding set while still privileged, then the user, the
    capabilities, no_new_privs and the working directory.

    The container's seccomp filter (compiled here, in the parent) is loaded
    where runc loads it: without no_new_privs loading needs CAP_SYS_ADMIN,
    so before the bounding set and the user; with it, as late as possible,
    after the gate, right before execve."""
    seccomp = b.spec.linux.seccomp
    prog = None
    if seccomp is not None:
        from ._seccomp_filter import compile_filter

        prog = compile_filter(seccomp)
        if not proc.no_new_privileges:
            b.add(OP_SECCOMP, prog.flags, prog.bpf, 0, field_="linux.seccomp")
    caps = proc.capabilities
    if caps is not None:
        b.add(OP_CAP_BOUNDING, _mask(caps.bounding), field_="process.capabilities.bounding")
    u = proc.user
    b.add(OP_USER, u.uid, u.gid, -1 if u.umask is None else u.umask, list(u.additional_gids),
          field_="process.user", what=f"{u.uid}:{u.gid}")
    if caps is not None:
        b.add(OP_CAPS, _mask(caps.effective), _mask(caps.permitted), _mask(caps.inheritable),
              _mask(caps.ambient), field_="process.capabilities")
    if proc.no_new_privileges:
        b.add(OP_NO_NEW_PRIVS, field_="process.noNewPrivileges")
    b.add(OP_CHDIR, proc.cwd, field_="process.cwd", what=proc.cwd)
    if prog is not None and proc.no_new_privileges:
        b.add(OP_SECCOMP, prog.flags, prog.bpf, 1, field_="linux.seccomp")


def _mount(b: _Builder, spec: Spec, bundle: str, i: int, m: MountSpec,
           idmap_fds: Dict[int, int], layout: Optional[CgroupLayout], in_userns: bool) -> None:
    where = f"mounts[{i}]"
    if m.type == "cgroup" and not m.is_bind:
        _cgroup_mount(b, i, m, layout or CgroupLayout.detect(), in_userns)
        return
    p, dest = _attr_and_params(i, m, have_userns=i in idmap_fds)
    if p.kind == "bind":
        # runtime-spec: bind sources are absolute or relative to the bundle.
        source = os.path.join(bundle, m.source)
        target_kind = KIND_DIR if _is_dir(source) else KIND_FILE
        tree = b.open_tree(source, p.recursive, p.attr_set, p.attr_clr,
                           idmap_fds.get(i, -1), where)
        b.add(OP_MOUNT_TREE, tree, dest, int(p.recursive), _propagation(p), target_kind,
              field_=where, what=dest)
    else:
        params = nul_list([k if v is None else f"{k}={v}" for k, v in p.params])
        b.add(OP_MOUNT_FS, m.type, m.source or m.type, dest, p.attr_set, _propagation(p),
              params, KIND_DIR, field_=where, what=dest)


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(path).st_mode)
    except OSError:
        return True   # let the mount itself report a missing source


def _propagation(p: MountPlan) -> int:
    return 0 if p.propagation is None else int(p.propagation[0])


def _rlim(value: int) -> int:
    """OCI's uint64 limits as the int64 the op stream carries (RLIM_INFINITY = -1)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _mask(caps: FrozenSet[int]) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return _rlim(m) if m >= 1 << 63 else m


def _device(b: _Builder, d: Device, in_userns: bool, where: str) -> None:
    if in_userns:
        # No mknod in a user namespace: bind the host's node (runc does the same).
        tree = b.open_tree(d.path, False, 0, 0, -1, where)
        b.add(OP_MOUNT_TREE, tree, d.path, 0, 0, KIND_FILE, field_=where, what=d.path)
        return
    mode = d.kind | (0o666 if d.file_mode is None else d.file_mode)
    b.add(OP_MKNOD, d.path, mode, d.major, d.minor, -1 if d.uid is None else d.uid,
          -1 if d.gid is None else d.gid, field_=where, what=d.path)


def _cgroup_mount(b: _Builder, index: int, m: MountSpec, layout: CgroupLayout,
                  in_userns: bool) -> None:
    """``cgroup`` in config.json: cgroup2 on a v2 host; per-hierarchy v1 mounts otherwise.

    The v1 hierarchies mounted under ``/sys/fs/cgroup/`` each get a mount of
    their own under the destination, by the same name; a v2 hierarchy
    mounted beside them (hybrid) is mounted at ``unified``.
    """
    where = f"mounts[{index}]"
    p, dest = _attr_and_params(index, MountSpec(m.destination, "tmpfs", "tmpfs", m.options),
                               have_userns=False)
    attr = p.attr_set
    v1 = [h for h in layout.v1 if h.mountpoint.startswith(CGROUP_ROOT + "/")]
    v2 = layout.v2
    if v2 is not None and v2.mountpoint == CGROUP_ROOT and not v1:
        b.add(OP_MOUNT_FS, "cgroup2", "cgroup2", dest, attr, 0, b"", KIND_DIR, field_=where,
              what=dest)
        return
    b.add(OP_MOUNT_FS, "tmpfs", "tmpfs", dest, attr & ~_sys.MOUNT_ATTR_RDONLY, 0,
          nul_list(["mode=755"]), KIND_DIR, field_=where, what=dest)
    if in_userns:
        return   # cgroup v1 cannot be mounted from a non-initial user namespace
    for h in v1:
        sub = posixpath.join(dest, posixpath.basename(h.mountpoint))
        b.add(OP_MOUNT_FS, "cgroup", "cgroup", sub, attr, 0, nul_list(list(h.options)),
              KIND_DIR, field_=where, what=sub)
    if v2 is not None and v2.mountpoint != CGROUP_ROOT:
        sub = posixpath.join(dest, "unified")
        b.add(OP_MOUNT_FS, "cgroup2", "cgroup2", sub, attr, 0, b"", KIND_DIR, field_=where,
              what=sub)



#: The namespaces a process of ours joins "for its children": their processes
#: are born in them, so the process that runs the container's program is.
FOR_CHILDREN = ("pid", "time")


class Entry(Record):
    """The fds a process entering a running container is given (see :func:`enter`).

    Attributes:
        pidfd: init's pidfd (a copy the op closes), for every namespace but
            the pid and time ones.
        children_pidfd: init's pidfd again (another copy), for its pid and
            time namespaces, joined for pidsafe-init's children; -1 if the
            container has neither (then nothing is forked).
        fork_fd: the socket pidsafe-init sends its child's pidfd over.
    """

    pidfd: int
    children_pidfd: int = -1
    fork_fd: int = -1


def forks(spec: Spec) -> bool:
    """Whether a process entering ``spec``'s container is forked into it
    (it has a pid or a time namespace, which only children enter)."""
    return any(spec.linux.namespace(kind) is not None for kind in FOR_CHILDREN)


def enter(spec: Spec, entry: Entry) -> Tuple[List[Op], Optional[Op]]:
    """The ops that take pidsafe-init into init's namespaces, and its fork op.

    pidsafe-init starts in the runtime's pid namespace, where the container
    cannot see it.  It first chooses init's pid and time namespaces for its
    children, while still host root (they belong to the host's user
    namespace), then joins every other namespace of init with one
    ``setns(pidfd, flags)`` (Linux 5.8): the user namespace first, so the
    rest is joined as the container's root.  The process that runs the
    program is forked after that (``OP_FORK``, placed by the caller): it
    is born in the container's pid namespace already holding nothing of the
    host's (its mount namespace, credentials, a sealed binary, not
    dumpable).  Without a pid and a time namespace nothing is forked.

    Raises:
        ValueError: the container forks and ``entry`` has no fd for it.
    """
    ops: List[Op] = []
    kids = sum(CLONE_FLAGS[k] for k in FOR_CHILDREN if spec.linux.namespace(k) is not None)
    rest = sum(CLONE_FLAGS[ns.type] for ns in spec.linux.namespaces
               if ns.type not in FOR_CHILDREN)
    fork = None
    if kids:
        if entry.children_pidfd < 0 or entry.fork_fd < 0:
            raise ValueError("entering a container with a pid or time namespace needs "
                             "children_pidfd and fork_fd")
        ops.append(Op(OP_SETNS, (entry.children_pidfd, kids), "linux.namespaces",
                      "init's pid namespace"))
        fork = Op(OP_FORK, (entry.fork_fd,), "linux.namespaces", "init's pid namespace")
    if rest:
        ops.append(Op(OP_SETNS, (entry.pidfd, rest), "linux.namespaces", "init's namespaces"))
    return ops, fork


def plan_exec(spec: Spec, process: ProcessSpec, entry: Entry, *,
              root_fd: Optional[int] = None, console_fd: int = -1) -> InitPlan:
    """The plan for a process exec'd into the running container of ``spec``.

    pidsafe-init enters init's namespaces (:func:`enter`), then takes
    ``process``'s user, capabilities, no_new_privs and cwd, and execs.
    Without a mount namespace of its own, it chroots into ``root_fd``
    (init's root, ``/proc/INIT/root`` opened by the caller), as init did.
    With ``process.terminal``, it allocates the terminal in the container's
    devpts and sends the master over ``console_fd`` (see :func:`plan_init`).

    Where it forks into the pid namespace: as late as it can, so that the
    process the container can see has already become the exec's user with
    the exec's capabilities, unless a seccomp filter must be loaded while
    privileged (no no_new_privileges): a filter may refuse clone3 itself,
    so it is loaded by the child, which then takes the identity.
    """
    b = _Builder(spec, _no_tree)
    entering, fork = enter(spec, entry)
    b.ops.extend(entering)
    if spec.linux.namespace("mount") is None:
        if root_fd is None:
            raise ValueError("a container without a mount namespace needs root_fd")
        b.add(OP_ROOT, f"/proc/self/fd/{root_fd}", 0, field_="root.path", what="init's root")
        b.add(OP_CHROOT, field_="root.path", what="init's root")
    if process.terminal and spec.linux.namespace("user") is not None:
        # The pty's peer is owned by whoever opens ptmx: it must be the
        # container's root (mapped), not host root (unmapped in there).
        b.add(OP_SETID_ROOT, field_="linux.uidMappings")
    _terminal(b, process, console_fd, console=False, stdio=False)
    identity = _Builder(spec, _no_tree)
    _take_process_identity(identity, process)
    early_seccomp = any(op.code == OP_SECCOMP and op.args[2] == 0 for op in identity.ops)
    if fork is not None and early_seccomp:
        b.ops.append(fork)
    b.ops.extend(identity.ops)
    if fork is not None and not early_seccomp:
        b.ops.append(fork)   # (a late filter is loaded right before execve, by the child)
    if process.terminal:
        b.add(OP_TERMINAL_STDIO, field_="process.terminal")
    b.add(OP_EXEC, nul_list(process.args), nul_list(process.env), field_="process.args",
          what=process.args[0])
    return InitPlan(0, tuple(b.ops), root_in_userns=spec.linux.namespace("user") is not None)


def _no_tree(source: str, recursive: bool, attr_set: int, attr_clr: int, userns_fd: int,
             field: str) -> int:  # pragma: no cover - exec makes no mounts
    raise AssertionError("exec makes no mounts")


__all__ = ["Entry", "InitPlan", "NAMESPACE_TYPES", "enter", "forks", "plan_exec", "plan_init"]
