"""From a checked :class:`Spec` to what pidsafe-init must do, in order.

Everything that can be decided before the container exists is decided
here, in Python: clone flags, mount attributes, the device list, the
capability masks.  The result is a list of :class:`Op` for pidsafe-init
(csrc/init/), each remembering the config field it implements so that a
failure inside the container names it.

The order follows runc's (libcontainer/rootfs_linux.go,
standard_init_linux.go): namespaces joined and the user namespace's root
first; then every mount made a slave, the root bound onto itself, the
config's mounts in order, devices and /dev links, one clone of the whole
root (fresh mount ids in tree order, see OP_ROOT_CLONE), pivot_root, hostname and
sysctls, masked and read-only paths, the read-only root, the root's
propagation; then, still privileged, rlimits and the bounding set; then the
user and the other capability sets, no_new_privs and the working
directory; the gate; exec.  The seccomp filter is loaded before the
bounding set, or, with no_new_privs, right before exec.
"""

from __future__ import annotations

import posixpath

from ... import _sys
from ...errors import ConfigError
from ..cgroup import CgroupLayout
from ..config import Device, Spec
from ._builder import CLONE_FLAGS, InitPlan, _Builder, _rlim, _take_process_identity, _terminal
from ._plan_mounts import _device, _mount
from ._protocol import (OP_CHROOT, OP_DOMAINNAME, OP_EXEC, OP_FORK, OP_GATE, OP_HOOKS,
                        OP_HOSTNAME, OP_LOOPBACK_UP, OP_MASK, OP_PIVOT, OP_PROPAGATION,
                        OP_READONLY, OP_RLIMIT, OP_ROOT, OP_ROOT_CLONE, OP_ROOT_READONLY, OP_SETID_ROOT,
                        OP_SETNS, OP_SYMLINK, OP_SYSCTL, OP_UNSHARE, nul_list)

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

    from ._builder import OpenTree

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
    # With a root of our own, the parent's trees are attached as they are
    # and one clone of the whole root gives every mount a fresh id
    # (OP_ROOT_CLONE); an unbindable mount cannot be cloned, so then each
    # tree is cloned again where it is attached.
    root_clone = not shared_mounts and not any(
        o in ("unbindable", "runbindable") for m in spec.mounts for o in m.options)
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
                _mount(b, spec, bundle, i, m, idmap_fds, layout, in_userns, not root_clone)
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
            _mount(b, spec, bundle, i, m, idmap_fds, layout, in_userns, not root_clone)

    # 3. Devices and the /dev links.
    listed = {d.path for d in linux.devices}
    for path, major, minor in DEFAULT_DEVICES:
        if path not in listed:
            _device(b, Device(path, "c", major, minor, 0o666, 0, 0), in_userns, "linux.devices",
                    not root_clone)
    for i, d in enumerate(linux.devices):
        _device(b, d, in_userns, f"linux.devices[{i}]", not root_clone)
    for target, link in DEV_LINKS:
        b.add(OP_SYMLINK, target, link, field_="linux.devices", what=link)
    if devpts_at_dev_pts:
        b.add(OP_SYMLINK, "pts/ptmx", "/dev/ptmx", field_="linux.devices", what="/dev/ptmx")
    if root_clone:
        b.add(OP_ROOT_CLONE, field_="root.path", what=rootfs)

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


__all__ = ["DEFAULT_DEVICES", "plan_init"]
