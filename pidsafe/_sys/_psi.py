"""pidsafe-init's protocol, from its header (csrc/shared/init_protocol.h).

The extension's build reads the header's op codes, stages, target kinds,
record kinds and status record into cffi, so every value here is the one
pidsafe-init is compiled with: nothing is copied by hand.  The parent
builds the op stream (``pidsafe.container.init._protocol``); this module only
names the numbers and decodes the status records init writes.

Wire format (native endianness; both ends run on one machine)::

    stream  := MAGIC op* OP_END
    op      := u32 code, u32 nargs, arg*
    arg     := u32 length, byte[length]      (ints: 8-byte int64)
"""

from __future__ import annotations

import os

from .._value import Record
from ._core import ffi, lib

TYPE_CHECKING = False   # not typing's: its import is ~4 ms of each pidsafe-runc command
if TYPE_CHECKING:
    from typing import Callable, Optional

#: The stream's first bytes (PSI_MAGIC).
MAGIC: bytes = ffi.string(lib.pidsafe_psi_magic())

OP_END: int = lib.PSI_OP_END
OP_SETID_ROOT: int = lib.PSI_OP_SETID_ROOT
OP_PROPAGATION: int = lib.PSI_OP_PROPAGATION
OP_ROOT: int = lib.PSI_OP_ROOT
OP_MOUNT_FS: int = lib.PSI_OP_MOUNT_FS
OP_MOUNT_TREE: int = lib.PSI_OP_MOUNT_TREE
OP_MKNOD: int = lib.PSI_OP_MKNOD
OP_SYMLINK: int = lib.PSI_OP_SYMLINK
OP_PIVOT: int = lib.PSI_OP_PIVOT
OP_MASK: int = lib.PSI_OP_MASK
OP_READONLY: int = lib.PSI_OP_READONLY
OP_ROOT_READONLY: int = lib.PSI_OP_ROOT_READONLY
OP_HOSTNAME: int = lib.PSI_OP_HOSTNAME
OP_DOMAINNAME: int = lib.PSI_OP_DOMAINNAME
OP_SYSCTL: int = lib.PSI_OP_SYSCTL
OP_OOM_SCORE_ADJ: int = lib.PSI_OP_OOM_SCORE_ADJ
OP_RLIMIT: int = lib.PSI_OP_RLIMIT
OP_CAP_BOUNDING: int = lib.PSI_OP_CAP_BOUNDING
OP_USER: int = lib.PSI_OP_USER
OP_CAPS: int = lib.PSI_OP_CAPS
OP_NO_NEW_PRIVS: int = lib.PSI_OP_NO_NEW_PRIVS
OP_CHDIR: int = lib.PSI_OP_CHDIR
OP_GATE: int = lib.PSI_OP_GATE
OP_EXEC: int = lib.PSI_OP_EXEC
OP_CLOSE_FD: int = lib.PSI_OP_CLOSE_FD
OP_SETNS: int = lib.PSI_OP_SETNS
OP_UNSHARE: int = lib.PSI_OP_UNSHARE
OP_LOOPBACK_UP: int = lib.PSI_OP_LOOPBACK_UP
OP_FORK: int = lib.PSI_OP_FORK
OP_SECCOMP: int = lib.PSI_OP_SECCOMP
OP_HOOKS: int = lib.PSI_OP_HOOKS
OP_EXEC_PATH: int = lib.PSI_OP_EXEC_PATH
OP_TERMINAL: int = lib.PSI_OP_TERMINAL
OP_CONSOLE: int = lib.PSI_OP_CONSOLE
OP_TERMINAL_SEND: int = lib.PSI_OP_TERMINAL_SEND
OP_TERMINAL_STDIO: int = lib.PSI_OP_TERMINAL_STDIO
OP_CHROOT: int = lib.PSI_OP_CHROOT
OP_PRESERVE_FDS: int = lib.PSI_OP_PRESERVE_FDS
OP_CGROUP_JOIN: int = lib.PSI_OP_CGROUP_JOIN
OP_ROOT_CLONE: int = lib.PSI_OP_ROOT_CLONE
OP_MAX: int = lib.PSI_OP_MAX

# Extra stages reported in the op field of an ERROR record.
STAGE_PROTOCOL: int = lib.PSI_STAGE_PROTOCOL
STAGE_GATE: int = lib.PSI_STAGE_GATE
STAGE_EXEC: int = lib.PSI_STAGE_EXEC
STAGE_SETUP: int = lib.PSI_STAGE_SETUP

# Target kinds for mounts: what to create when the target is missing.
KIND_DIR: int = lib.PSI_KIND_DIR
KIND_FILE: int = lib.PSI_KIND_FILE

# Status record kinds.
RECORD_READY: int = lib.PSI_RECORD_READY
RECORD_ERROR: int = lib.PSI_RECORD_ERROR
RECORD_HOOKS: int = lib.PSI_RECORD_HOOKS

#: The size of a status record (struct psi_record).
RECORD_SIZE: int = ffi.sizeof("struct psi_record")


class StatusRecord(Record):
    """One record from init's status pipe (struct psi_record).

    Attributes:
        kind: ``RECORD_READY``, ``RECORD_ERROR`` or ``RECORD_HOOKS``.
        index: the op's position in the stream, -1 if none.
        op: its code, or a ``STAGE_*``.
        err: the errno (ERROR records).
    """

    kind: int
    index: int
    op: int
    err: int


def decode_record(data: bytes) -> Optional[StatusRecord]:
    """A status record, or ``None`` for a short read (EOF)."""
    if len(data) != RECORD_SIZE:
        return None
    rec = ffi.new("struct psi_record *")
    ffi.memmove(rec, data, RECORD_SIZE)
    return StatusRecord(int(rec.kind), int(rec.index), int(rec.op), int(rec.err))


def read_record(fd: int, before_read: Optional[Callable[[], None]] = None
                ) -> Optional[StatusRecord]:
    """One status record from ``fd``, or ``None`` at EOF (a short read).

    EOF with no record means: init exec'd its program (the status pipe is
    close-on-exec), or init died.  ``before_read`` runs before each read
    (a bounded wait for the fd to be readable, which may raise).
    """
    data = b""
    while len(data) < RECORD_SIZE:
        if before_read is not None:
            before_read()
        chunk = os.read(fd, RECORD_SIZE - len(data))
        if not chunk:
            break
        data += chunk
    return decode_record(data)


__all__ = [
    "OP_END", "OP_SETID_ROOT", "OP_PROPAGATION", "OP_ROOT", "OP_MOUNT_FS", "OP_MOUNT_TREE",
    "OP_MKNOD", "OP_SYMLINK", "OP_PIVOT", "OP_MASK", "OP_READONLY", "OP_ROOT_READONLY",
    "OP_HOSTNAME", "OP_DOMAINNAME", "OP_SYSCTL", "OP_OOM_SCORE_ADJ", "OP_RLIMIT",
    "OP_CAP_BOUNDING", "OP_USER", "OP_CAPS", "OP_NO_NEW_PRIVS", "OP_CHDIR", "OP_GATE",
    "OP_EXEC", "OP_CLOSE_FD", "OP_SETNS", "OP_UNSHARE", "OP_LOOPBACK_UP", "OP_SECCOMP",
    "OP_HOOKS", "OP_EXEC_PATH", "OP_TERMINAL", "OP_CONSOLE", "OP_TERMINAL_SEND",
    "OP_TERMINAL_STDIO", "OP_CHROOT", "OP_PRESERVE_FDS", "OP_CGROUP_JOIN",
    "OP_ROOT_CLONE", "OP_MAX", "STAGE_PROTOCOL",
    "STAGE_GATE", "STAGE_EXEC", "STAGE_SETUP", "KIND_DIR", "KIND_FILE", "RECORD_READY",
    "RECORD_ERROR", "RECORD_HOOKS", "MAGIC", "RECORD_SIZE", "StatusRecord", "decode_record",
    "read_record",
]
