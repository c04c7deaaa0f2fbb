"""``linux.seccomp`` of config.json as typed, frozen records (:class:`~pidsafe._value.Record`).

runtime-spec config-linux.md, "Seccomp".  Names are checked here, before
anything exists: an unknown action, operator, architecture or flag is a
:class:`~pidsafe.ConfigError` naming its JSON path; what pidsafe knows but
does not do (``SCMP_ACT_NOTIFY`` and its ``listenerPath``) an
:class:`~pidsafe.UnsupportedConfigError`.  Syscall *names* are not checked:
profiles name syscalls newer than the libseccomp compiling them, which are
skipped when the filter is compiled (as runc does).

The numbers below are the kernel's (SECCOMP_RET_*, SECCOMP_FILTER_FLAG_*)
and libseccomp's (SCMP_CMP_*); csrc/seccomp/filter.c checks them against
both headers at build time.
"""

from __future__ import annotations

from ..._value import Record

from ...errors import ConfigError, UnsupportedConfigError
from ._reader import JsonObject, check_str, one_of

TYPE_CHECKING = False   # not typing's: typing is only for mypy here
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

#: SCMP_ACT_* -> SECCOMP_RET_* (the errno / trace message goes in the low 16 bits).
ACTIONS: Dict[str, int] = {
    "SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7ff00000,
    "SCMP_ACT_LOG": 0x7ffc0000, "SCMP_ACT_ALLOW": 0x7fff0000}
#: Actions runtime-spec knows that pidsafe refuses, and why.
UNSUPPORTED_ACTIONS: Dict[str, str] = {
    "SCMP_ACT_NOTIFY": "SCMP_ACT_NOTIFY: seccomp user notification (listenerPath)"}
#: Actions whose errnoRet is the value returned (ERRNO) or given to the tracer (TRACE).
ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})
#: SCMP_CMP_* -> libseccomp's enum scmp_compare.
OPERATORS: Dict[str, int] = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
#: SCMP_ARCH_* that runtime-spec names; libseccomp's name is the lower-case suffix.
ARCHITECTURES: Tuple[str, ...] = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB")
#: SECCOMP_FILTER_FLAG_* pidsafe passes to seccomp(2).
FLAGS: Dict[str, int] = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
#: Flags runtime-spec knows that pidsafe refuses, and why.
UNSUPPORTED_FLAGS: Dict[str, str] = {
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: only for SCMP_ACT_NOTIFY"}
#: The largest errnoRet: SECCOMP_RET_DATA is 16 bits.
MAX_ERRNO_RET = 0xFFFF
_MAX_U64 = 2**64 - 1


class SeccompArg(Record):
    """One ``args`` entry: ``op`` compares argument ``index`` with ``value``
    (for ``SCMP_CMP_MASKED_EQ``: ``arg & value == value_two``)."""

    index: int
    value: int
    op: str
    value_two: int = 0


class SeccompSyscall(Record):
    """One ``syscalls`` entry: ``action`` for these names when every arg holds."""

    names: Tuple[str, ...]
    action: str
    errno_ret: Optional[int] = None
    args: Tuple[SeccompArg, ...] = ()


class SeccompSpec(Record):
    """``linux.seccomp``."""

    default_action: str
    default_errno_ret: Optional[int] = None
    architectures: Tuple[str, ...] = ()
    flags: Tuple[str, ...] = ()
    syscalls: Tuple[SeccompSyscall, ...] = ()


def _action(o: JsonObject, key: str) -> str:
    name = o.get_str(key)
    if name in UNSUPPORTED_ACTIONS:
        raise UnsupportedConfigError(o.where(key), UNSUPPORTED_ACTIONS[name])
    one_of(name, o.where(key), ACTIONS)
    return str(name)


def _errno_ret(o: JsonObject, key: str, action: str, action_key: str) -> Optional[int]:
    value: Optional[int] = o.get_int(key, None, lo=0, hi=MAX_ERRNO_RET)
    if value is not None and action not in ERRNO_ACTIONS:
        raise ConfigError(o.where(key), f"only applies to SCMP_ACT_ERRNO and SCMP_ACT_TRACE, "
                                        f"not to {o.where(action_key)} {action}")
    return value


def _arg(value: Any, path: str) -> SeccompArg:
    o = JsonObject(value, path)
    index = o.get_int("index", lo=0, hi=5)
    datum = o.get_int("value", lo=0, hi=_MAX_U64)
    datum_two = o.get_int("valueTwo", 0, lo=0, hi=_MAX_U64)
    op = o.get_str("op")
    one_of(op, o.where("op"), OPERATORS)
    o.finish()
    return SeccompArg(index, datum, op, datum_two)


def _syscall(value: Any, path: str) -> SeccompSyscall:
    o = JsonObject(value, path)
    names = tuple(o.get_list("names", check_str))
    if not names:
        raise ConfigError(o.where("names"), "must name at least one syscall")
    for i, name in enumerate(names):
        if not name:
            raise ConfigError(f"{o.where('names')}[{i}]", "must not be empty")
    action = _action(o, "action")
    errno_ret = _errno_ret(o, "errnoRet", action, "action")
    args = tuple(o.get_list("args", _arg))
    o.finish()
    return SeccompSyscall(names, action, errno_ret, args)


def parse_seccomp(o: Optional[JsonObject]) -> Optional[SeccompSpec]:
    """Parse ``linux.seccomp`` (``None`` when absent).

    Raises:
        ConfigError: a field is malformed or names an unknown action,
            operator, architecture or flag (its JSON path is named).
        UnsupportedConfigError: ``SCMP_ACT_NOTIFY``, ``listenerPath``, or a
            flag only user notification uses.
    """
    if o is None:
        return None
    default = _action(o, "defaultAction")
    default_errno = _errno_ret(o, "defaultErrnoRet", default, "defaultAction")
    arches = tuple(o.get_list("architectures", check_str))
    for i, arch in enumerate(arches):
        one_of(arch, f"{o.where('architectures')}[{i}]", dict.fromkeys(ARCHITECTURES, 0))
    flags = tuple(o.get_list("flags", check_str))
    for i, flag in enumerate(flags):
        where = f"{o.where('flags')}[{i}]"
        if flag in UNSUPPORTED_FLAGS:
            raise UnsupportedConfigError(where, UNSUPPORTED_FLAGS[flag])
        one_of(flag, where, FLAGS)
    o.unsupported("listenerPath", "seccomp user notification (SCMP_ACT_NOTIFY)",
                  allow=lambda v: v == "")
    o.unsupported("listenerMetadata", "seccomp user notification (SCMP_ACT_NOTIFY)",
                  allow=lambda v: v == "")
    syscalls = tuple(o.get_list("syscalls", _syscall))
    o.finish()
    return SeccompSpec(default, default_errno, arches, flags, syscalls)
