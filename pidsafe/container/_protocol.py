"""The op stream pidsafe-init reads (csrc/init/protocol.h), and its records.

The parent builds the whole stream before init exists; init reads it to
EOF, so a stream cut short by the parent's death never runs.
"""

from __future__ import annotations

import os
import struct
from typing import Optional, Sequence, Tuple, Union

from .._value import Record as _Record

# Op codes: csrc/init/protocol.h (tests/container/test_protocol.py checks them).
OP_END = 0
OP_SETID_ROOT = 1
OP_PROPAGATION = 2
OP_ROOT = 3
OP_MOUNT_FS = 4
OP_MOUNT_TREE = 5
OP_MKNOD = 6
OP_SYMLINK = 7
OP_PIVOT = 8
OP_MASK = 9
OP_READONLY = 10
OP_ROOT_READONLY = 11
OP_HOSTNAME = 12
OP_DOMAINNAME = 13
OP_SYSCTL = 14
OP_OOM_SCORE_ADJ = 15
OP_RLIMIT = 16
OP_CAP_BOUNDING = 17
OP_USER = 18
OP_CAPS = 19
OP_NO_NEW_PRIVS = 20
OP_CHDIR = 21
OP_GATE = 22
OP_EXEC = 23
OP_CLOSE_FD = 24
OP_SETNS = 25
OP_UNSHARE = 26
OP_LOOPBACK_UP = 27
OP_SECCOMP = 40
# 45-49: OCI hooks.
OP_HOOKS = 45
OP_EXEC_PATH = 46
# 50-54: the process's terminal (csrc/init/terminal.c).
OP_TERMINAL = 50
OP_CONSOLE = 51
OP_TERMINAL_SEND = 52
OP_TERMINAL_STDIO = 53
OP_CHROOT = 55
OP_PRESERVE_FDS = 60

STAGE_PROTOCOL = 100
STAGE_GATE = 101
STAGE_EXEC = 102
STAGE_SETUP = 103

KIND_DIR = 0
KIND_FILE = 1

RECORD_READY = 1
RECORD_ERROR = 2
RECORD_HOOKS = 3
RECORD = struct.Struct("=iiii")

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
    OP_SECCOMP: "load the seccomp filter",
    OP_HOOKS: "wait for the create hooks",
    OP_EXEC_PATH: "exec",
    OP_TERMINAL: "allocate the terminal",
    OP_CONSOLE: "bind the terminal on",
    OP_TERMINAL_SEND: "send the terminal to the console socket",
    OP_TERMINAL_STDIO: "make the terminal the controlling terminal",
    OP_CHROOT: "chroot",
    OP_PRESERVE_FDS: "keep the preserved fds open",
    STAGE_PROTOCOL: "read pidsafe-init's instructions",
    STAGE_GATE: "wait for start",
    STAGE_EXEC: "exec",
    STAGE_SETUP: "set up pidsafe-init",
}

Arg = Union[int, bytes, str, Sequence[int]]
_I64 = struct.Struct("=q")
_U32 = struct.Struct("=I")


class Op(_Record):
    """One instruction, and where in the config it comes from (for errors)."""

    code: int
    args: Tuple[Arg, ...] = ()
    field: str = ""        # the JSON path it implements, e.g. "mounts[3]"
    what: str = ""         # the path or value it acts on, for the message

    def encode(self) -> bytes:
        out = [_U32.pack(self.code), _U32.pack(len(self.args))]
        for a in self.args:
            if isinstance(a, bool):
                raise TypeError("bool is not an op argument")
            if isinstance(a, int):
                data = _I64.pack(a)
            elif isinstance(a, str):
                data = os.fsencode(a)
            elif isinstance(a, bytes):
                data = a
            else:   # an int array
                data = b"".join(_I64.pack(x) for x in a)
            out.append(_U32.pack(len(data)))
            out.append(data)
        return b"".join(out)


def encode(ops: Sequence[Op]) -> bytes:
    """The whole stream: magic, the ops, OP_END."""
    return b"PSI1" + b"".join(op.encode() for op in ops) + Op(OP_END).encode()


def nul_list(items: Sequence[str]) -> bytes:
    """A list of strings as OP_EXEC wants it: each NUL-terminated."""
    return b"".join(os.fsencode(s) + b"\0" for s in items)


class Record(_Record):
    kind: int
    index: int
    op: int
    err: int


def read_record(fd: int) -> Optional[Record]:
    """One status record from ``fd``, or ``None`` at EOF (a short read).

    EOF with no record means: init exec'd its program (the status pipe is
    close-on-exec), or init died.
    """
    data = b""
    while len(data) < RECORD.size:
        chunk = os.read(fd, RECORD.size - len(data))
        if not chunk:
            break
        data += chunk
    return decode_record(data)


def decode_record(data: bytes) -> Optional[Record]:
    """A status record, or ``None`` for a short read (EOF)."""
    if len(data) != RECORD.size:
        return None
    return Record(*RECORD.unpack(data))

