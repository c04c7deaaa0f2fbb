"""The op stream pidsafe-init reads (csrc/shared/init_protocol.h), and its records.

The parent builds the whole stream before init exists; init reads it to
EOF, so a stream cut short by the parent's death never runs.

The op codes, stages, kinds and the status record are the header's own,
through cffi (``pidsafe._sys.psi``), named here again for the container's
modules; this module adds what each op is called in an error message and
how an op is encoded.
"""

from __future__ import annotations

import os
import struct

from ..._sys import psi as _psi
from ..._value import Record as _Record

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Optional, Sequence, Tuple, Union

    Arg = Union[int, bytes, str, Sequence[int]]

# csrc/shared/init_protocol.h's values, through cffi.
OP_END = _psi.OP_END
OP_SETID_ROOT = _psi.OP_SETID_ROOT
OP_PROPAGATION = _psi.OP_PROPAGATION
OP_ROOT = _psi.OP_ROOT
OP_MOUNT_FS = _psi.OP_MOUNT_FS
OP_MOUNT_TREE = _psi.OP_MOUNT_TREE
OP_MKNOD = _psi.OP_MKNOD
OP_SYMLINK = _psi.OP_SYMLINK
OP_PIVOT = _psi.OP_PIVOT
OP_MASK = _psi.OP_MASK
OP_READONLY = _psi.OP_READONLY
OP_ROOT_READONLY = _psi.OP_ROOT_READONLY
OP_HOSTNAME = _psi.OP_HOSTNAME
OP_DOMAINNAME = _psi.OP_DOMAINNAME
OP_SYSCTL = _psi.OP_SYSCTL
OP_OOM_SCORE_ADJ = _psi.OP_OOM_SCORE_ADJ
OP_RLIMIT = _psi.OP_RLIMIT
OP_CAP_BOUNDING = _psi.OP_CAP_BOUNDING
OP_USER = _psi.OP_USER
OP_CAPS = _psi.OP_CAPS
OP_NO_NEW_PRIVS = _psi.OP_NO_NEW_PRIVS
OP_CHDIR = _psi.OP_CHDIR
OP_GATE = _psi.OP_GATE
OP_EXEC = _psi.OP_EXEC
OP_CLOSE_FD = _psi.OP_CLOSE_FD
OP_SETNS = _psi.OP_SETNS
OP_UNSHARE = _psi.OP_UNSHARE
OP_LOOPBACK_UP = _psi.OP_LOOPBACK_UP
OP_FORK = _psi.OP_FORK
OP_SECCOMP = _psi.OP_SECCOMP
OP_HOOKS = _psi.OP_HOOKS
OP_EXEC_PATH = _psi.OP_EXEC_PATH
OP_TERMINAL = _psi.OP_TERMINAL
OP_CONSOLE = _psi.OP_CONSOLE
OP_TERMINAL_SEND = _psi.OP_TERMINAL_SEND
OP_TERMINAL_STDIO = _psi.OP_TERMINAL_STDIO
OP_CHROOT = _psi.OP_CHROOT
OP_PRESERVE_FDS = _psi.OP_PRESERVE_FDS
OP_CGROUP_JOIN = _psi.OP_CGROUP_JOIN
OP_ROOT_CLONE = _psi.OP_ROOT_CLONE
OP_MAX = _psi.OP_MAX
STAGE_PROTOCOL = _psi.STAGE_PROTOCOL
STAGE_GATE = _psi.STAGE_GATE
STAGE_EXEC = _psi.STAGE_EXEC
STAGE_SETUP = _psi.STAGE_SETUP
KIND_DIR = _psi.KIND_DIR
KIND_FILE = _psi.KIND_FILE
RECORD_READY = _psi.RECORD_READY
RECORD_ERROR = _psi.RECORD_ERROR
RECORD_HOOKS = _psi.RECORD_HOOKS
RECORD_SIZE = _psi.RECORD_SIZE
StatusRecord = _psi.StatusRecord
decode_record = _psi.decode_record
read_record = _psi.read_record

#: What each op does, for error messages ("<step> <what>: <strerror>").
OP_NAMES = {
    OP_SETID_ROOT: "become root of the user namespace",
    OP_PROPAGATION: "set mount propagation",
    OP_ROOT: "bind the root filesystem onto itself",
    OP_MOUNT_FS: "mount",
    OP_MOUNT_TREE: "bind mount",
    OP_MKNOD: "create device",
    OP_SYMLINK: "create symlink",
    OP_PIVOT: "pivot_root",
    OP_MASK: "mask path",
    OP_READONLY: "make path read-only",
    OP_ROOT_READONLY: "make the root read-only",
    OP_HOSTNAME: "set hostname",
    OP_DOMAINNAME: "set domainname",
    OP_SYSCTL: "set sysctl",
    OP_OOM_SCORE_ADJ: "set oom_score_adj",
    OP_RLIMIT: "set rlimit",
    OP_CAP_BOUNDING: "drop capabilities from the bounding set",
    OP_USER: "set user",
    OP_CAPS: "set capabilities",
    OP_NO_NEW_PRIVS: "set no_new_privs",
    OP_CHDIR: "chdir",
    OP_GATE: "wait for start",
    OP_EXEC: "exec",
    OP_CLOSE_FD: "close fd",
    OP_SETNS: "join namespace",
    OP_UNSHARE: "unshare namespaces",
    OP_LOOPBACK_UP: "bring up lo",
    OP_FORK: "enter the pid namespace",
    OP_SECCOMP: "load the seccomp filter",
    OP_HOOKS: "wait for the create hooks",
    OP_EXEC_PATH: "exec",
    OP_TERMINAL: "allocate the terminal",
    OP_CONSOLE: "bind the terminal on",
    OP_TERMINAL_SEND: "send the terminal to the console socket",
    OP_TERMINAL_STDIO: "make the terminal the controlling terminal",
    OP_CHROOT: "chroot",
    OP_PRESERVE_FDS: "keep the preserved fds open",
    OP_CGROUP_JOIN: "join the cgroup",
    OP_ROOT_CLONE: "clone the root's mounts",
    STAGE_PROTOCOL: "read pidsafe-init's instructions",
    STAGE_GATE: "wait for start",
    STAGE_EXEC: "exec",
    STAGE_SETUP: "set up pidsafe-init",
}

_I64 = struct.Struct("=q")
_U32 = struct.Struct("=I")
_HEAD = struct.Struct("=II")    # an op's code and argument count
_INT = struct.Struct("=Iq")     # an int argument: its length (8), its value


class Op(_Record):
    """One instruction, and where in the config it comes from (for errors)."""

    code: int
    args: Tuple[Arg, ...] = ()
    field: str = ""        # the JSON path it implements, e.g. "mounts[3]"
    what: str = ""         # the path or value it acts on, for the message

    def encode(self) -> bytes:
        args = self.args
        out = [_HEAD.pack(self.code, len(args))]
        for a in args:
            if type(a) is int:   # most arguments: an fd, flags, an id
                out.append(_INT.pack(8, a))
                continue
            if isinstance(a, bool):
                raise TypeError("bool is not an op argument")
            if isinstance(a, int):
                out.append(_INT.pack(8, a))
                continue
            if isinstance(a, str):
                data = os.fsencode(a)
            elif isinstance(a, bytes):
                data = a
            else:   # an int array
                data = struct.pack(f"={len(a)}q", *a)
            out.append(_U32.pack(len(data)))
            out.append(data)
        return b"".join(out)


def encode(ops: Sequence[Op]) -> bytes:
    """The whole stream: magic, the ops, OP_END.

    :meth:`Op.encode`'s format, in one loop: an exec encodes its whole
    stream before pidsafe-init can start, on the exec's critical path.  The
    last tuple of ops encoded is remembered by identity (ops are never
    changed once made: a tuple of them is one stream while it lives): an exec
    that uses its container's last plan again encodes nothing.
    """
    global _encoded
    last = _encoded
    if last is not None and last[0] is ops:
        return last[1]
    out = [_psi.MAGIC]
    append = out.append
    head, arg = _HEAD.pack, _INT.pack
    for op in ops:
        args = op.args
        start = len(out)
        append(head(op.code, len(args)))
        for a in args:
            if type(a) is int:   # most arguments: fds, flags, ids
                append(arg(8, a))
            else:
                del out[start:]
                append(op.encode())
                break
    append(_END)
    stream = b"".join(out)
    if type(ops) is tuple:
        _encoded = (ops, stream)   # one store: a thread sees all of it or the one before
    return stream


#: The last tuple of ops :func:`encode` encoded, and its stream.
_encoded: Optional[Tuple[Sequence[Op], bytes]] = None


_END = Op(OP_END).encode()


def nul_list(items: Sequence[str]) -> bytes:
    """A list of strings as OP_EXEC wants it: each NUL-terminated."""
    return b"".join(os.fsencode(s) + b"\0" for s in items)
