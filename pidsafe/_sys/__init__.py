"""The only importer of ``pidsafe._native``: the kernel boundary.

Every call into C goes through a function here.  Each turns a ``-1``/
``errno`` return into the right ``OSError`` subclass (Python picks
``ProcessLookupError``, ``ChildProcessError``, ``PermissionError`` ... from
the errno), naming the failing step and the path, and ``EINTR`` is retried
in exactly one place (``_core._retry``).  Nothing outside ``pidsafe._sys``
touches ``ffi`` or ``lib``.

One module per concept; every name is available as ``_sys.<name>``:

* ``_core``: the compiled module, constants, EINTR;
* ``_oserror``: errno -> OSError (no compiled module: error paths of the
  stdlib's pidfd calls use it too);
* ``_pidfd``: pidfd_open/send_signal/getfd, waitid(P_PIDFD), exit info,
  ending a child through its pidfd;
* ``_ns``: setns, a namespace fd's type;
* ``_spawn``: the typed child spec and csrc/native/spawn.c's clone3, the helper's
  instructions, the child's failure record;
* ``_libexec``: the one locator of the static programs pidsafe execs;
* ``_mount``: the new mount API, openat2, umount2, idmapped binds;
* ``_userns``: csrc/native/userns.c's user-namespace helper child;
* ``_prctl``: the subreaper flag and other prctl(2) flags, capabilities;
* ``_bpf``: bpf(2), for a cgroup v2 device filter;
* ``_tty``: what a pty master is;
* ``_seccomp``: libseccomp's filters, as ``_sys.seccomp`` (loaded on demand);
* ``_psi``: pidsafe-init's protocol, from its header, as ``_sys.psi``
  (loaded on demand).

Every name is imported on first use (PEP 562): some modules hold records
(:class:`pidsafe._value.Record`), and ``_core`` loads the compiled module
(cffi's backend and ours, ~2 ms).  pidsafe-runc's start, state, kill and
delete hold a saved container's init through the stdlib's pidfd calls
(:meth:`pidsafe.process.ProcessIdentity.open`) and should not pay for
either at every start-up: importing this package costs nothing until a
name is used.
"""

from __future__ import annotations

from .._lite import import_module as _import_module

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Any, Dict

    from ._core import (CLD_DUMPED, CLD_EXITED, CLD_KILLED, CLONE_NEWCGROUP, CLONE_NEWIPC,
                        CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWTIME, CLONE_NEWUSER,
                        CLONE_NEWUTS, CLONE_PIDFD, CLONE_VFORK, CLONE_VM, WALL, WEXITED,
                        WNOHANG, WNOWAIT, _retry, errno_of, ffi, has_clone3_trampoline, lib)
    from ._oserror import make_oserror
    from ._pidfd import (close_range, end_child, fdinfo_pid, pidfd_exit_info, pidfd_getfd,
                         pidfd_open, pidfd_send_signal, probe_child, status_record,
                         status_returncode, unreaped_child, waitid_pidfd, waitid_status)
    from . import _psi as psi
    from . import _seccomp as seccomp
    from ._bpf import (BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, BPF_PROG_TYPE_CGROUP_DEVICE,
                       bpf_prog_attach, bpf_prog_load)
    from ._libexec import Program, program
    from ._mount import (AT_EMPTY_PATH, AT_FDCWD, AT_RECURSIVE, BIND_STAGE_MOUNT_SETATTR,
                         BIND_STAGE_MOVE_MOUNT, BIND_STAGE_OPEN_TREE, FSCONFIG_CMD_CREATE,
                         FSCONFIG_SET_FD, FSCONFIG_SET_FLAG, FSCONFIG_SET_STRING, FSMOUNT_CLOEXEC,
                         FSOPEN_CLOEXEC, MOUNT_ATTR__ATIME, MOUNT_ATTR_IDMAP, MOUNT_ATTR_NOATIME,
                         MOUNT_ATTR_NODEV, MOUNT_ATTR_NODIRATIME, MOUNT_ATTR_NOEXEC,
                         MOUNT_ATTR_NOSUID, MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR_RDONLY,
                         MOUNT_ATTR_RELATIME, MOUNT_ATTR_STRICTATIME, MOVE_MOUNT_F_EMPTY_PATH,
                         MOVE_MOUNT_T_EMPTY_PATH, MS_PRIVATE, MS_REC, MS_SHARED, MS_SLAVE,
                         MS_UNBINDABLE, OPEN_TREE_CLOEXEC, OPEN_TREE_CLONE, RESOLVE_BENEATH,
                         RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS,
                         RESOLVE_NO_XDEV, UMOUNT_NOFOLLOW, fsconfig, fsmount, fsopen, idmapped_bind, mount_setattr,
                         mnt_id, mnt_id_unique, move_mount, open_tree, openat2, umount2)
    from ._ns import ns_type, setns
    from ._prctl import (CAPABILITIES, CapSets, capget, capset, child_subreaper, dumpable,
                         pdeathsig, set_child_subreaper, set_dumpable)
    from ._spawn import (CHILD_ERROR_SIZE, FAULT_NO_CLEAR_SIGHAND, FAULT_SIGMASK, HELPER_READY,
                         STAGE_CGROUP, STAGE_CHDIR, STAGE_EXEC, STAGE_LAST, STAGE_NAMES,
                         ChildSpec, HelperSpec, child_error, helper_go, read_child_error, spawn)
    from ._tty import pty_number
    from ._userns import userns_helper_free, userns_helper_start

#: Names imported on first use -> their module.
_LAZY: Dict[str, str] = {
    **dict.fromkeys(("CLD_DUMPED", "CLD_EXITED", "CLD_KILLED", "CLONE_NEWCGROUP",
                     "CLONE_NEWIPC", "CLONE_NEWNET", "CLONE_NEWNS", "CLONE_NEWPID",
                     "CLONE_NEWTIME", "CLONE_NEWUSER", "CLONE_NEWUTS", "CLONE_PIDFD",
                     "CLONE_VFORK", "CLONE_VM", "WALL", "WEXITED", "WNOHANG", "WNOWAIT",
                     "_retry", "errno_of", "ffi", "has_clone3_trampoline", "lib"), "._core"),
    "make_oserror": "._oserror",
    **dict.fromkeys(("close_range", "end_child", "fdinfo_pid", "pidfd_exit_info",
                     "pidfd_getfd", "pidfd_open", "pidfd_send_signal", "probe_child",
                     "status_record", "status_returncode", "unreaped_child", "waitid_pidfd",
                     "waitid_status"),
                    "._pidfd"),
    **dict.fromkeys(("BPF_CGROUP_DEVICE", "BPF_F_ALLOW_MULTI", "BPF_PROG_TYPE_CGROUP_DEVICE",
                     "bpf_prog_attach", "bpf_prog_load"), "._bpf"),
    **dict.fromkeys(("Program", "program"), "._libexec"),
    **dict.fromkeys(("AT_EMPTY_PATH", "AT_FDCWD", "AT_RECURSIVE", "BIND_STAGE_MOUNT_SETATTR",
                     "BIND_STAGE_MOVE_MOUNT", "BIND_STAGE_OPEN_TREE", "FSCONFIG_CMD_CREATE",
                     "FSCONFIG_SET_FD", "FSCONFIG_SET_FLAG", "FSCONFIG_SET_STRING",
                     "FSMOUNT_CLOEXEC", "FSOPEN_CLOEXEC", "MOUNT_ATTR__ATIME",
                     "MOUNT_ATTR_IDMAP", "MOUNT_ATTR_NOATIME", "MOUNT_ATTR_NODEV",
                     "MOUNT_ATTR_NODIRATIME", "MOUNT_ATTR_NOEXEC", "MOUNT_ATTR_NOSUID",
                     "MOUNT_ATTR_NOSYMFOLLOW", "MOUNT_ATTR_RDONLY", "MOUNT_ATTR_RELATIME",
                     "MOUNT_ATTR_STRICTATIME", "MOVE_MOUNT_F_EMPTY_PATH",
                     "MOVE_MOUNT_T_EMPTY_PATH", "MS_PRIVATE", "MS_REC", "MS_SHARED",
                     "MS_SLAVE", "MS_UNBINDABLE", "OPEN_TREE_CLOEXEC", "OPEN_TREE_CLONE",
                     "RESOLVE_BENEATH", "RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS",
                     "RESOLVE_NO_SYMLINKS", "RESOLVE_NO_XDEV", "UMOUNT_NOFOLLOW", "fsconfig",
                     "fsmount", "fsopen", "idmapped_bind", "mount_setattr", "mnt_id",
                     "mnt_id_unique", "move_mount", "open_tree", "openat2", "umount2"),
                    "._mount"),
    **dict.fromkeys(("ns_type", "setns"), "._ns"),
    **dict.fromkeys(("CAPABILITIES", "CapSets", "capget", "capset", "child_subreaper",
                     "dumpable", "pdeathsig", "set_child_subreaper", "set_dumpable"),
                    "._prctl"),
    **dict.fromkeys(("CHILD_ERROR_SIZE", "FAULT_NO_CLEAR_SIGHAND", "FAULT_SIGMASK",
                     "HELPER_READY", "STAGE_CGROUP", "STAGE_CHDIR", "STAGE_EXEC", "STAGE_LAST",
                     "STAGE_NAMES", "ChildSpec", "HelperSpec", "child_error", "helper_go",
                     "read_child_error", "spawn"),
                    "._spawn"),
    "pty_number": "._tty",
    **dict.fromkeys(("userns_helper_free", "userns_helper_start"), "._userns"),
}


#: Modules given as names of the face, imported on first use.
_MODULES = {"psi": "._psi", "seccomp": "._seccomp"}


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value: Any = _import_module(_MODULES[name], __name__)
    elif name in _LAZY:
        value = getattr(_import_module(_LAZY[name], __name__), name)
    else:
        raise AttributeError(f"module 'pidsafe._sys' has no attribute {name!r}")
    globals()[name] = value
    return value

__all__ = [
    "AT_EMPTY_PATH", "AT_FDCWD", "AT_RECURSIVE", "BIND_STAGE_MOUNT_SETATTR",
    "BIND_STAGE_MOVE_MOUNT", "BIND_STAGE_OPEN_TREE", "BPF_CGROUP_DEVICE",
    "BPF_F_ALLOW_MULTI", "BPF_PROG_TYPE_CGROUP_DEVICE", "CAPABILITIES", "CHILD_ERROR_SIZE",
    "CLD_DUMPED", "CLD_EXITED", "CLD_KILLED", "CLONE_NEWCGROUP", "CLONE_NEWIPC",
    "CLONE_NEWNET", "CLONE_NEWNS", "CLONE_NEWPID", "CLONE_NEWTIME", "CLONE_NEWUSER",
    "CLONE_NEWUTS", "CLONE_PIDFD", "CLONE_VFORK", "CLONE_VM", "CapSets", "ChildSpec",
    "FAULT_NO_CLEAR_SIGHAND", "FAULT_SIGMASK", "FSCONFIG_CMD_CREATE", "FSCONFIG_SET_FD",
    "FSCONFIG_SET_FLAG", "FSCONFIG_SET_STRING", "FSMOUNT_CLOEXEC", "FSOPEN_CLOEXEC", "HELPER_READY",
    "HelperSpec", "MOUNT_ATTR_IDMAP", "MOUNT_ATTR_NOATIME", "MOUNT_ATTR_NODEV",
    "MOUNT_ATTR_NODIRATIME", "MOUNT_ATTR_NOEXEC", "MOUNT_ATTR_NOSUID",
    "MOUNT_ATTR_NOSYMFOLLOW", "MOUNT_ATTR_RDONLY", "MOUNT_ATTR_RELATIME",
    "MOUNT_ATTR_STRICTATIME", "MOUNT_ATTR__ATIME", "MOVE_MOUNT_F_EMPTY_PATH",
    "MOVE_MOUNT_T_EMPTY_PATH", "MS_PRIVATE", "MS_REC", "MS_SHARED", "MS_SLAVE",
    "MS_UNBINDABLE", "OPEN_TREE_CLOEXEC", "OPEN_TREE_CLONE", "Program", "RESOLVE_BENEATH",
    "RESOLVE_IN_ROOT", "RESOLVE_NO_MAGICLINKS", "RESOLVE_NO_SYMLINKS", "RESOLVE_NO_XDEV",
    "STAGE_CGROUP", "STAGE_CHDIR", "STAGE_EXEC", "STAGE_LAST", "STAGE_NAMES", "UMOUNT_NOFOLLOW", "WALL",
    "WEXITED", "WNOHANG", "WNOWAIT", "bpf_prog_attach", "bpf_prog_load",
    "capget", "capset", "child_error", "child_subreaper", "close_range", "dumpable",
    "end_child", "errno_of", "fdinfo_pid", "ffi", "fsconfig", "fsmount", "fsopen",
    "has_clone3_trampoline", "helper_go", "idmapped_bind", "lib", "make_oserror",
    "mnt_id", "mnt_id_unique", "mount_setattr", "move_mount", "ns_type", "open_tree", "openat2",
    "pdeathsig", "pidfd_exit_info", "pidfd_getfd", "pidfd_open", "pidfd_send_signal",
    "probe_child", "program", "psi", "pty_number", "read_child_error", "seccomp",
    "set_child_subreaper", "set_dumpable", "setns", "spawn", "status_record", "status_returncode",
    "umount2", "unreaped_child", "userns_helper_free", "userns_helper_start", "waitid_pidfd",
    "waitid_status",
]
